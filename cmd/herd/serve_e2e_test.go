package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/internal/herdtest"
)

// End-to-end tests of "herd serve" on the real binary, as a user runs it.

// freshClient opens a new connection for every request, so that
// successive requests can land on different workers.
var freshClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   30 * time.Second,
}

// fetch sends a request over a new connection.
func fetch(t *testing.T, method, url, body string) (int, http.Header, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := freshClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// mustFetch is fetch that fails the test on a transport error.
func mustFetch(t *testing.T, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	code, h, b, err := fetch(t, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return code, h, b
}

// workersReply is GET /cluster/workers.
type workersReply struct {
	Primary struct {
		PID int `json:"pid"`
	} `json:"primary"`
	Workers []app.WorkerInfo `json:"workers"`
	Count   int              `json:"count"`
}

func listWorkers(t *testing.T, p *herdtest.Proc) workersReply {
	t.Helper()
	code, _, body := mustFetch(t, "GET", p.URL+"/cluster/workers", "")
	var r workersReply
	if code != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("GET /cluster/workers = %d %s", code, body)
	}
	return r
}

// readyWorker returns the pid of the ready process in slot id, or 0.
func (r workersReply) readyWorker(id int) (pid, restarts int) {
	for _, w := range r.Workers {
		if w.ID == id && w.State == "online" {
			return w.PID, w.Restarts
		}
	}
	return 0, 0
}

// noExitSleep keeps a -race build of herd from sleeping a second as it
// exits (the race runtime's atexit_sleep_ms), so that the time bounds
// measure herd.
var noExitSleep = strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")

// startServe starts herd serve with args and waits until it serves.
func startServe(t *testing.T, opts herdtest.Options, args ...string) *herdtest.Proc {
	t.Helper()
	opts.Env = append(opts.Env, noExitSleep)
	p := herdtest.Start(t, opts, append([]string{"serve"}, args...)...)
	p.WaitReady(20 * time.Second)
	return p
}

func primaryPID(p *herdtest.Proc) int { return p.Cmd.Process.Pid }

// waitWorkersGone waits until none of the pids herd ever started is alive.
func waitWorkersGone(t *testing.T, p *herdtest.Proc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var alive []int
		for _, pid := range p.WorkerPIDs() {
			if herdtest.Alive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v still alive %s later", alive, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldRequest is a POST /cluster/cpu-intensive whose handler is running in
// a worker, waiting for the request body: the server has answered "100
// Continue", which net/http does only when the handler reads the body. It
// is a request surely in flight, for as long as the test likes, costing no
// CPU.
type heldRequest struct {
	conn net.Conn
	br   *bufio.Reader
}

const heldBody = `{"n":30}` // fib(30) = 832040

func holdRequest(t *testing.T, addr string) *heldRequest {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /cluster/cpu-intensive HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(heldBody))
	h := &heldRequest{conn: conn, br: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(h.br, nil) //nolint:bodyclose // a 100 Continue has no body; the final response follows on conn
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %s, want 100 Continue", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return h
}

// finish sends the body and returns the final response.
func (h *heldRequest) finish() (int, http.Header, []byte, error) {
	_ = h.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(h.conn, heldBody); err != nil {
		return 0, nil, nil, err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// outcome waits for the server to end the request without a body from
// us: it returns the error (EOF, reset) or the response status.
func (h *heldRequest) outcome() string {
	_ = h.conn.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return resp.Status
}

func TestServeWorkersShareThePort(t *testing.T) {
	t.Parallel()
	const n = 3
	p := startServe(t, herdtest.Options{}, "--workers", strconv.Itoa(n))

	// Every worker answers /pid, each with its own pid and id.
	pids := map[int]string{} // pid -> X-Worker-Id
	deadline := time.Now().Add(20 * time.Second)
	for len(pids) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s of new connections, only %d distinct pids answered /pid: %v", len(pids), pids)
		}
		code, h, body := mustFetch(t, "GET", p.URL+"/pid", "")
		var r struct {
			PID int `json:"processid"`
		}
		if code != 200 || json.Unmarshal(body, &r) != nil || r.PID == 0 {
			t.Fatalf("GET /pid = %d %s", code, body)
		}
		if got := h.Get("X-Worker-Pid"); got != strconv.Itoa(r.PID) {
			t.Errorf("X-Worker-Pid %q, but /pid says %d", got, r.PID)
		}
		if r.PID == primaryPID(p) {
			t.Fatalf("the primary (pid %d) served /pid: it must serve no traffic", r.PID)
		}
		pids[r.PID] = h.Get("X-Worker-Id")
	}
	ids := map[string]bool{}
	for _, id := range pids {
		ids[id] = true
	}
	for id := 1; id <= n; id++ {
		if !ids[strconv.Itoa(id)] {
			t.Errorf("no answer with X-Worker-Id %d; got %v", id, pids)
		}
	}

	// /cluster/workers, answered by a worker, lists them all under the
	// primary that logged itself as running.
	running := p.WaitMsg(10*time.Second, "primary running")
	wr := listWorkers(t, p)
	if wr.Primary.PID != running.Int("pid") || wr.Primary.PID != primaryPID(p) {
		t.Errorf("/cluster/workers primary pid %d; the log says %d, the process is %d", wr.Primary.PID, running.Int("pid"), primaryPID(p))
	}
	if wr.Count != n || len(wr.Workers) != n {
		t.Fatalf("/cluster/workers count %d with %d entries, want %d", wr.Count, len(wr.Workers), n)
	}
	for i, w := range wr.Workers {
		if w.ID != i+1 || w.State != "online" || w.Restarts != 0 || pids[w.PID] != strconv.Itoa(w.ID) {
			t.Errorf("worker entry %+v: want id %d, online, no restarts, a pid that answered /pid as that id", w, i+1)
		}
	}

	// The crash switch is off unless asked for.
	if code, _, body := mustFetch(t, "POST", p.URL+"/cluster/crash", ""); code != 404 {
		t.Errorf("POST /cluster/crash without --enable-crash-endpoint = %d %s, want 404", code, body)
	}

	// herd healthcheck against it, and against a closed port.
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	if code, out, errOut := runHerd(t, runOpts{}, "healthcheck", "--port", port); code != 0 {
		t.Errorf("herd healthcheck --port %s against a running herd: exit %d\n%s%s", port, code, out, errOut)
	}
	if code, out, errOut := runHerd(t, runOpts{}, "healthcheck", "--port", closedPort(t)); code != 1 {
		t.Errorf("herd healthcheck against a closed port: exit %d, want 1\n%s%s", code, out, errOut)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// waitReplaced waits until slot id is served by a ready process other
// than old, and returns its pid and restart count.
func waitReplaced(t *testing.T, p *herdtest.Proc, id, old int) (pid, restarts int) {
	t.Helper()
	p.Eventually(15*time.Second, fmt.Sprintf("a new ready worker %d", id), func() bool {
		pid, restarts = listWorkers(t, p).readyWorker(id)
		return pid != 0 && pid != old
	})
	// And it serves: some new connection lands on it.
	p.Eventually(15*time.Second, fmt.Sprintf("new worker %d (pid %d) answering /pid", id, pid), func() bool {
		_, h, _ := mustFetch(t, "GET", p.URL+"/pid", "")
		return h.Get("X-Worker-Pid") == strconv.Itoa(pid)
	})
	return pid, restarts
}

func TestServeReplacesAKilledWorker(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2")
	old, _ := listWorkers(t, p).readyWorker(1)
	if old == 0 {
		t.Fatal("no ready worker 1")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	died := p.WaitLog(10*time.Second, "worker died", func(r herdtest.Record) bool {
		return r.Msg() == "worker died" && r.Int("pid") == old
	})
	if died.Int("worker") != 1 || died.Str("signal") != "killed" {
		t.Errorf("worker died log: %v, want worker 1 and signal killed", died)
	}
	pid, restarts := waitReplaced(t, p, 1, old)
	if restarts != 1 {
		t.Errorf("worker 1 restarts = %d, want 1", restarts)
	}
	if herdtest.Alive(old) {
		t.Errorf("the killed worker %d is still alive", old)
	}
	select {
	case <-p.Exited():
		t.Fatal("the primary exited after a worker died")
	default:
	}
	t.Logf("worker 1: pid %d replaced by %d", old, pid)
}

func TestServeCrashEndpointReplacesTheWorker(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2", "--enable-crash-endpoint")
	code, h, body := mustFetch(t, "POST", p.URL+"/cluster/crash", "")
	var r struct {
		WorkerID int `json:"workerId"`
		PID      int `json:"pid"`
	}
	if code != 200 || json.Unmarshal(body, &r) != nil || r.PID == 0 {
		t.Fatalf("POST /cluster/crash = %d %s, want 200 and JSON naming the worker", code, body)
	}
	if h.Get("X-Worker-Pid") != strconv.Itoa(r.PID) || h.Get("X-Worker-Id") != strconv.Itoa(r.WorkerID) {
		t.Errorf("headers %v do not match the body %s", h, body)
	}
	died := p.WaitLog(10*time.Second, "worker died", func(rec herdtest.Record) bool {
		return rec.Msg() == "worker died" && rec.Int("pid") == r.PID
	})
	if died.Int("code") != 1 {
		t.Errorf("worker died log: %v, want code 1", died)
	}
	if _, restarts := waitReplaced(t, p, r.WorkerID, r.PID); restarts != 1 {
		t.Errorf("worker %d restarts = %d, want 1", r.WorkerID, restarts)
	}
}

func TestServeGracefulStopFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2")
	const n = 6
	held := make([]*heldRequest, n)
	for i := range held {
		held[i] = holdRequest(t, p.Addr)
	}
	p.Signal(syscall.SIGTERM)
	p.WaitMsg(10*time.Second, "shutting down gracefully")
	p.Eventually(10*time.Second, "both workers draining", func() bool {
		return len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "draining worker" })) == 2
	})
	// The workers are draining; their requests are still being served.
	type result struct {
		code int
		body []byte
		err  error
	}
	results := make(chan result, n)
	for _, h := range held {
		go func() {
			code, _, body, err := h.finish()
			results <- result{code, body, err}
		}()
	}
	for range n {
		r := <-results
		var m struct {
			Calculation struct {
				Result int `json:"result"`
			} `json:"calculation"`
		}
		if r.err != nil || r.code != 200 || json.Unmarshal(r.body, &m) != nil || m.Calculation.Result != 832040 {
			t.Errorf("in-flight request after SIGTERM: %d %s %v; want 200 with fib(30) = 832040", r.code, r.body, r.err)
		}
	}
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after a graceful stop, want 0", code)
	}
	p.WaitMsg(5*time.Second, "all workers stopped; primary exiting")
	waitWorkersGone(t, p, 5*time.Second)
}

func TestServeNoOrphansWhenThePrimaryIsKilled(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2")
	workers := p.WorkerPIDs()
	if len(workers) != 2 {
		t.Fatalf("worker pids %v, want 2", workers)
	}
	p.Signal(syscall.SIGKILL)
	killed := time.Now()
	p.Wait(10 * time.Second)
	waitWorkersGone(t, p, 2*time.Second-time.Since(killed))
	// The port is free again once no process holds the socket.
	deadline := killed.Add(2 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.Addr)
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s still taken 2 s after the primary was killed: %v", p.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeSecondSIGINTForcesTheStop(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2") // shutdown timeout 30 s
	h := holdRequest(t, p.Addr)
	p.Signal(syscall.SIGINT)
	p.WaitMsg(10*time.Second, "shutting down gracefully")
	start := time.Now()
	p.Signal(syscall.SIGINT)
	p.Wait(10 * time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("herd took %s to exit after the second SIGINT", d.Round(time.Millisecond))
	}
	waitWorkersGone(t, p, 5*time.Second)
	if got := h.outcome(); strings.HasPrefix(got, "200") {
		t.Errorf("the held request was answered %q after a forced stop", got)
	}
}

