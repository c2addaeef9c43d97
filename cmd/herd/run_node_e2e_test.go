package main

import (
	"fmt"
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

	"github.com/herd-go/herd/internal/herdtest"
)

// nodeExample returns node's path and examples/node's directory, failing
// the test saying what to do when either is missing.
func nodeExample(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run make test (scripts/deps.sh installs nodejs and npm)")
	}
	dir, err = filepath.Abs("../../examples/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/express")); err != nil {
		t.Fatal("examples/node/node_modules is missing: run make test, or npm ci in examples/node")
	}
	return node, dir
}

// The reference's Express app as written (reference.js: app.listen(PORT)
// and no signal handler, so Node alone exits at once on SIGTERM) loses
// nothing under herd run: herd loadtest -c 50 across two reloads has no
// failed and no resent request, and a slow request in flight when herd run
// gets SIGTERM completes. The preload module drains the app.
func TestRunNodeReferenceAsWrittenDrains(t *testing.T) {
	node, dir := nodeExample(t)
	p := startRun(t, []string{"--ready-probe", "http:/pid"}, node, filepath.Join(dir, "reference.js"))
	p.WaitReady(60 * time.Second)

	stopLoad := startLoadtest(t, p.URL+"/pid")
	before := workerPIDs(t, p)
	seen := map[int]bool{}
	p.Eventually(30*time.Second, "both workers to answer", func() bool {
		seen[getPID(t, p.URL)] = true
		return len(seen) == 2
	})
	for i := range 2 {
		if code, msg := herdCmd(t, p, "reload"); code != 0 {
			t.Fatalf("reload %d: exit %d: %s", i+1, code, msg)
		}
	}
	after := workerPIDs(t, p)
	for pid := range after {
		if before[pid] {
			t.Fatalf("pid %d served before and after two reloads (before %v, after %v)", pid, before, after)
		}
	}
	var doc struct{ Requests, Failed, Resent int64 }
	stderr, err := stopLoad(&doc)
	t.Logf("herd loadtest across 2 reloads: %d requests, %d failed, %d resent", doc.Requests, doc.Failed, doc.Resent)
	if err != nil || doc.Failed != 0 || doc.Resent != 0 || doc.Requests < 500 {
		t.Errorf("herd loadtest -c 50 across 2 reloads: %v, %d of %d requests failed, %d resent; want exit 0, a real load and none failed or resent\nstderr %s",
			err, doc.Failed, doc.Requests, doc.Resent, stderr)
	}

	// SIGTERM with a slow request in flight: it completes, herd exits 0,
	// and the workers exited on their own (code 0), not by SIGKILL.
	resC := slowRequestInFlight(t, p)
	p.Signal(syscall.SIGTERM)
	r := <-resC
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, "slept 1500 ms") {
		t.Errorf("slow request in flight during SIGTERM: %d %q %v; want 200 and its answer", r.status, r.body, r.err)
	}
	if !r.close {
		t.Errorf("the slow request's answer did not say Connection: close; want it to (the worker was draining)")
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Errorf("herd run exited %d after SIGTERM, want 0", code)
	}
	for pid := range after {
		stopped := p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker stopped" && r.Int("pid") == pid })
		if len(stopped) != 1 || stopped[0]["code"] != float64(0) {
			t.Errorf("worker %d: stop records %v; want one with code 0 (it drained and exited)", pid, stopped)
		}
	}
}

// A Node program with its own handler for the stop signal keeps it: the
// preload does not drain it behind its back. Here the handler exits 3 a
// little later; with no connection open the preload's drain would have
// exited 0 at once.
func TestRunNodeOwnStopHandlerIsLeftAlone(t *testing.T) {
	node, _ := nodeExample(t)
	prog := filepath.Join(t.TempDir(), "own.js")
	src := `const http = require("http");
http.createServer((req, res) => res.end("ok")).listen(process.env.PORT);
process.on("SIGUSR2", () => { console.log("own handler"); setTimeout(() => process.exit(3), 300); });
`
	if err := os.WriteFile(prog, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startRun(t, []string{"--ready-probe", "http:/", "--stop-signal", "SIGUSR2"}, node, prog)
	p.WaitReady(60 * time.Second)
	pids := workerPIDs(t, p)
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Errorf("herd run exited %d after SIGTERM, want 0", code)
	}
	for pid := range pids {
		stopped := p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker stopped" && r.Int("pid") == pid })
		if len(stopped) != 1 || stopped[0]["code"] != float64(3) {
			t.Errorf("worker %d: stop records %v; want one with code 3 (its own handler's)", pid, stopped)
		}
	}
	if n := len(p.Find(func(r herdtest.Record) bool { return strings.Contains(r.Str("line"), "own handler") })); n != 2 {
		t.Errorf("%d workers said \"own handler\", want 2", n)
	}
}

