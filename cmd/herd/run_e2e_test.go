package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// runExample is one of the example programs herd run supervises.
type runExample struct {
	name  string
	ready string   // --ready-probe
	cmd   []string // the program and its arguments
}

var (
	gofdOnce sync.Once
	gofdPath string
	gofdErr  error //nolint:errname // the result of the one build, not a sentinel
)

// runExamples returns the three examples, building examples/gofd once. A
// missing interpreter or node_modules fails the test saying what to do:
// make test installs them.
func runExamples(t *testing.T) []runExample {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	gofdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herd-gofd-")
		if err != nil {
			gofdErr = err
			return
		}
		gofdPath = filepath.Join(dir, "gofd")
		cmd := exec.Command("go", "build", "-o", gofdPath, "./examples/gofd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			gofdErr = fmt.Errorf("go build ./examples/gofd: %w\n%s", err, out)
		}
	})
	if gofdErr != nil {
		t.Fatal(gofdErr)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run make test (scripts/deps.sh installs nodejs and npm)")
	}
	if _, err := os.Stat(filepath.Join(root, "examples/node/node_modules/express")); err != nil {
		t.Fatal("examples/node/node_modules is missing: run make test, or npm ci in examples/node")
	}
	python := pythonPath(t)
	return []runExample{
		{name: "gofd", ready: "notify", cmd: []string{gofdPath}},
		{name: "python", ready: "notify", cmd: []string{python, filepath.Join(root, "examples/python/server.py")}},
		{name: "node", ready: "http:/pid", cmd: []string{node, filepath.Join(root, "examples/node/server.js")}},
	}
}

// pythonPath is the real python3 executable, not a version manager's shim
// script, which can take seconds to start on a busy machine.
func pythonPath(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatal("python3 is not installed: run make test (scripts/deps.sh installs it)")
	}
	return strings.TrimSpace(string(out))
}

// startRun starts herd run with two workers on an ephemeral loopback port.
func startRun(t *testing.T, extra []string, cmd ...string) *herdtest.Proc {
	t.Helper()
	args := append([]string{"run", "--workers", "2", "--port", "0", "--host", "127.0.0.1", "--log-format", "json", "--shutdown-timeout", "20s"}, extra...)
	args = append(append(args, "--"), cmd...)
	return herdtest.Start(t, herdtest.Options{NoDefaults: true}, args...)
}

// getPID asks for /pid on a new connection and returns the pid answering.
func getPID(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url + "/pid")
	if err != nil {
		t.Fatalf("GET /pid: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Processid int }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.Processid == 0 {
		t.Fatalf("GET /pid: status %d, %v, %+v", resp.StatusCode, err, body)
	}
	return body.Processid
}

// slowResult is how a slow request ended.
type slowResult struct {
	status int
	close  bool // the answer said Connection: close
	body   string
	err    error
}

