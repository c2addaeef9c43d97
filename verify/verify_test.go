package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// lockCPU serializes, across this module's test binaries (go test runs
// packages at once), the tests that time CPU-bound requests against real
// workers: two at once on a small machine would each measure the other.
func lockCPU(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "herd-verify-cpu.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// overloaded reports whether the machine had more runnable work than cores
// over the last minute, when a verdict on parallel timing means nothing.
func overloaded() (bool, string) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return false, ""
	}
	f := strings.Fields(string(b))
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return false, ""
	}
	return load > float64(runtime.NumCPU()), fmt.Sprintf("load average %.2f on %d cores", load, runtime.NumCPU())
}

// wantChecks compares the report with the wanted status and evidence
// fragment of each check, in order. A failed CPU check on an overloaded
// machine, where its wall-clock verdict means nothing, must be made good
// by herdtest.ProveParallel's measure of CPU time.
func wantChecks(t *testing.T, rep *Report, want []Check) {
	t.Helper()
	if len(rep.Checks) != len(want) {
		t.Fatalf("%d checks, want %d:\n%s", len(rep.Checks), len(want), text(rep))
	}
	for i, w := range want {
		c := rep.Checks[i]
		if c.Name != w.Name {
			t.Errorf("check %d is %q, want %q", i+1, c.Name, w.Name)
		}
		if c.Status == Fail && w.Status == Pass && c.Name == CheckParallel {
			if busy, why := overloaded(); busy {
				// The wall-clock verdict means nothing here; CPU time does.
				t.Logf("on a busy machine (%s): %s; measuring CPU time instead: %s", why, c, herdtest.ProveParallel(t))
				continue
			}
		}
		if c.Status != w.Status || !strings.Contains(c.Evidence, w.Evidence) {
			t.Errorf("got  %s\nwant %s (containing)", c, w)
		}
	}
}

func text(rep *Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}

func TestVerifySelfStarted(t *testing.T) {
	lockCPU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := StartCluster(ctx, ClusterOptions{Binary: herdtest.Binary(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Kill)
	rep, err := Run(ctx, Options{URL: cl.URL(), Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text(rep))
	wantChecks(t, rep, []Check{
		{Name: CheckAnswers, Status: Pass, Evidence: `GET / → 200 "Hello World!" from worker `},
		{Name: CheckDistribution, Status: Pass, Evidence: "2 workers answered 60 requests: 1→"},
		{Name: CheckSharedState, Status: Pass, Evidence: "read back equal through worker"},
		{Name: CheckLocalState, Status: Pass, Evidence: "each worker counted only its own requests"},
		{Name: CheckParallel, Status: Pass, Evidence: "2 × fib("},
		{Name: CheckCrash, Status: Pass, Evidence: "crashed on request; worker "},
		{Name: CheckShutdown, Status: Pass, Evidence: "completed 200 with the right sum"},
	})
	if t.Failed() {
		t.Logf("herd's last lines:\n%s", cl.Output())
	}
	// The shutdown check stopped the cluster, and nothing of it is left.
	select {
	case <-cl.Done():
	default:
		t.Fatal("the primary still runs after the shutdown check")
	}
	if err := cl.Stop(ctx); err != nil {
		t.Errorf("Stop after the shutdown check: %v", err)
	}
	for _, pid := range append(cl.WorkerPIDs(), cl.PID()) {
		if alive(pid) {
			t.Errorf("process %d of the cluster still runs", pid)
		}
	}
	if len(cl.WorkerPIDs()) != 3 {
		t.Errorf("worker pids %v, want 3: two and the crashed one's replacement", cl.WorkerPIDs())
	}
}

func TestStartClusterKillLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := StartCluster(ctx, ClusterOptions{Binary: herdtest.Binary(t), Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Kill)
	resp, err := http.Get(cl.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pids := cl.WorkerPIDs()
	if len(pids) != 3 {
		t.Fatalf("worker pids %v, want 3", pids)
	}
	cl.Kill()
	for _, pid := range append(pids, cl.PID()) {
		if alive(pid) {
			t.Errorf("process %d still runs after Kill", pid)
		}
	}
	cl.Kill() // twice is fine
	if err := cl.Stop(ctx); err == nil {
		t.Error("Stop after Kill: nil error, want the exit by SIGKILL reported")
	}
}

func TestStartClusterFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// sh cannot open a script named "serve": it exits before any "ready".
	_, err := StartCluster(ctx, ClusterOptions{Binary: "/bin/sh"})
	if err == nil || !strings.Contains(err.Error(), "exited (exit status") {
		t.Fatalf("err = %v, want herd serve exited before ready", err)
	}
	_, err = StartCluster(ctx, ClusterOptions{Binary: filepath.Join(t.TempDir(), "missing")})
	if err == nil || !strings.Contains(err.Error(), "verify: starting") {
		t.Fatalf("err = %v, want a start error", err)
	}
}

func TestVerifyUnreachable(t *testing.T) {
	s := httptest.NewServer(http.NotFoundHandler())
	url := s.URL
	s.Close() // nothing listens there now
	rep, err := Run(context.Background(), Options{URL: url, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checks[0].Status != Fail || !strings.Contains(rep.Checks[0].Evidence, "connection refused") {
		t.Errorf("first check: %s, want a failure saying connection refused", rep.Checks[0])
	}
	for _, c := range rep.Checks[1:] {
		if c.Status != Skip || !strings.Contains(c.Evidence, "the server does not answer") {
			t.Errorf("%s, want skipped: the server does not answer", c)
		}
	}
	if rep.Failed != 1 || rep.Skipped != 6 {
		t.Errorf("failed %d, skipped %d; want 1 and 6", rep.Failed, rep.Skipped)
	}
}

func TestVerifyBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "localhost:3000"}); err == nil {
		t.Fatal("no error for a URL without scheme")
	}
}

func TestVerifyInterrupted(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("Hello World!"))
	}))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := Run(ctx, Options{URL: s.URL})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rep.Skipped != 7 || rep.Checks[0].Evidence != "interrupted" {
		t.Errorf("report:\n%s\nwant every check skipped: interrupted", text(rep))
	}
}

