package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
)

// BenchmarkStore measures Get and Set round trips at 1 and 32 concurrent
// callers on each backend, reporting the 50th and 99th percentile latency.
// ns/op is wall time per operation, so 1e9/(ns/op) is the throughput of all
// callers together. "remote(memory)" is the worker's view of the embedded
// store with the IPC socket replaced by a JSON round trip; "ipc(...)" is the
// same over a real socketpair with herd's frame codec, as in a worker.
//
//	go test -run '^$' -bench BenchmarkStore ./store/
func BenchmarkStore(b *testing.B) {
	redisURL, _ := redistest.Start(b)
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"memory", func(b *testing.B) store.Store { return store.NewMemory() }},
		{"bbolt", func(b *testing.B) store.Store {
			s, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"), store.BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"remote(memory)", func(b *testing.B) store.Store {
			return store.NewRemote(&jsonCaller{serve: store.Serve(store.NewMemory())})
		}},
		{"ipc(memory)", func(b *testing.B) store.Store { return overIPC(b, store.NewMemory()) }},
		{"ipc(bbolt)", func(b *testing.B) store.Store {
			s, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"), store.BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return overIPC(b, s)
		}},
		{"redis", func(b *testing.B) store.Store {
			s, err := store.NewRedis(redisURL, store.RedisOptions{PoolSize: 64})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, be := range backends {
		for _, op := range []string{"get", "set"} {
			for _, callers := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/%s/callers=%d", be.name, op, callers), func(b *testing.B) {
					s := be.open(b)
					defer s.Close()
					benchOp(b, s, op, callers)
				})
			}
		}
	}
}

const (
	benchKeys      = 1000
	benchValueSize = 128
)

func benchOp(b *testing.B, s store.Store, op string, callers int) {
	value := make([]byte, benchValueSize)
	if err := preload(context.Background(), s, value); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	lat, err := timeOps(context.Background(), s, op, callers, b.N, value)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	reportLatency(b, lat)
}

// preload writes the benchmark's keys, so that every get finds its key.
func preload(ctx context.Context, s store.Store, value []byte) error {
	for i := range benchKeys {
		if err := s.Set(ctx, benchKey(i), value, 0); err != nil {
			return err
		}
	}
	return nil
}

// timeOps runs n gets or sets of the benchmark's keys on s from callers
// goroutines at once and returns every operation's latency, sorted.
func timeOps(ctx context.Context, s store.Store, op string, callers, n int, value []byte) ([]time.Duration, error) {
	do := func(i int) error {
		if op == "get" {
			_, err := s.Get(ctx, benchKey(i))
			return err
		}
		return s.Set(ctx, benchKey(i), value, 0)
	}
	lats := make([][]time.Duration, callers)
	errs := make([]error, callers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(rand.Uint64(), uint64(c))) //nolint:gosec // G115: a non-negative goroutine index as a seed
			lat := make([]time.Duration, 0, n/callers+1)
			for next.Add(1) <= int64(n) {
				start := time.Now()
				if err := do(r.IntN(benchKeys)); err != nil {
					errs[c] = err
					return
				}
				lat = append(lat, time.Since(start))
			}
			lats[c] = lat
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	return all, nil
}

// reportLatency reports the 50th and 99th percentiles of sorted latencies.
func reportLatency(b *testing.B, sorted []time.Duration) {
	if len(sorted) == 0 {
		return
	}
	b.ReportMetric(float64(sorted[len(sorted)*50/100].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(sorted[len(sorted)*99/100].Nanoseconds())/1e3, "p99-µs")
}

func benchKey(i int) string { return fmt.Sprintf("cluster:bench:%04d", i) }
