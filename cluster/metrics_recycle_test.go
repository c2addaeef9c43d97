package cluster

import (
	"log/slog"
	"testing"
)

// recycleChurn recycles n workers, round robin over the slots, through
// Recycle.MaxRequests' path: a heartbeat over the limit starts a
// replacement, the replacement gets ready, the old process is drained and
// exits. Workers must be ready, with MaxRequests 1.
func recycleChurn(tb testing.TB, h *harness, workers, n int) {
	tb.Helper()
	for i := range n {
		id := i%workers + 1
		pr := h.p.live(id)
		if pr == nil {
			tb.Fatalf("recycle %d: no live process for worker %d", i, id)
		}
		old := h.procs[pr.pid]
		h.beatFigures(old, 3) // over MaxRequests 1 plus its jitter
		h.p.checkTimeouts()
		h.readyAll() // the replacement is ready: the old one drains
		if !old.drained {
			tb.Fatalf("recycle %d: worker %d (pid %d) over its request limit was not replaced and drained", i, id, old.pid)
		}
		h.exit(old, 0)
		delete(h.procs, old.pid)
	}
}

func recycledCount(m Metrics) uint64 {
	var n uint64
	for _, w := range m.Workers {
		n += w.Restarts[ReasonRecycledRequests]
	}
	return n
}

// The recycling path (replacement first, then drain) leaves no record per
// process in the primary either: its heap does not grow with recycles.
func TestMetricsMemoryFlatUnderRecycles(t *testing.T) {
	const workers = 64
	h := newHarnessWith(t, Options{Workers: workers, Recycle: Recycle{MaxRequests: 1}, MemoryLogInterval: -1})
	h.p.log = slog.New(slog.DiscardHandler) // the harness keeps its log in memory
	h.readyAll()
	recycleChurn(t, h, workers, 1000)
	before := heapAfterGC()
	recycleChurn(t, h, workers, 10000)
	after := heapAfterGC()
	if after > before+before/2+(1<<20) {
		t.Errorf("heap grew from %d to %d bytes over 10,000 more recycles", before, after)
	}
	m := h.p.metrics()
	if got := recycledCount(m); got != 11000 {
		t.Errorf("%d recycles counted, want 11000", got)
	}
	if len(m.Workers) != workers || len(h.p.procs) != workers {
		t.Errorf("%d slots in the metrics and %d processes held after the recycles, want %d", len(m.Workers), len(h.p.procs), workers)
	}
}

// BenchmarkMetricsAfterRecycles is the primary's share of a scrape (the
// snapshot taken in its loop) with 64 workers after 10,000 recycles through
// the replacement-first path, the scrape case of `make bench` without the
// processes. It reports the primary's heap after GC once a tenth of the
// recycles were done (warm) and after all of them.
func BenchmarkMetricsAfterRecycles(b *testing.B) {
	const workers, recycles = 64, 10000
	h := newHarnessWith(&testing.T{}, Options{Workers: workers, Recycle: Recycle{MaxRequests: 1}, MemoryLogInterval: -1})
	h.p.log = slog.New(slog.DiscardHandler)
	h.readyAll()
	recycleChurn(b, h, workers, recycles/10)
	warm := heapAfterGC()
	recycleChurn(b, h, workers, recycles-recycles/10)
	end := heapAfterGC()
	if got := recycledCount(h.p.metrics()); got != recycles {
		b.Fatalf("%d recycles counted, want %d", got, recycles)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.p.metrics()
	}
	b.ReportMetric(float64(warm)/(1<<20), "heap-MB-warm")
	b.ReportMetric(float64(end)/(1<<20), "heap-MB-after")
}
