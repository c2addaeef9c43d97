package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/redistest"
)

// End-to-end tests of how herd's commands read their configuration, on the
// real binary.

// deadRedis returns a loopback host:port where nothing listens.
func deadRedis(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// freePort returns a loopback port that was free a moment ago, for tests
// that must write the port into a .env file before herd starts.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeFile writes name in dir.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// procFile reads /proc/PID/<name>, NUL separators turned into spaces.
func procFile(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		t.Fatalf("reading /proc/%d/%s: %v", pid, name, err)
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// TestWorkersSeeNoSecret: a Redis password given by flag or by REDIS_URL
// is in no worker's command line or environment, which every local user
// can read in /proc (ps), and the workers still use that Redis: their
// configuration came from the primary.
func TestWorkersSeeNoSecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, password string
		args, env      []string
	}{
		{"flag", "s3cret-by-flag", []string{"--redis-url", "redis://:s3cret-by-flag@" + deadRedis(t) + "/0"}, nil},
		{"environment", "s3cret-by-env", nil, []string{"REDIS_URL=redis://:s3cret-by-env@" + deadRedis(t) + "/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startServe(t, herdtest.Options{Env: tc.env}, append([]string{"--workers", "2"}, tc.args...)...)
			pids := p.WorkerPIDs()
			if len(pids) != 2 {
				t.Fatalf("workers %v, want 2", pids)
			}
			for _, pid := range pids {
				cmdline, environ := procFile(t, pid, "cmdline"), procFile(t, pid, "environ")
				if strings.Contains(cmdline, tc.password) || strings.Contains(cmdline, "redis") {
					t.Errorf("worker %d's command line shows the Redis URL: %q", pid, cmdline)
				}
				if strings.Contains(environ, tc.password) || strings.Contains(environ, "REDIS_URL") {
					t.Errorf("worker %d's environment shows the Redis URL", pid)
				}
			}
			// The workers use the Redis the primary was given (down: 503),
			// not the embedded store a worker without settings would.
			for range 4 {
				if code, _, body := mustFetch(t, "POST", p.URL+"/cluster/counter", ""); code != 503 {
					t.Fatalf("POST /cluster/counter with the configured Redis down: %d %s, want 503", code, body)
				}
			}
			if strings.Contains(p.Output(), tc.password) {
				t.Error("the password appears in herd's log")
			}
		})
	}
}

// TestReplacementWorkerUsesThePrimarysConfiguration: .env edited after the
// primary started changes nothing until herd is restarted: a worker started
// later (here the replacement of a killed one) serves with the primary's
// configuration, the embedded store, not the Redis the new .env names.
func TestReplacementWorkerUsesThePrimarysConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, herdtest.Options{Dir: dir}, "--workers", "1")
	before := listWorkers(t, p)
	old, _ := before.readyWorker(1)
	if code, _, body := mustFetch(t, "POST", p.URL+"/cluster/counter", ""); code != 200 {
		t.Fatalf("POST /cluster/counter: %d %s", code, body)
	}
	writeFile(t, dir, ".env", "REDIS_URL=redis://"+deadRedis(t)+"/0\nENABLE_CRASH_ENDPOINT=true\n")
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var replacement int
	p.Eventually(30*time.Second, "a replacement worker ready", func() bool {
		code, _, body, err := fetch(t, "GET", p.URL+"/cluster/workers", "")
		var r workersReply
		if err != nil || code != 200 || json.Unmarshal(body, &r) != nil {
			return false
		}
		replacement, _ = r.readyWorker(1)
		return replacement != 0 && replacement != old
	})
	code, h, body := mustFetch(t, "POST", p.URL+"/cluster/counter", "")
	if code != 200 || !strings.Contains(string(body), `"counter":2,`) {
		t.Errorf("POST /cluster/counter on the replacement: %d %s, want 200 and the embedded counter's 2", code, body)
	}
	if pid := h.Get("X-Worker-Pid"); pid != strconv.Itoa(replacement) {
		t.Errorf("answered by pid %s, want the replacement %d", pid, replacement)
	}
	if code, _, body := mustFetch(t, "POST", p.URL+"/cluster/crash", ""); code != 404 {
		t.Errorf("POST /cluster/crash on the replacement: %d %s, want 404: the primary runs without the crash endpoint", code, body)
	}
}

