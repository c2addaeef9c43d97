package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/procstat"
	"github.com/herd-go/herd/loadtest"
)

// The test binary doubles as the workers: the primary (a test) re-executes
// it with HERD_WORKER_ID set, and TestMain turns it into a worker whose
// behaviour CLUSTER_TEST_WORKER picks.
func TestMain(m *testing.M) {
	if cluster.IsWorker() {
		os.Exit(runTestWorker())
	}
	os.Exit(m.Run())
}

func runTestWorker() int {
	mode := os.Getenv("CLUSTER_TEST_WORKER")
	if mode == "value" {
		return runValueWorker() // value_test.go
	}
	err := cluster.Run(context.Background(), cluster.Options{}, func(ctx context.Context, w *cluster.Worker) error {
		switch mode {
		case "failstart", "crashstart":
			return errors.New("cannot start: configuration is broken")
		case "durationlog":
			w.Logger().Info("test figures", "timeout", 2*time.Second, "requests", 123456789)
			return w.Serve(ctx, http.NotFoundHandler())
		case "heaplog":
			go logHeld(ctx, w)
			fallthrough
		default:
			return w.Serve(ctx, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				var reply map[string]string
				if r.URL.Path == "/alloc" {
					burst(64 << 20)
				}
				if r.URL.Path == "/call" {
					if err := w.Call(r.Context(), "test.echo", map[string]string{"from": strconv.Itoa(w.ID)}, &reply); err != nil {
						http.Error(rw, err.Error(), 500)
						return
					}
				}
				rw.Header().Set("X-Worker-Id", strconv.Itoa(w.ID))
				fmt.Fprintf(rw, "worker %d pid %d %v", w.ID, os.Getpid(), reply)
			}))
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, cluster.ErrStartFailed) && mode != "crashstart" {
			return cluster.ExitStartFailed
		}
		return 1
	}
	return 0
}

// logHeld logs, every 100 ms, how much heap memory the worker holds from
// the OS, without serving a request (which would keep it from being idle).
func logHeld(ctx context.Context, w *cluster.Worker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Logger().Info("heap held", "bytes", ms.HeapSys-ms.HeapReleased)
	}
}

// sink keeps burst's allocation from being optimised away.
var sink []byte

// burst grows the heap by n bytes, touching every page, and lets it go, as
// a request that builds a large response does.
func burst(n int) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	sink = b
	sink = nil
}

// logBuf collects JSON log records written concurrently.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for {
		var r map[string]any
		if dec.Decode(&r) != nil {
			return out
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
}

// startPrimary runs a primary in this process until the test ends.
func startPrimary(t *testing.T, opts cluster.Options, workerMode string) (*logBuf, <-chan error) {
	t.Helper()
	logs, _, errC := startCluster(t, opts, workerMode)
	return logs, errC
}

// readyAddr waits until every worker of c is ready and returns the
// address c serves on: what a user of the library learns from the cluster
// value, not from its log.
func readyAddr(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	select {
	case <-c.Ready():
	case <-c.Done():
		t.Fatal("the cluster stopped before its workers were ready")
	case <-time.After(30 * time.Second):
		t.Fatal("timed out after 30s waiting for every worker to be ready")
	}
	return c.Addr().String()
}