func TestServeShutdownTimeoutIsHonoured(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2", "--shutdown-timeout", "1s")
	h := holdRequest(t, p.Addr) // would wait for its body forever
	start := time.Now()
	p.Signal(syscall.SIGTERM)
	code := p.Wait(20 * time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("with --shutdown-timeout 1s, herd took %s to exit", d.Round(time.Millisecond))
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	waitWorkersGone(t, p, 5*time.Second)
	t.Logf("the held request ended with: %s", h.outcome())
}

func TestServeSingleProcess(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--cluster", "off")
	code, h, body := mustFetch(t, "GET", p.URL+"/pid", "")
	want := fmt.Sprintf(`{"processid":%d}`, primaryPID(p))
	if code != 200 || strings.TrimSpace(string(body)) != want {
		t.Errorf("GET /pid = %d %s, want 200 %s (the process herd started)", code, body, want)
	}
	if h.Get("X-Worker-Id") != "0" || h.Get("X-Worker-Pid") != strconv.Itoa(primaryPID(p)) {
		t.Errorf("X-Worker-Id %q X-Worker-Pid %q, want 0 and %d", h.Get("X-Worker-Id"), h.Get("X-Worker-Pid"), primaryPID(p))
	}
	if code, _, body := mustFetch(t, "GET", p.URL+"/", ""); code != 200 || string(body) != "Hello World!" {
		t.Errorf("GET / = %d %q", code, body)
	}
	if pids := p.WorkerPIDs(); len(pids) != 0 {
		t.Errorf("--cluster off started workers %v", pids)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestServeConfigurationFromEnvironmentAndDotenv(t *testing.T) {
	t.Parallel()
	workersStarted := func(p *herdtest.Proc) int {
		return p.WaitMsg(10*time.Second, "all workers ready").Int("workers")
	}
	t.Run("CLUSTER_ENABLED=false", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{Env: []string{"CLUSTER_ENABLED=false"}})
		p.WaitMsg(10*time.Second, "serving in a single process")
		_, h, _ := mustFetch(t, "GET", p.URL+"/pid", "")
		if h.Get("X-Worker-Pid") != strconv.Itoa(primaryPID(p)) {
			t.Errorf("X-Worker-Pid %q, want the single process %d", h.Get("X-Worker-Pid"), primaryPID(p))
		}
	})
	dotenvDir := func(t *testing.T, content string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run(".env", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{Dir: dotenvDir(t, "# test\nCLUSTER_WORKERS=2\nLOG_FORMAT=text\n")})
		if got := workersStarted(p); got != 2 {
			t.Errorf(".env CLUSTER_WORKERS=2: %d workers", got)
		}
		if n := listWorkers(t, p).Count; n != 2 {
			t.Errorf("/cluster/workers count %d, want 2", n)
		}
	})
	t.Run("flag beats .env", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{Dir: dotenvDir(t, "CLUSTER_WORKERS=2\n")}, "--workers", "3")
		if got := workersStarted(p); got != 3 {
			t.Errorf("--workers 3 over .env CLUSTER_WORKERS=2: %d workers", got)
		}
	})
	t.Run("environment beats .env", func(t *testing.T) {
		t.Parallel()
		p := startServe(t, herdtest.Options{Dir: dotenvDir(t, "CLUSTER_WORKERS=3\n"), Env: []string{"CLUSTER_WORKERS=1"}})
		if got := workersStarted(p); got != 1 {
			t.Errorf("CLUSTER_WORKERS=1 over .env CLUSTER_WORKERS=3: %d workers", got)
		}
	})
}