// TestCommandsReadDotenv: with PORT only in .env, every command finds the
// server serve started there, as serve found its port.
func TestCommandsReadDotenv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	writeFile(t, dir, ".env", "# the port of this deployment\nPORT="+strconv.Itoa(port)+"\n")
	// The commands find the default control socket from the port in .env.
	p := herdtest.Start(t, herdtest.Options{Dir: dir, NoDefaults: true, Env: []string{noExitSleep}, DefaultControlSocket: true},
		"serve", "--workers", "2", "--host", "127.0.0.1", "--log-format", "json")
	p.WaitReady(30 * time.Second)
	if want := "127.0.0.1:" + strconv.Itoa(port); p.Addr != want {
		t.Fatalf("serve listens on %s, want %s from .env", p.Addr, want)
	}
	in := runOpts{dir: dir}
	for _, c := range []struct {
		args []string
		want string // on stdout
	}{
		{[]string{"status"}, "primary " + strconv.Itoa(primaryPID(p))},
		{[]string{"healthcheck"}, "127.0.0.1:" + strconv.Itoa(port) + "/healthz answered 200"},
		{[]string{"loadtest", "-n", "20", "-c", "2"}, "20"},
		{[]string{"scale", "1"}, "1 workers wanted"},
		{[]string{"reload"}, "reload"},
		{[]string{"upgrade"}, "upgrade"},
		{[]string{"status"}, "1 workers wanted"},
		{[]string{"stop"}, "stop"},
	} {
		code, stdout, stderr := runHerd(t, in, c.args...)
		if code != 0 || !strings.Contains(stdout, c.want) {
			t.Fatalf("herd %s with PORT=%d in .env: exit %d, stdout %q, stderr %q; want 0 and %q",
				strings.Join(c.args, " "), port, code, stdout, stderr, c.want)
		}
	}
	code, _, stderr := runHerd(t, in, "status")
	if code != 1 || !strings.Contains(stderr, "no herd primary is running") {
		t.Errorf("herd status after herd stop: exit %d, stderr %q; want 1 and no primary", code, stderr)
	}
}

