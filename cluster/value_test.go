package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
)

// runValueWorker is a worker that runs through cluster.New, not Run: it
// answers /slow?ms=N after N milliseconds, and every answer names its pid.
func runValueWorker() int {
	c, err := cluster.New(cluster.Options{}, func(ctx context.Context, w *cluster.Worker) error {
		mux := http.NewServeMux()
		mux.Handle("/", slowHandler(w.Logger()))
		mux.HandleFunc("/data", func(rw http.ResponseWriter, r *http.Request) {
			// Bytes JSON could not carry as they are, to the primary's
			// DataCalls and back.
			out, err := w.CallData(r.Context(), "test."+r.URL.Query().Get("m"), map[string]int{"id": w.ID}, []byte{0, 0xff, '"', 'x'}, nil)
			var rerr *cluster.RemoteError
			switch {
			case errors.As(err, &rerr):
				fmt.Fprintf(rw, "refused: %s", rerr.Msg)
			case err != nil:
				http.Error(rw, err.Error(), 500)
			default:
				fmt.Fprintf(rw, "%x", out) //nolint:gosec // G705: hex digits, to a test client
			}
		})
		return w.Serve(ctx, mux)
	})
	if err == nil {
		err = c.Run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func slowHandler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		if ms > 0 {
			log.Info("request started", "ms", ms)
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		rw.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
		fmt.Fprintf(rw, "slept %d ms", ms)
	})
}