// runOpts configure runHerd.
type runOpts struct {
	dir string   // working directory (default: an empty temp dir)
	env []string // extra environment
}

// runHerd runs the herd binary to completion with stdout and stderr kept
// apart, in an environment free of herd's settings.
func runHerd(t *testing.T, o runOpts, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, herdtest.Binary(t), args...)
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = t.TempDir()
	}
	cmd.Env = herdtest.CleanEnv()
	cmd.Env = append(cmd.Env, noExitSleep)
	cmd.Env = append(cmd.Env, o.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("herd %q still running after 30 s; output:\n%s%s", args, &out, &errOut)
	}
	if ee := (*exec.ExitError)(nil); err != nil && !errors.As(err, &ee) {
		t.Fatalf("herd %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// wantOneLine checks a usage failure: exit 2, nothing on stdout, one line
// on stderr containing each of want, and no stack trace.
func wantOneLine(t *testing.T, code int, stdout, stderr string, want ...string) {
	t.Helper()
	if code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr %q, want exactly one line", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr has a stack trace: %q", stderr)
	}
}

func TestServeBadConfigurationExits2WithOneLine(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	safe := []string{"--port", "0", "--host", "127.0.0.1"} // should a bad case start anyway
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"workers 0", append([]string{"--workers", "0"}, safe...), nil, []string{`invalid --workers "0":`, "1 to 1024"}},
		{"workers -3", append([]string{"--workers", "-3"}, safe...), nil, []string{`invalid --workers "-3":`}},
		{"workers abc", append([]string{"--workers", "abc"}, safe...), nil, []string{`invalid --workers "abc":`}},
		{"CLUSTER_WORKERS abc", safe, []string{"CLUSTER_WORKERS=abc"}, []string{`invalid CLUSTER_WORKERS "abc" (from the environment)`}},
		{"cluster bogus", append([]string{"--cluster", "bogus"}, safe...), nil, []string{`invalid --cluster "bogus":`, "auto, manual or off"}},
		{"port 70000", []string{"--port", "70000", "--host", "127.0.0.1"}, nil, []string{`invalid --port "70000":`, "65535"}},
		{"port in use", []string{"--port", busyPort, "--host", "127.0.0.1"}, nil, []string{`invalid --port "` + busyPort + `":`, "in use"}},
		{"port in use, single process", []string{"--cluster", "off", "--port", busyPort, "--host", "127.0.0.1"}, nil, []string{"--port", "in use"}},
		{"PORT in use", []string{"--host", "127.0.0.1"}, []string{"PORT=" + busyPort}, []string{`invalid PORT "` + busyPort + `" (from the environment):`, "in use"}},
		{"APP_ENV staging", safe, []string{"APP_ENV=staging"}, []string{`invalid APP_ENV "staging" (from the environment)`, "production or development"}},
		{"unknown flag", append([]string{"--bogus"}, safe...), nil, []string{"bogus"}},
		{"worker marker without a primary", safe, []string{"HERD_WORKER_ID=1"}, []string{"HERD_WORKER_ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runHerd(t, runOpts{env: tc.env}, append([]string{"serve"}, tc.args...)...)
			wantOneLine(t, code, stdout, stderr, tc.want...)
		})
	}
}