// startCluster runs a primary in this process, as a cluster value, until
// the test ends.
func startCluster(t *testing.T, opts cluster.Options, workerMode string) (*logBuf, *cluster.Cluster, <-chan error) {
	t.Helper()
	logs := &logBuf{}
	opts.Addr = "127.0.0.1:0"
	opts.Args = []string{"-test.run=^$"}
	opts.Env = append(opts.Env, "CLUSTER_TEST_WORKER="+workerMode)
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	opts.ShutdownTimeout = 5 * time.Second
	c, err := cluster.New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errC := make(chan error, 1)
	done := make(chan struct{})
	go func() { errC <- c.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("primary did not stop within 20s of its context ending")
		}
		if t.Failed() {
			t.Logf("primary log:\n%s", logs.buf.String())
		}
	})
	return logs, c, errC
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWorkerThatFailsAtStartIsRestartedWithBackoff(t *testing.T) {
	checkLeaks(t)
	min := 50 * time.Millisecond
	logs, _ := startPrimary(t, cluster.Options{Workers: 1, Backoff: cluster.Backoff{Min: min, Max: 400 * time.Millisecond}}, "crashstart")
	waitFor(t, 30*time.Second, "six starts", func() bool { return len(logs.records("worker started")) >= 6 })

	starts := logs.records("worker started")
	var times []time.Time
	for _, r := range starts {
		ts, err := time.Parse(time.RFC3339Nano, r["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, ts)
	}
	// Start k+1 comes at least the k-th backoff delay after start k (a
	// slower machine only makes the gaps longer).
	want := []time.Duration{min, 2 * min, 4 * min, 8 * min, 8 * min}
	for i := 0; i+1 < len(times) && i < len(want); i++ {
		if gap := times[i+1].Sub(times[i]); gap < want[i] {
			t.Errorf("gap between start %d and %d is %v, want at least the backoff %v", i+1, i+2, gap, want[i])
		}
	}
	died := logs.records("worker died")
	if len(died) == 0 || died[0]["code"] != float64(1) {
		t.Errorf("the log does not report the exit code 1 of the crash: %v", died)
	}
	if n := len(logs.records("worker died soon after start; restarting after a short delay")) +
		len(logs.records("worker keeps dying soon after start; backing off")); n < 5 {
		t.Errorf("the log announced %d backoffs, want one per early death", n)
	}

	// Meanwhile the primary (this process) stays idle: a start every 400 ms
	// costs it a fork and a few log lines, not a busy core.
	cpu0, t0 := processCPU(t), time.Now()
	n0 := len(logs.records("worker started"))
	waitFor(t, 30*time.Second, "three more starts at the capped delay", func() bool { return len(logs.records("worker started")) >= n0+3 })
	used, wall := processCPU(t)-cpu0, time.Since(t0)
	t.Logf("the primary used %v of CPU in %v of backing off", used, wall)
	if used > wall/4 {
		t.Errorf("the primary used %v of CPU in %v of backing off, want well under a quarter of a core", used, wall)
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestWorkersServeAndReachThePrimary(t *testing.T) {
	checkLeaks(t)
	opts := cluster.Options{Workers: 2, Calls: func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		if method != "test.echo" {
			return nil, fmt.Errorf("unknown %s", method)
		}
		var req map[string]string
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		return map[string]string{"primary": "saw worker " + req["from"]}, nil
	}}
	_, c, _ := startCluster(t, opts, "serve")
	addr := readyAddr(t, c)
	resp, err := http.Get("http://" + addr + "/call")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("primary:saw worker")) {
		t.Fatalf("GET /call: %d %s, want the primary's reply relayed", resp.StatusCode, body)
	}
}

// A burst of new keep-alive connections must not all land on the worker
// that happened to wake first (the skew users of shared-socket servers
// complain about): herd loadtest's engine opens 100 connections at once and
// keeps them busy, as wrk does. Without the fix about one run in three
// gave one worker 100%; each of three runs must give each worker 10% or more.
func TestBurstOfConnectionsIsSpreadOverWorkers(t *testing.T) {
	_, c, _ := startCluster(t, cluster.Options{Workers: 2}, "serve")
	addr := readyAddr(t, c)
	for run := range 3 {
		res, err := loadtest.Run(context.Background(), loadtest.Config{URL: "http://" + addr + "/", Concurrency: 100, Duration: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Distribution
		t.Logf("run %d: %s (fairness %.3f)", run+1, d.Verdict, d.Fairness)
		share := map[string]float64{}
		for _, w := range d.Workers {
			share[w.ID] = w.Share
		}
		for _, id := range []string{"1", "2"} {
			if share[id] < 0.10 {
				t.Errorf("run %d: worker %s served %.0f%% of the requests over 100 keep-alive connections (%s); want each worker a fair part", run+1, id, 100*share[id], d.Verdict)
			}
		}
	}
}

// After a burst a worker gives its memory back once idle, so the RSS that
// herd status shows and --max-memory compares is what it holds, not its
// peak. Without that the Go runtime keeps the 64 MiB the burst grew for
// reuse, and RSS stays above 64 MiB. (The race detector's shadow memory is
// not given back, so under -race only the runtime's own figure is judged.)
func TestIdleWorkerReturnsTheMemoryOfABurst(t *testing.T) {
	l, c, _ := startCluster(t, cluster.Options{Workers: 1}, "heaplog")
	base := "http://" + readyAddr(t, c)
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	var id, pid int
	if body := get("/alloc"); !scan(body, "worker %d pid %d", &id, &pid) {
		t.Fatalf("GET /alloc answered %q", body)
	}
	rss := func() int64 {
		n, err := procstat.VmRSS(pid)
		if err != nil {
			t.Fatalf("reading the worker's RSS: %v", err)
		}
		return n
	}
	if peak := rss(); peak < 64<<20 {
		t.Fatalf("RSS after the burst is %d MiB, want at least the 64 MiB it allocated", peak>>20)
	}
	held := func() float64 {
		recs := l.records("heap held")
		if len(recs) == 0 {
			return -1
		}
		return recs[len(recs)-1]["bytes"].(float64)
	}
	waitFor(t, 5*time.Second, "the worker to report holding the burst", func() bool {
		for _, r := range l.records("heap held") {
			if r["bytes"].(float64) >= 64<<20 {
				return true
			}
		}
		return false
	})
	waitFor(t, 20*time.Second, "the worker to give its heap back to the OS (under 16 MiB held)", func() bool {
		h := held()
		return h >= 0 && h < 16<<20
	})
	if !raceEnabled {
		waitFor(t, 10*time.Second, "the worker's RSS to fall under 32 MiB", func() bool { return rss() < 32<<20 })
	}
}

func scan(s, format string, into ...any) bool {
	_, err := fmt.Sscanf(s, format, into...)
	return err == nil
}

// A program whose workers cannot start at all (their Run returns before
// ready, and they exit with ExitStartFailed) stops its fresh primary,
// which returns ErrStartFailed, rather than restarting them for ever.
func TestWorkersThatCannotStartStopAFreshPrimary(t *testing.T) {
	checkLeaks(t)
	logs, errC := startPrimary(t, cluster.Options{Workers: 2}, "failstart")
	var err error
	select {
	case err = <-errC:
	case <-time.After(60 * time.Second):
		t.Fatal("the primary did not stop within 60s although every worker failed at start")
	}
	if !errors.Is(err, cluster.ErrStartFailed) {
		t.Fatalf("Run returned %v, want ErrStartFailed", err)
	}
	died := logs.records("worker died")
	if len(died) < 2 || died[0]["code"] != float64(cluster.ExitStartFailed) {
		t.Errorf("want both workers' deaths logged with code %d: %v", cluster.ExitStartFailed, died)
	}
	if n := len(logs.records("workers failed at start; the primary is stopping")); n != 1 {
		t.Errorf("the reason was logged %d times, want once", n)
	}
	if out := logs.records("worker output"); len(out) == 0 || !strings.Contains(fmt.Sprint(out[0]["line"]), "configuration is broken") {
		t.Errorf("the workers' own reason is not in the log: %v", out)
	}
}

// Durations and large numbers a worker logs reach the primary's log as
// written: "2s", not 2e+09; 123456789, not 1.23456789e+08.
func TestRelayedWorkerLogsKeepDurationsAndNumbers(t *testing.T) {
	checkLeaks(t)
	logs, _ := startPrimary(t, cluster.Options{Workers: 1}, "durationlog")
	waitFor(t, 30*time.Second, "the worker's log line", func() bool { return len(logs.records("test figures")) > 0 })
	logs.mu.Lock()
	raw := logs.buf.String()
	logs.mu.Unlock()
	var line string
	for _, l := range strings.Split(raw, "\n") {
		if strings.Contains(l, `"test figures"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"timeout":"2s"`) || !strings.Contains(line, `"requests":123456789`) {
		t.Errorf("relayed line %s\nwant \"timeout\":\"2s\" and \"requests\":123456789", line)
	}
}