// slowRequestInFlight sends GET /slow?ms=1500 to an example program under
// herd run and returns once the program says the request started; the
// channel gets how it ended.
func slowRequestInFlight(t *testing.T, p *herdtest.Proc) <-chan slowResult {
	t.Helper()
	resC := make(chan slowResult, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(p.URL + "/slow?ms=1500")
		if err != nil {
			resC <- slowResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		resC <- slowResult{resp.StatusCode, resp.Close, string(b), err}
	}()
	p.WaitLog(30*time.Second, "the slow request to start", func(r herdtest.Record) bool {
		return r.Msg() == "worker output" && strings.Contains(r.Str("line"), "slow request started")
	})
	return resC
}

// workerPIDs returns the ready workers' pids, as herd status says.
func workerPIDs(t *testing.T, p *herdtest.Proc) map[int]bool {
	t.Helper()
	m := map[int]bool{}
	for pid := range readyPIDs(status(t, p)) {
		m[pid] = true
	}
	return m
}

// Each example program under herd run: two distinct workers answer, a
// killed worker is replaced, a rolling reload under load loses nothing, and
// SIGTERM lets a slow request in flight finish.
func TestRunExamples(t *testing.T) {
	for _, ex := range runExamples(t) {
		t.Run(ex.name, func(t *testing.T) {
			p := startRun(t, []string{"--ready-probe", ex.ready}, ex.cmd...)
			p.WaitReady(60 * time.Second)
			pids := workerPIDs(t, p)
			if len(pids) != 2 {
				t.Fatalf("herd status: ready workers %v, want 2", pids)
			}

			// Both workers answer on the one port, with their own pids.
			seen := map[int]bool{}
			p.Eventually(30*time.Second, "both workers to answer /pid", func() bool {
				pid := getPID(t, p.URL)
				if !pids[pid] {
					t.Fatalf("/pid answered %d, not one of the workers %v", pid, pids)
				}
				seen[pid] = true
				return len(seen) == 2
			})

			// SIGKILL of a worker: replaced.
			var victim int
			for pid := range pids {
				victim = pid
				break
			}
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			p.Eventually(60*time.Second, "the killed worker to be replaced", func() bool {
				now := workerPIDs(t, p)
				return len(now) == 2 && !now[victim]
			})

			// herd reload under load: nothing fails, nothing is resent.
			before := workerPIDs(t, p)
			l := startLoad(t, p.URL+"/pid", 16)
			l.waitRequests(t, p, 200)
			if code, out := herdCmd(t, p, "reload"); code != 0 {
				t.Fatalf("herd reload: exit %d: %s", code, out)
			}
			after := workerPIDs(t, p)
			for pid := range after {
				if before[pid] {
					t.Errorf("after the reload pid %d still serves; want every worker replaced (before %v, after %v)", pid, before, after)
				}
			}
			// The load's keep-alive connections move to whichever new
			// worker accepted them from the shared queue (herd run has no
			// other policy), so they may all sit on one: every new worker
			// must serve the load or, failing that, fresh connections.
			fresh := map[int]bool{}
			p.Eventually(30*time.Second, "both new workers to serve", func() bool {
				pid := getPID(t, p.URL)
				if !after[pid] {
					t.Fatalf("/pid answered %d after the reload, not one of the new workers %v", pid, after)
				}
				fresh[pid] = true
				n := 0
				for pid := range after {
					if l.servedBy(pid) > 0 || fresh[pid] {
						n++
					}
				}
				return n == len(after)
			})
			l.finish(t)

			// SIGTERM with a slow request in flight: it completes, herd exits 0.
			resC := slowRequestInFlight(t, p)
			p.Signal(syscall.SIGTERM)
			r := <-resC
			if r.err != nil || r.status != 200 || !strings.Contains(r.body, "slept 1500 ms") {
				t.Errorf("slow request in flight during SIGTERM: %d %q %v; want 200 and its answer", r.status, r.body, r.err)
			}
			if code := p.Wait(30 * time.Second); code != 0 {
				t.Errorf("herd run exited %d after SIGTERM, want 0", code)
			}
			for pid := range after {
				if herdtest.Alive(pid) {
					t.Errorf("worker %d still alive after herd run exited", pid)
				}
			}
		})
	}
}

// SIGKILL of the primary: within 2 s no worker is left, nor a child the
// program started (a shell runs each example with a sleep beside it).
func TestRunPrimaryKilledLeavesNoProcess(t *testing.T) {
	for _, ex := range runExamples(t) {
		t.Run(ex.name, func(t *testing.T) {
			dir := t.TempDir()
			script := `sleep 600 & echo $! > "$GRANDCHILDREN/$$"; exec "$@"`
			p := startRunEnv(t, []string{"GRANDCHILDREN=" + dir}, []string{"--ready-probe", ex.ready},
				append([]string{"sh", "-c", script, "sh"}, ex.cmd...)...)
			p.WaitReady(60 * time.Second)
			workers := workerPIDs(t, p)
			var children []int
			herdtest.WaitUntil(t, 10*time.Second, "each worker's child pid file", func() bool {
				children = children[:0]
				for w := range workers {
					b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(w)))
					if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
						return false
					}
					n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
					children = append(children, n)
				}
				return true
			})
			for _, c := range children {
				t.Cleanup(func() { _ = syscall.Kill(c, syscall.SIGKILL) })
				if !herdtest.Alive(c) {
					t.Fatalf("the program's child %d is not running before the test", c)
				}
			}
			p.Signal(syscall.SIGKILL)
			p.Wait(10 * time.Second)
			killed := time.Now()
			herdtest.WaitUntil(t, 2*time.Second, "no worker or worker's child left", func() bool {
				for w := range workers {
					if herdtest.Alive(w) {
						return false
					}
				}
				for _, c := range children {
					if herdtest.Alive(c) {
						return false
					}
				}
				return true
			})
			t.Logf("workers %v and their children %v gone %s after the primary's SIGKILL", workers, children, time.Since(killed).Round(time.Millisecond))
		})
	}
}