func TestServeBadDotenvExits2WithOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("PORT=0\nnot a setting\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHerd(t, runOpts{dir: dir}, "serve", "--host", "127.0.0.1")
	wantOneLine(t, code, stdout, stderr, ".env line 2", "KEY=VALUE")
}

func TestHerdCommands(t *testing.T) {
	t.Parallel()
	if code, stdout, stderr := runHerd(t, runOpts{}, "version"); code != 0 || !strings.HasPrefix(stdout, "herd ") || stderr != "" {
		t.Errorf("herd version: exit %d, stdout %q, stderr %q; want 0 and \"herd <version>\"", code, stdout, stderr)
	}
	code, stdout, stderr := runHerd(t, runOpts{}, "bogus")
	wantOneLine(t, code, stdout, stderr, `"bogus"`, "serve", "verify")
	_, help, _ := runHerd(t, runOpts{}, "help")
	for _, c := range commands { // what the dispatcher knows
		if !strings.Contains(stderr, " "+c.name+",") && !strings.HasSuffix(stderr, " "+c.name+")\n") {
			t.Errorf("the unknown-command message %q does not list %q", stderr, c.name)
		}
		if !strings.Contains(help, "\n  "+c.name+" ") {
			t.Errorf("herd help does not list %q:\n%s", c.name, help)
		}
	}
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"--help"}} {
		code, stdout, stderr := runHerd(t, runOpts{}, args...)
		if code != 0 || !strings.Contains(stdout, "-workers") || !strings.Contains(stdout, "CLUSTER_WORKERS") || stderr != "" {
			t.Errorf("herd %q: exit %d, stderr %q, stdout:\n%s\nwant 0 and the flags with their variables", args, code, stderr, stdout)
		}
	}
	if code, stdout, _ := runHerd(t, runOpts{}, "help"); code != 0 || !strings.Contains(stdout, "serve") {
		t.Errorf("herd help: exit %d, stdout %q", code, stdout)
	}
}