// startValue runs a cluster made by New, its workers being this test
// binary in "value" mode, and waits until it is Ready.
func startValue(t *testing.T, opts cluster.Options) (*cluster.Cluster, <-chan error, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	opts.Args = []string{"-test.run=^$"}
	opts.Env = append(opts.Env, "CLUSTER_TEST_WORKER=value")
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	c, err := cluster.New(opts, func(ctx context.Context, w *cluster.Worker) error {
		return errors.New("the primary's test never runs a worker in this process")
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr() != nil {
		t.Errorf("Addr before Run = %v, want nil", c.Addr())
	}
	errC := make(chan error, 1)
	go func() { errC <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("cleanup: Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("primary log:\n%s", logs.buf.String())
		}
	})
	select {
	case <-c.Ready():
	case err := <-errC:
		t.Fatalf("Run returned %v before the cluster was ready", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Ready not closed within 30s")
	}
	return c, errC, logs
}

func get(t *testing.T, url string) (string, int, error) {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec // G107: a loopback URL the test built
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	pid, _ := strconv.Atoi(resp.Header.Get("X-Pid"))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b), pid, err
}

func TestNewReadyAddrAndGracefulShutdown(t *testing.T) {
	checkLeaks(t)
	c, errC, logs := startValue(t, cluster.Options{Workers: 2})
	if n := len(logs.records("all workers ready")); n != 1 {
		t.Errorf("Ready closed with %d \"all workers ready\" lines logged, want 1", n)
	}
	if c.Addr() == nil {
		t.Fatal("Addr is nil after Ready")
	}
	base := "http://" + c.Addr().String()
	if _, _, err := get(t, base+"/?ms=0"); err != nil {
		t.Fatalf("serving at Addr after Ready: %v", err)
	}

	// A slow request in flight when Shutdown is called completes.
	type result struct {
		body string
		pid  int
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		b, pid, err := get(t, base+"/slow?ms=1500")
		slow <- result{b, pid, err}
	}()
	waitFor(t, 10*time.Second, "the slow request to be in flight", func() bool {
		for _, r := range logs.records("request started") {
			if r["ms"] == float64(1500) {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs { // concurrent calls
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Shutdown(ctx) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Shutdown call %d: %v, want nil", i, err)
		}
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Shutdown returned nil")
	}
	if err := <-errC; err != nil {
		t.Errorf("Run returned %v after Shutdown, want nil", err)
	}
	r := <-slow
	if r.err != nil || r.body != "slept 1500 ms" {
		t.Errorf("the request in flight at Shutdown: %q, %v; want it completed", r.body, r.err)
	}
	if err := c.Shutdown(ctx); err != nil { // idempotent
		t.Errorf("Shutdown after the end: %v", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, cluster.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
}

// Shutdown whose ctx ends first returns ctx.Err(); the cluster still stops
// and leaves no worker behind.
func TestShutdownExpiredContextStillStops(t *testing.T) {
	checkLeaks(t)
	c, errC, logs := startValue(t, cluster.Options{Workers: 2, ShutdownTimeout: 3 * time.Second})
	base := "http://" + c.Addr().String()
	var pids []int
	for range 20 { // learn the workers' pids from their answers
		_, pid, err := get(t, base+"/?ms=0")
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	slow := make(chan error, 1)
	go func() { _, _, err := get(t, base+"/slow?ms=1000"); slow <- err }()
	waitFor(t, 10*time.Second, "the slow request to be in flight", func() bool {
		return len(logs.records("request started")) > 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended ctx: %v, want context.Canceled", err)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("Done not closed within 20s of Shutdown")
	}
	if err := <-errC; err != nil {
		t.Errorf("Run: %v, want nil", err)
	}
	if err := <-slow; err != nil {
		t.Errorf("the request in flight: %v, want it completed", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker pid %d still exists after Done (kill 0: %v)", pid, err)
		}
	}
}

func TestShutdownBeforeRun(t *testing.T) {
	c, err := cluster.New(cluster.Options{Addr: "127.0.0.1:0"}, func(ctx context.Context, w *cluster.Worker) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown before Run: %v", err)
		}
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed by Shutdown before Run")
	}
	if err := c.Run(context.Background()); !errors.Is(err, cluster.ErrShutdown) {
		t.Errorf("Run after Shutdown: %v, want ErrShutdown", err)
	}
	if c.Addr() != nil {
		t.Errorf("Addr = %v, want nil: nothing listened", c.Addr())
	}
}

// A second cluster on a port the first holds fails with an error a user
// outside herd can match.
func TestErrInUseFromSecondCluster(t *testing.T) {
	checkLeaks(t)
	first, _, _ := startValue(t, cluster.Options{Workers: 1})
	second, err := cluster.New(cluster.Options{Addr: first.Addr().String(), Workers: 1,
		Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Run(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the second cluster's Run did not return within 20s")
	}
	if !errors.Is(err, cluster.ErrInUse) {
		t.Fatalf("second cluster on %s: %v, want an error wrapping cluster.ErrInUse", first.Addr(), err)
	}
	select {
	case <-second.Done():
	default:
		t.Error("Done not closed after Run returned")
	}
	select {
	case <-second.Ready():
		t.Error("Ready closed for a cluster that never listened")
	default:
	}
}

// With Options.Single the one in-process worker's readiness is the
// cluster's, and Shutdown drains it.
func TestNewSingle(t *testing.T) {
	checkLeaks(t)
	c, err := cluster.New(cluster.Options{Single: true, Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)},
		func(ctx context.Context, w *cluster.Worker) error { return w.Serve(ctx, slowHandler(w.Logger())) })
	if err != nil {
		t.Fatal(err)
	}
	errC := make(chan error, 1)
	go func() { errC <- c.Run(context.Background()) }()
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready not closed within 10s")
	}
	if _, _, err := get(t, "http://"+c.Addr().String()+"/?ms=0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errC; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// Worker.CallData carries bytes to Options.DataCalls and back, between
// real processes; a refusal is a *cluster.RemoteError.
func TestCallDataReachesThePrimary(t *testing.T) {
	checkLeaks(t)
	c, _, _ := startValue(t, cluster.Options{Workers: 1,
		DataCalls: func(ctx context.Context, method string, body json.RawMessage, data []byte) (any, []byte, error) {
			if method != "test.rev" {
				return nil, nil, fmt.Errorf("no %s here", method)
			}
			out := make([]byte, len(data))
			for i, b := range data {
				out[len(data)-1-i] = b
			}
			return nil, append(out, body...), nil
		}})
	base := "http://" + c.Addr().String()
	got, _, err := get(t, base+"/data?m=rev")
	if want := fmt.Sprintf("%x", append([]byte{'x', '"', 0xff, 0}, `{"id":1}`...)); err != nil || got != want {
		t.Errorf("CallData through the primary: %q, %v; want %q", got, err, want)
	}
	got, _, err = get(t, base+"/data?m=other")
	if err != nil || got != "refused: no test.other here" {
		t.Errorf("a refused CallData: %q, %v; want the handler's error as a RemoteError", got, err)
	}
}