func startRunEnv(t *testing.T, env, extra []string, cmd ...string) *herdtest.Proc {
	t.Helper()
	args := append([]string{"run", "--workers", "2", "--port", "0", "--host", "127.0.0.1", "--log-format", "json"}, extra...)
	args = append(append(args, "--"), cmd...)
	return herdtest.Start(t, herdtest.Options{NoDefaults: true, Env: env}, args...)
}

// A program that exits at once: restarted with growing delays (the primary
// mostly idle meanwhile), and after a few failed starts one log line says
// why, with the program's last stderr lines.
func TestRunProgramThatExitsAtOnceBacksOff(t *testing.T) {
	p := startRunEnv(t, nil, []string{"--workers", "1"},
		"sh", "-c", `echo "starting app"; echo "config.yml: no such file or directory" >&2; exit 3`)
	rec := p.WaitLog(30*time.Second, "the failed-start report", func(r herdtest.Record) bool {
		return r.Msg() == "worker keeps failing at start; retrying with backoff"
	})
	if !strings.Contains(rec.Str("output"), "config.yml: no such file or directory") || rec.Str("reason") != "exited with code 3" {
		t.Errorf("failed-start report: reason %q, output %q; want exit code 3 and the program's stderr", rec.Str("reason"), rec.Str("output"))
	}
	if strings.Contains(rec.Str("output"), "starting app") {
		t.Errorf("failed-start report output %q holds a stdout line; want stderr only", rec.Str("output"))
	}
	// Let the backoff grow to 800 ms (the fifth early death) and see the
	// delays double while the primary mostly waits.
	p.WaitLog(60*time.Second, "the fifth early death", func(r herdtest.Record) bool { return r.Int("early_deaths") >= 5 })
	var delays []time.Duration
	for _, r := range p.Find(func(r herdtest.Record) bool { return r.Str("next_try_in") != "" }) {
		d, err := time.ParseDuration(r.Str("next_try_in"))
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("backoff delays %v: want each longer than the one before", delays)
			break
		}
	}
	if n := len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker keeps failing at start; retrying with backoff" })); n != 1 {
		t.Errorf("%d failed-start reports, want exactly 1 per streak", n)
	}
	cpu, wall := cpuAndAge(t, p.Cmd.Process.Pid)
	if cpu > wall/2 {
		t.Errorf("primary used %s of CPU in %s of life while its program kept failing; want it mostly idle", cpu, wall)
	}
}

// cpuAndAge returns the CPU time process pid has used and how long it has
// run, from /proc.
func cpuAndAge(t *testing.T, pid int) (cpu, age time.Duration) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	// Fields after the name: state is 0, utime 11, stime 12, starttime 19.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	start, _ := strconv.ParseInt(f[19], 10, 64)
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	upS, _ := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, time.Duration(upS*float64(time.Second)) - time.Duration(start)*time.Second/hz
}

// herd reload of a program that no longer starts: exit 1 with the reason
// and the program's last output, while the old workers keep serving.
func TestRunReloadOfABrokenProgramKeepsTheOldWorkers(t *testing.T) {
	ex := runExamples(t)[0] // gofd
	broken := filepath.Join(t.TempDir(), "broken")
	script := `if [ -e "$BROKEN" ]; then echo "app.conf line 3: syntax error" >&2; exit 1; fi; exec "$@"`
	p := startRunEnv(t, []string{"BROKEN=" + broken}, []string{"--ready-probe", "notify"}, append([]string{"sh", "-c", script, "sh"}, ex.cmd...)...)
	p.WaitReady(60 * time.Second)
	before := workerPIDs(t, p)
	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := herdCmd(t, p, "reload")
	if code != 1 || !strings.Contains(out, "app.conf line 3: syntax error") || !strings.Contains(out, "keeps serving") {
		t.Errorf("herd reload of a broken program: exit %d, %q; want 1 with the reason and the program's output", code, out)
	}
	if after := workerPIDs(t, p); len(after) != 2 || !sameKeys(before, after) {
		t.Errorf("ready workers after the failed reload %v, want the old ones %v", after, before)
	}
	for range 4 {
		if pid := getPID(t, p.URL); !before[pid] {
			t.Errorf("/pid answered by %d, want one of the old workers %v", pid, before)
		}
	}
}

