package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
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
	ctx := context.Background()
	value := make([]byte, benchValueSize)
	for i := range benchKeys {
		if err := s.Set(ctx, benchKey(i), value, 0); err != nil {
			b.Fatal(err)
		}
	}
	do := func(i int) error {
		if op == "get" {
			_, err := s.Get(ctx, benchKey(i))
			return err
		}
		return s.Set(ctx, benchKey(i), value, 0)
	}
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	record := func(lat []time.Duration) {
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	}
	b.ReportAllocs()
	b.ResetTimer()
	if callers == 1 {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := do(i % benchKeys); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		record(lat)
	} else {
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((callers + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			lat := make([]time.Duration, 0, 1024)
			r := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				start := time.Now()
				if err := do(r.IntN(benchKeys)); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(start))
			}
			record(lat)
		})
	}
	b.StopTimer()
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*50/100].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
}

func benchKey(i int) string { return fmt.Sprintf("cluster:bench:%04d", i) }