// The real binary's server limits and error answers, end to end: what the
// app package's httptest tests cannot show is that herd serve puts the
// handlers behind a server with the same limits (headers, bodies) and that
// every answer its handlers give carries the worker's identity.
func TestServeBadInputEndToEnd(t *testing.T) {
	t.Parallel()
	p := startServe(t, herdtest.Options{}, "--workers", "2")
	// net/http reads up to MaxHeaderBytes plus 4 KiB of slack before it
	// refuses headers: well under and well over 1 MiB, then.
	const underHeader, overHeader = 1<<20 - 4<<10, 1<<20 + 16<<10
	padded := func(json string, size int) string { return json + strings.Repeat(" ", size-len(json)) }
	tests := []struct {
		name       string
		method     string
		path       string
		padHeader  int    // bytes of an X-Pad header, 0 for none
		body       string // sent as application/json when not empty
		wantStatus int
		wantBody   string // in the body
		wantAllow  string
		jsonError  bool // the body is {"error": "..."}
		fromHerd   bool // herd's handlers answered, not net/http
	}{
		{name: "GET /api/10", method: "GET", path: "/api/10",
			wantStatus: 200, wantBody: "Final count is 55 ", fromHerd: true},
		{name: "GET /api/abc", method: "GET", path: "/api/abc",
			wantStatus: 400, wantBody: `\"abc\"`, jsonError: true, fromHerd: true},
		{name: "POST /pid", method: "POST", path: "/pid",
			wantStatus: 405, wantBody: "method POST not allowed on /pid", wantAllow: "GET, HEAD", jsonError: true, fromHerd: true},
		{name: "GET /nope", method: "GET", path: "/nope",
			wantStatus: 404, wantBody: "no route for GET /nope", jsonError: true, fromHerd: true},
		{name: "headers under 1 MiB", method: "GET", path: "/pid", padHeader: underHeader,
			wantStatus: 200, wantBody: `"processid"`, fromHerd: true},
		// net/http answers before any handler runs, so this one carries no
		// X-Worker-Id: the one exception to "every response carries it".
		{name: "headers over 1 MiB", method: "GET", path: "/pid", padHeader: overHeader,
			wantStatus: 431, wantBody: "Request Header Fields Too Large"},
		{name: "body of exactly 1 MiB", method: "POST", path: "/cluster/cpu-intensive", body: padded(`{"n":10}`, app.MaxBody),
			wantStatus: 200, wantBody: `"result":55`, fromHerd: true},
		{name: "body over 1 MiB", method: "POST", path: "/cluster/cpu-intensive", body: padded(`{"n":10}`, app.MaxBody+1),
			wantStatus: 413, wantBody: "request body is larger than 1048576 bytes", jsonError: true, fromHerd: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, p.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.padHeader > 0 {
				req.Header.Set("X-Pad", strings.Repeat("a", tc.padHeader))
			}
			resp, err := freshClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("%s %s = %d %s, want %d with %s", tc.method, tc.path, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow %q, want %q", got, tc.wantAllow)
			}
			if tc.jsonError {
				var e struct {
					Error string `json:"error"`
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("body %s, want {\"error\": \"...\"} (%v)", body, err)
				}
			}
			id, pid := resp.Header.Get("X-Worker-Id"), resp.Header.Get("X-Worker-Pid")
			switch {
			case tc.fromHerd && (id != "1" && id != "2" || pid == "" || pid == strconv.Itoa(primaryPID(p))):
				t.Errorf("X-Worker-Id %q X-Worker-Pid %q, want worker 1 or 2 and its pid", id, pid)
			case !tc.fromHerd && (id != "" || pid != ""):
				t.Errorf("X-Worker-Id %q X-Worker-Pid %q on an answer of net/http's own: has herd started stamping those? update this test", id, pid)
			}
		})
	}
}