// brokenHerd pretends to be two workers, alternating per request, and gets
// every promise wrong: shared state is per worker, the local counter is
// one for all, CPU work is serialized, a crashed worker never comes back.
type brokenHerd struct {
	n       atomic.Int64
	mu      sync.Mutex
	shared  [2]map[string]json.RawMessage
	counter atomic.Int64
	cpu     sync.Mutex
}

func (b *brokenHerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(b.n.Add(1) % 2)
	w.Header().Set("X-Worker-Id", strconv.Itoa(i+1))
	w.Header().Set("X-Worker-Pid", strconv.Itoa(1001+i))
	j := func(v any) { w.Header().Set("Content-Type", "application/json"); _ = json.NewEncoder(w).Encode(v) }
	switch {
	case r.URL.Path == "/":
		_, _ = w.Write([]byte("Hello World!"))
	case r.URL.Path == "/pid":
		j(map[string]int{"processid": 1001 + i})
	case r.Method == "POST" && r.URL.Path == "/cluster/shared-state":
		var body struct {
			Key   string
			Value json.RawMessage
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		b.mu.Lock()
		if b.shared[i] == nil {
			b.shared[i] = map[string]json.RawMessage{}
		}
		b.shared[i][body.Key] = body.Value
		b.mu.Unlock()
		j(map[string]any{"action": "stored"})
	case strings.HasPrefix(r.URL.Path, "/cluster/shared-state/"):
		key := strings.TrimPrefix(r.URL.Path, "/cluster/shared-state/")
		b.mu.Lock()
		v, ok := b.shared[i][key]
		b.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			j(map[string]any{"error": "key not found"})
			return
		}
		j(map[string]any{"value": v})
	case r.URL.Path == "/cluster/local-state":
		j(map[string]any{"requestCount": b.counter.Add(1)})
	case r.URL.Path == "/cluster/cpu-intensive":
		var body struct{ N int }
		_ = json.NewDecoder(r.Body).Decode(&body)
		b.cpu.Lock()
		time.Sleep(320 * time.Millisecond) // one at a time: no parallelism
		b.cpu.Unlock()
		j(map[string]any{"calculation": map[string]any{"input": body.N, "result": fibonacci(body.N)}})
	case r.URL.Path == "/cluster/crash":
		j(map[string]any{"workerId": i + 1, "pid": 1001 + i})
	case r.URL.Path == "/cluster/workers":
		j(map[string]any{"workers": []map[string]any{
			{"id": 1, "pid": 1001, "state": "online"}, {"id": 2, "pid": 1002, "state": "online"}}})
	default:
		http.NotFound(w, r)
	}
}