// herd run on a port in use: exit 2 and one line naming the setting and
// where it came from, as herd serve says it.
func TestRunPortInUseExits2WithOneLine(t *testing.T) {
	t.Parallel()
	herdtest.Binary(t) // built before runHerd's 30 s start
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	dotenv := t.TempDir()
	if err := os.WriteFile(filepath.Join(dotenv, ".env"), []byte("# herd\nPORT="+port+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    runOpts
		args []string
		want []string
	}{
		{"--port", runOpts{}, []string{"--port", port}, []string{`invalid --port "` + port + `":`, "127.0.0.1:" + port + " is already in use"}},
		{"PORT", runOpts{env: []string{"PORT=" + port}}, nil, []string{`invalid PORT "` + port + `" (from the environment):`, "already in use"}},
		{".env", runOpts{dir: dotenv}, nil, []string{`invalid PORT "` + port + `" (from .env line 2):`, "already in use"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{"run", "--host", "127.0.0.1"}, tc.args...), "--", "sleep", "60")
			code, stdout, stderr := runHerd(t, tc.o, args...)
			wantOneLine(t, code, stdout, stderr, tc.want...)
		})
	}
}

// acceptsLate is a server that opens for business only after argv[1]
// seconds: then it accepts on its probe socket (fd 4) and serves HTTP on
// herd's socket (fd 3). It says when it starts accepting.
const acceptsLate = `import os, select, socket, sys, threading, time, http.server
time.sleep(float(sys.argv[1]))
print("accepting at %.6f" % time.time(), flush=True)
probe = socket.socket(fileno=4)  # non-blocking, as herd passes it
def probe_loop():
    while True:
        select.select([probe], [], [])
        try:
            c, _ = probe.accept()
        except BlockingIOError:
            continue
        c.close()
threading.Thread(target=probe_loop, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
`

// --ready-probe tcp: a worker is ready once the program has accepted a
// connection on its private probe socket, not when the kernel completed the
// connect: a program that sleeps 2 s before accepting is not ready before.
func TestRunTCPProbeWaitsForAccept(t *testing.T) {
	python := pythonPath(t)
	prog := filepath.Join(t.TempDir(), "late.py")
	if err := os.WriteFile(prog, []byte(acceptsLate), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startRun(t, []string{"--ready-probe", "tcp", "--ready-timeout", "60s"}, python, prog, "2")
	p.WaitReady(60 * time.Second)
	stamp := func(r herdtest.Record) time.Time {
		ts, err := time.Parse(time.RFC3339Nano, r.Str("time"))
		if err != nil {
			t.Fatalf("record %v: %v", r, err)
		}
		return ts
	}
	pids := workerPIDs(t, p)
	if len(pids) != 2 {
		t.Fatalf("ready workers %v, want 2", pids)
	}
	for pid := range pids {
		of := func(msg string) herdtest.Record {
			rs := p.Find(func(r herdtest.Record) bool { return r.Msg() == msg && r.Int("pid") == pid })
			if len(rs) != 1 {
				t.Fatalf("worker %d: %d %q records, want 1", pid, len(rs), msg)
			}
			return rs[0]
		}
		started, ready := stamp(of("worker started")), stamp(of("worker listening"))
		var accepting float64
		line := p.WaitLog(30*time.Second, "the worker to say it accepts", func(r herdtest.Record) bool {
			return r.Msg() == "worker output" && r.Int("pid") == pid && strings.HasPrefix(r.Str("line"), "accepting at")
		}).Str("line")
		if _, err := fmt.Sscanf(line, "accepting at %f", &accepting); err != nil {
			t.Fatalf("worker %d said %q, want \"accepting at <time>\"", pid, line)
		}
		acceptedAt := time.Unix(0, int64(accepting*1e9))
		t.Logf("worker %d: started %s, accepting %s later, ready %s later", pid, started.Format(time.StampMicro),
			acceptedAt.Sub(started), ready.Sub(started))
		if ready.Before(acceptedAt) || ready.Sub(started) < 2*time.Second {
			t.Errorf("worker %d ready %s after start, %s after it began accepting; want ready only once it accepts (2 s after start)",
				pid, ready.Sub(started), ready.Sub(acceptedAt))
		}
	}
	code, _, body := p.Do(http.MethodGet, "/", "")
	if pid, _ := strconv.Atoi(string(body)); code != 200 || !pids[pid] {
		t.Errorf("GET /: %d %q, want 200 and a worker's pid %v", code, body, pids)
	}
}