// TestBadSettingMessagesNameTheSource: a bad value is reported, by every
// command, under the name the user gave it and where it came from.
func TestBadSettingMessagesNameTheSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		env    []string
		dotenv string
		want   []string
	}{
		{"PORT=0 herd status", []string{"status"}, []string{"PORT=0"}, "", []string{`herd status: invalid PORT "0" (from the environment): must be a port number from 1 to 65535`}},
		{".env PORT=0 herd stop", []string{"stop"}, nil, "PORT=0\n", []string{`invalid PORT "0" (from .env line 1)`}},
		{"--port 0 herd reload", []string{"reload", "--port", "0"}, []string{"PORT=3000"}, "", []string{`invalid --port "0":`}},
		{".env PORT herd healthcheck", []string{"healthcheck"}, nil, "\nPORT=x\n", []string{`invalid PORT "x" (from .env line 2)`}},
		{"PORT herd loadtest", []string{"loadtest", "-n", "1"}, []string{"PORT=99999"}, "", []string{`invalid PORT "99999" (from the environment)`}},
		{".env CLUSTER_WORKERS herd serve", []string{"serve", "--port", "0", "--host", "127.0.0.1"}, nil, "APP_ENV=production\nCLUSTER_WORKERS=many\n", []string{`invalid CLUSTER_WORKERS "many" (from .env line 2)`, "1 to 1024"}},
		{"SHUTDOWN_TIMEOUT herd serve", []string{"serve", "--port", "0", "--host", "127.0.0.1"}, []string{"SHUTDOWN_TIMEOUT=30"}, "", []string{`invalid SHUTDOWN_TIMEOUT "30" (from the environment)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.dotenv != "" {
				writeFile(t, dir, ".env", tc.dotenv)
			}
			code, stdout, stderr := runHerd(t, runOpts{dir: dir, env: tc.env}, tc.args...)
			wantOneLine(t, code, stdout, stderr, tc.want...)
		})
	}
}

// TestRedisCheckedAtStart: credentials Redis refuses, or a database it
// does not have, stop herd at start (exit 2, one line naming the setting,
// no password); a Redis merely down is one warning and herd serves.
func TestRedisCheckedAtStart(t *testing.T) {
	t.Parallel()
	const password = "right-pw-7"
	url, _ := redistest.StartWith(t, redistest.Options{Password: password})
	hostPort := strings.TrimSuffix(strings.TrimPrefix(url, "redis://:"+password+"@"), "/0")
	safe := []string{"serve", "--port", "0", "--host", "127.0.0.1", "--workers", "1"}
	for _, tc := range []struct {
		name   string
		args   []string
		env    []string
		dotenv string
		want   []string
	}{
		{"wrong password by flag", append(safe, "--redis-url", "redis://:wrong-pw-9@"+hostPort+"/0"), nil, "",
			[]string{`invalid --redis-url "redis://:xxxxx@` + hostPort + `/0"`, "WRONGPASS"}},
		{"no password in the environment", safe, []string{"REDIS_URL=redis://" + hostPort + "/0"}, "",
			[]string{`invalid REDIS_URL "redis://` + hostPort + `/0" (from the environment)`, "NOAUTH"}},
		{"database out of range in .env", safe, nil, "REDIS_URL=redis://:" + password + "@" + hostPort + "/999\n",
			[]string{`invalid REDIS_URL "redis://:xxxxx@` + hostPort + `/999" (from .env line 1)`, "DB index"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.dotenv != "" {
				writeFile(t, dir, ".env", tc.dotenv)
			}
			code, stdout, stderr := runHerd(t, runOpts{dir: dir, env: tc.env}, tc.args...)
			wantOneLine(t, code, stdout, stderr, tc.want...)
			if strings.Contains(stderr, password) || strings.Contains(stderr, "wrong-pw-9") {
				t.Errorf("the password appears in the error: %q", stderr)
			}
		})
	}
	t.Run("right password", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{Env: []string{"REDIS_URL=" + url}}, "--workers", "1")
		if code, _, body := p.Do("POST", "/cluster/counter", ""); code != 200 {
			t.Errorf("POST /cluster/counter with the right password: %d %s", code, body)
		}
		if w := p.Find(func(r herdtest.Record) bool { return strings.HasPrefix(r.Msg(), "redis unreachable") }); len(w) > 0 {
			t.Errorf("Redis up and the right password, yet herd warns: %v", w[0])
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{}, "--workers", "1", "--redis-url", "redis://:"+password+"@"+deadRedis(t)+"/0")
		warned := p.Find(func(r herdtest.Record) bool { return strings.HasPrefix(r.Msg(), "redis unreachable at start") })
		if len(warned) != 1 {
			t.Errorf("%d warnings that Redis is unreachable at start, want 1", len(warned))
		}
		if code, _, body := p.Do("POST", "/cluster/counter", ""); code != 503 {
			t.Errorf("POST /cluster/counter with Redis down: %d %s, want 503", code, body)
		}
		if strings.Contains(p.Output(), password) {
			t.Error("the password appears in herd's log")
		}
	})
}

// TestManualModeWithoutACountRunsFour: as the reference's manual mode,
// saying in the log that it chose 4.
func TestManualModeWithoutACountRunsFour(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--cluster", "manual")
	if got := p.WaitMsg(10*time.Second, "all workers ready").Int("workers"); got != 4 {
		t.Errorf("--cluster manual without a count: %d workers, want 4", got)
	}
	p.WaitLog(10*time.Second, "the log line saying manual mode chose 4", func(r herdtest.Record) bool {
		return strings.HasPrefix(r.Msg(), "manual mode without a worker count") && r.Int("workers") == 4
	})
}

// TestWorkerSIGTERMedAloneDrainsWithinTheShutdownTimeout: a worker has no
// arguments, yet --shutdown-timeout still bounds its drain when it alone
// gets SIGTERM (an operator, a chaos tool), not the library's 30 s default.
func TestWorkerSIGTERMedAloneDrainsWithinTheShutdownTimeout(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "1", "--shutdown-timeout", "1s")
	pid, _ := listWorkers(t, p).readyWorker(1)
	h := holdRequest(t, p.Addr) // waits for its body forever, on the one worker
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	herdtest.WaitUntil(t, 25*time.Second, "the SIGTERMed worker to exit", func() bool { return !herdtest.Alive(pid) })
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("with --shutdown-timeout 1s the worker took %s to drain; it used a default, not herd's setting", d.Round(time.Millisecond))
	}
	t.Logf("the held request ended with: %s", h.outcome())
}