func TestVerifyBrokenHerdFailsEveryCheck(t *testing.T) {
	s := httptest.NewServer(&brokenHerd{})
	defer s.Close()
	rep, err := Run(context.Background(), Options{URL: s.URL, CrashTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text(rep))
	wantChecks(t, rep, []Check{
		{Name: CheckAnswers, Status: Pass, Evidence: "from worker"},
		{Name: CheckDistribution, Status: Pass, Evidence: "2 workers answered 60 requests: 1→30, 2→30"},
		{Name: CheckSharedState, Status: Fail, Evidence: `→ 404 {"error":"key not found"}`},
		{Name: CheckLocalState, Status: Fail, Evidence: "one shared counter, not one per worker"},
		{Name: CheckParallel, Status: Fail, Evidence: "not parallel"},
		{Name: CheckCrash, Status: Fail, Evidence: "showed no ready replacement for worker"},
		{Name: CheckShutdown, Status: Skip, Evidence: "only for a cluster herd verify starts itself"},
	})
	if rep.OK() {
		t.Error("OK() with failed checks")
	}
}

func TestVerifyPlainServer(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("Hello World!"))
	}))
	defer s.Close()
	rep, err := Run(context.Background(), Options{URL: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	wantChecks(t, rep, []Check{
		{Name: CheckAnswers, Status: Pass, Evidence: `GET / → 200 "Hello World!" from a process without X-Worker-Id`},
		{Name: CheckDistribution, Status: Fail, Evidence: `60 of 60 requests failed (first: GET /pid → 404 "404 page not found\n")`},
		{Name: CheckSharedState, Status: Fail, Evidence: "POST /cluster/shared-state → 404"},
		{Name: CheckLocalState, Status: Fail, Evidence: "GET /cluster/local-state → 404"},
		{Name: CheckParallel, Status: Fail, Evidence: `POST /cluster/cpu-intensive {"n":30} → 404`},
		{Name: CheckCrash, Status: Skip, Evidence: "crash endpoint disabled"},
		{Name: CheckShutdown, Status: Skip, Evidence: "only for a cluster herd verify starts itself"},
	})
}

// A server that answers "Hello World!" to everything, 200 and no header:
// every herd-specific check fails on what it answered, and none panics.
func TestVerifyHelloEverywhere(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("Hello World!"))
	}))
	defer s.Close()
	rep, err := Run(context.Background(), Options{URL: s.URL, CrashTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wantChecks(t, rep, []Check{
		{Name: CheckAnswers, Status: Pass, Evidence: `GET / → 200 "Hello World!" from a process without X-Worker-Id`},
		{Name: CheckDistribution, Status: Fail, Evidence: "none of 60 responses carried X-Worker-Id: not a herd server"},
		{Name: CheckSharedState, Status: Fail, Evidence: "answered 200 without X-Worker-Pid: cannot tell which worker stored it"},
		{Name: CheckLocalState, Status: Fail, Evidence: `GET /cluster/local-state: body is not the JSON expected`},
		{Name: CheckParallel, Status: Fail, Evidence: `POST /cluster/cpu-intensive {"n":30}: body is not the JSON expected`},
		{Name: CheckCrash, Status: Fail, Evidence: `POST /cluster/crash → 200 "Hello World!" without naming the worker`},
		{Name: CheckShutdown, Status: Skip, Evidence: "only for a cluster herd verify starts itself"},
	})
}
