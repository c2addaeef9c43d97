package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
)

// The test binary doubles as the worker of BenchmarkStoreInWorker: the
// benchmark's primary re-executes it, and TestMain turns it into a worker.
func TestMain(m *testing.M) {
	if cluster.IsWorker() {
		os.Exit(benchWorker())
	}
	os.Exit(m.Run())
}

// envRedis passes the benchmark's Redis URL to its worker.
const envRedis = "STORE_BENCH_REDIS"

// opResult is what the worker measured: every operation's latency, in
// nanoseconds, sorted, and the wall time of them all.
type opResult struct {
	ElapsedNS int64   `json:"elapsedNs"`
	LatNS     []int64 `json:"latNs"`
	Err       string  `json:"err,omitempty"`
}

// benchWorker serves GET /run?backend=embedded|redis&op=get|set&callers=C&n=N:
// it runs N operations from C goroutines on the embedded store (reached over
// its IPC socket to the primary, as herd's workers reach it) or on Redis,
// and answers with the latencies.
func benchWorker() int {
	err := cluster.Run(context.Background(), cluster.Options{}, func(ctx context.Context, w *cluster.Worker) error {
		backends := map[string]store.Store{"embedded": store.NewRemote(w)}
		if u := os.Getenv(envRedis); u != "" {
			rs, err := store.NewRedis(u, store.RedisOptions{PoolSize: 64})
			if err != nil {
				return err
			}
			defer rs.Close()
			backends["redis"] = rs
		}
		value := make([]byte, benchValueSize)
		return w.Serve(ctx, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			s := backends[q.Get("backend")]
			callers, _ := strconv.Atoi(q.Get("callers"))
			n, _ := strconv.Atoi(q.Get("n"))
			var res opResult
			switch {
			case s == nil || callers < 1 || n < 1:
				res.Err = "bad request " + r.URL.RawQuery
			case q.Get("preload") != "":
				if err := preload(r.Context(), s, value); err != nil {
					res.Err = err.Error()
				}
			default:
				start := time.Now()
				lat, err := timeOps(r.Context(), s, q.Get("op"), callers, n, value)
				res.ElapsedNS = time.Since(start).Nanoseconds()
				if err != nil {
					res.Err = err.Error()
				}
				for _, d := range lat {
					res.LatNS = append(res.LatNS, d.Nanoseconds())
				}
			}
			_ = json.NewEncoder(rw).Encode(res)
		}))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return cluster.ExitStartFailed
	}
	return 0
}

// BenchmarkStoreInWorker measures get and set round trips from inside a
// real worker process: the embedded store hosted by a real primary (this
// process) in memory or in bbolt and reached over the worker's IPC socket,
// against Redis over loopback, at 1 and 32 concurrent callers.
// worker-ns/op is the wall time per operation of all callers together, as
// the worker measured it; ns/op adds the one HTTP request per run that
// asks the worker, and is the same within a few per cent. p50 and p99 are
// per operation.
//
//	go test -run '^$' -bench BenchmarkStoreInWorker ./store/
func BenchmarkStoreInWorker(b *testing.B) {
	redisURL, _ := redistest.Start(b)
	mem := store.NewMemory()
	bolt, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Close(); bolt.Close() })
	serveMem, serveBolt := store.Serve(mem), store.Serve(bolt)
	var useBolt atomic.Bool // which store the primary serves the worker's calls from
	base := startBenchPrimary(b, func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		if useBolt.Load() {
			return serveBolt(ctx, method, body)
		}
		return serveMem(ctx, method, body)
	}, redisURL)

	for _, be := range []struct{ name, backend string }{
		{"embedded(memory)", "embedded"}, {"embedded(bbolt)", "embedded"}, {"redis", "redis"},
	} {
		useBolt.Store(be.name == "embedded(bbolt)")
		workerRun(b, base, "backend="+be.backend+"&preload=1&callers=1&n=1")
		for _, op := range []string{"get", "set"} {
			for _, callers := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/%s/callers=%d", be.name, op, callers), func(b *testing.B) {
					res := workerRun(b, base, fmt.Sprintf("backend=%s&op=%s&callers=%d&n=%d", be.backend, op, callers, b.N))
					lat := make([]time.Duration, len(res.LatNS))
					for i, ns := range res.LatNS {
						lat[i] = time.Duration(ns)
					}
					reportLatency(b, lat)
					b.ReportMetric(float64(res.ElapsedNS)/float64(b.N), "worker-ns/op")
				})
			}
		}
	}
}

// workerRun asks the worker to run operations and returns what it measured.
func workerRun(b *testing.B, base, query string) opResult {
	b.Helper()
	resp, err := http.Get(base + "/run?" + query)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var res opResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		b.Fatalf("worker's answer to %s: %v", query, err)
	}
	if res.Err != "" {
		b.Fatalf("worker, %s: %s", query, res.Err)
	}
	return res
}

// startBenchPrimary runs a primary in this process with one worker (this
// test binary, re-executed) until the benchmark ends, and returns the
// worker's base URL.
func startBenchPrimary(b *testing.B, calls cluster.CallHandler, redisURL string) string {
	b.Helper()
	logs := &syncBuffer{}
	c, err := cluster.New(cluster.Options{
		Addr: "127.0.0.1:0", Workers: 1, Calls: calls,
		Args:   []string{"-test.run=^$", "-test.bench=^$"},
		Env:    []string{envRedis + "=" + redisURL},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errC := make(chan error, 1)
	go func() { errC <- c.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-errC: //nolint:errcheck // only waiting for the primary to stop
		case <-time.After(30 * time.Second):
			b.Error("the benchmark's primary did not stop within 30 s")
		}
	})
	select {
	case <-c.Ready():
	case <-c.Done():
		b.Fatalf("the benchmark's primary stopped:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		b.Fatalf("the worker was not ready within 30 s:\n%s", logs.String())
	}
	return "http://" + c.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