func sameKeys(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// What a program finds in its environment and arguments: LISTEN_PID is its
// own pid (set by the exec step), the socket under every convention, {fd}
// replaced; and --max-age replaces a worker, replacement first.
func TestRunProgramEnvironmentAndMaxAge(t *testing.T) {
	script := `echo "env pid=$$ listen_pid=$LISTEN_PID fds=$LISTEN_FDS names=$LISTEN_FDNAMES einhorn=$EINHORN_FD_COUNT/$EINHORN_FD_0 starter=$SERVER_STARTER_PORT port=$PORT worker=$HERD_RUN_WORKER arg=$1 notify=${NOTIFY_SOCKET:+set}"; exec sleep 600`
	p := startRunEnv(t, nil, []string{"--workers", "1", "--ready-after", "200ms", "--max-age", "2s"}, "sh", "-c", script, "sh", "--fd={fd}")
	rec := p.WaitLog(30*time.Second, "the program's environment line", func(r herdtest.Record) bool {
		return r.Msg() == "worker output" && strings.HasPrefix(r.Str("line"), "env ")
	})
	p.WaitReady(30 * time.Second) // the address, from the control socket
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	want := fmt.Sprintf("env pid=%d listen_pid=%d fds=1 names=http einhorn=1/3 starter=%s=3 port=%s worker=1 arg=--fd=3 notify=set",
		rec.Int("pid"), rec.Int("pid"), p.Addr, port)
	if got := rec.Str("line"); got != want {
		t.Errorf("program saw\n  %s\nwant\n  %s", got, want)
	}
	first := rec.Int("pid")
	r := p.WaitLog(30*time.Second, "the worker to be recycled by age", func(r herdtest.Record) bool {
		return r.Msg() == "replacing worker" && r.Int("pid") == first
	})
	if !strings.HasPrefix(r.Str("reason"), "recycle: up for") {
		t.Errorf("recycle reason %q, want it to say the age", r.Str("reason"))
	}
	p.WaitLog(30*time.Second, "the old worker to stop", func(r herdtest.Record) bool {
		return r.Msg() == "worker stopped" && r.Int("pid") == first
	})
}

// The watchdog: a program that sent WATCHDOG=1 and went silent is killed
// after --worker-timeout and replaced; one that never sent any is left
// alone. And --max-memory compares the program's RSS.
func TestRunWatchdogAndMaxMemory(t *testing.T) {
	prog := `
import os, socket, time
def notify(m):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(os.environ["NOTIFY_SOCKET"]); s.send(m.encode())
notify("READY=1")
if os.environ["HERD_RUN_WORKER"] == "1":
    notify("WATCHDOG=1")  # then silence: hung
junk = bytearray(8 << 20)  # 8 MiB resident
for i in range(0, len(junk), 4096): junk[i] = 1
time.sleep(600)
`
	p := startRunEnv(t, nil, []string{"--ready-probe", "notify", "--worker-timeout", "2s"}, pythonPath(t), "-c", prog)
	p.WaitReady(60 * time.Second)
	st := status(t, p)
	var silent int
	for _, w := range st.Workers {
		if w.ID == 2 {
			silent = w.PID
		}
	}
	rec := p.WaitLog(30*time.Second, "the hung worker to be killed", func(r herdtest.Record) bool {
		return r.Msg() == "worker stopped responding; killing it"
	})
	if rec.Int("worker") != 1 {
		t.Errorf("killed for silence: worker %d, want worker 1 (worker 2 never sent WATCHDOG=1)", rec.Int("worker"))
	}
	if !herdtest.Alive(silent) {
		t.Errorf("worker 2 (pid %d), which never sent WATCHDOG=1, was killed", silent)
	}
	// RSS of the program is seen (herd status), and over --max-memory it
	// is recycled.
	p.Eventually(10*time.Second, "herd status to show the program's RSS", func() bool {
		for _, w := range status(t, p).Workers {
			if w.PID == silent && w.RSS >= 8<<20 {
				return true
			}
		}
		return false
	})
	p.Signal(syscall.SIGTERM)
	p.Wait(30 * time.Second)

	q := startRunEnv(t, nil, []string{"--workers", "1", "--ready-probe", "notify", "--max-memory", "4MB"}, pythonPath(t), "-c", prog)
	r := q.WaitLog(60*time.Second, "recycling by memory", func(r herdtest.Record) bool { return r.Msg() == "replacing worker" })
	if !strings.Contains(r.Str("reason"), "RSS") {
		t.Errorf("recycle reason %q, want the RSS", r.Str("reason"))
	}
}
