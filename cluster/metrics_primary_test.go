package cluster

import (
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// beatFigures delivers a heartbeat with n requests on route "GET /", all 2xx.
func (h *harness) beatFigures(f *fakeProc, n uint64) {
	counts := make([]uint64, len(LatencyBuckets)+1)
	counts[3] = n
	hb := Heartbeat{Requests: n, RSS: 10 << 20, Figures: Figures{
		Routes:  []RouteCount{{Pattern: "GET /", Classes: [5]uint64{0, n}}},
		Latency: Histogram{Counts: counts, Sum: float64(n) / 1000},
	}}
	h.p.handle(evBeat{pid: f.pid, hb: hb})
}

func slotMetricsOf(t *testing.T, m Metrics, id int) WorkerMetrics {
	t.Helper()
	for _, w := range m.Workers {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("no worker %d in the metrics", id)
	return WorkerMetrics{}
}

func TestSlotCountersNeverGoBackwards(t *testing.T) {
	h := newHarnessWith(t, Options{Workers: 2, Recycle: Recycle{MaxRequests: 1000}})
	h.p.rnd = func(uint64) uint64 { return 0 }
	h.readyAll()
	var last uint64
	check := func(what string, wantReqs uint64) {
		t.Helper()
		w := slotMetricsOf(t, h.p.metrics(), 1)
		if w.Requests < last || w.Requests != wantReqs || w.Latency.Count() != wantReqs || w.Figures.Requests() != wantReqs {
			t.Fatalf("%s: slot 1 counts %d requests (histogram %d, routes %d), want %d (before: %d)",
				what, w.Requests, w.Latency.Count(), w.Figures.Requests(), wantReqs, last)
		}
		last = w.Requests
	}
	f := h.live(1)
	h.beatFigures(f, 300)
	check("first heartbeat", 300)
	h.advance(time.Minute)
	h.exit(f, 2) // a crash
	check("after the crash", 300)
	h.readyAll()
	f = h.live(1)
	h.beatFigures(f, 1200) // over MaxRequests: recycled, replacement first
	check("second process", 1500)
	h.p.checkTimeouts()
	h.readyAll() // the replacement is ready: the old one drains
	if !f.drained {
		t.Fatal("the recycled worker was not drained")
	}
	n := h.live(1)
	h.beatFigures(n, 5)
	check("old and new process both counted", 1505)
	h.exit(f, 0)
	check("after the recycled process exited", 1505)
	w := slotMetricsOf(t, h.p.metrics(), 1)
	if w.Restarts[ReasonCrash] != 1 || w.Restarts[ReasonRecycledRequests] != 1 {
		t.Errorf("restarts by reason %v, want one crash and one recycled-requests", w.Restarts)
	}
	var kinds []string
	for _, e := range h.p.metrics().Events {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) < 5 || kinds[0] != "started" {
		t.Errorf("events %v, want started, started, died, started, ...", kinds)
	}
}

func TestStaleWorkersAreCountedNotWaitedFor(t *testing.T) {
	h := newHarnessWith(t, Options{Workers: 2, WorkerTimeout: time.Hour})
	h.readyAll()
	h.beatFigures(h.live(1), 1)
	h.beatFigures(h.live(2), 1)
	h.advance(2 * time.Second)
	h.beatFigures(h.live(2), 2)
	if m := h.p.metrics(); m.Stale != 0 {
		t.Fatalf("stale = %d after 2 s, want 0 (heartbeats are due every second, stale after 3)", m.Stale)
	}
	h.advance(2 * time.Second)
	h.beatFigures(h.live(2), 3)
	m := h.p.metrics()
	if m.Stale != 1 || !slotMetricsOf(t, m, 1).Stale || slotMetricsOf(t, m, 2).Stale {
		t.Errorf("stale = %d (1: %v, 2: %v), want worker 1 alone", m.Stale, slotMetricsOf(t, m, 1).Stale, slotMetricsOf(t, m, 2).Stale)
	}
}

// churn runs n crash-and-replace cycles over the harness's workers.
func churn(h *harness, workers, n int) {
	for i := range n {
		id := i%workers + 1
		h.readyAll()
		f := h.procs[h.p.live(id).pid]
		h.beatFigures(f, uint64(i%500+1))
		h.advance(DefaultStableAfter + time.Second) // a stable run: restarted at once, no backoff timer
		h.exit(f, 1)
		delete(h.procs, f.pid)
	}
	h.readyAll()
}

func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The primary keeps a slot's totals, not a record per process: its memory
// does not grow with restarts.
func TestMetricsMemoryFlatUnderChurn(t *testing.T) {
	const workers = 64
	h := newHarnessWith(t, Options{Workers: workers, MemoryLogInterval: -1})
	h.p.log = slog.New(slog.DiscardHandler) // the harness keeps its log in memory
	churn(h, workers, 1000)
	before := heapAfterGC()
	churn(h, workers, 10000)
	after := heapAfterGC()
	if after > before+before/2+(1<<20) {
		t.Errorf("heap grew from %d to %d bytes over 10,000 more restarts", before, after)
	}
	m := h.p.metrics()
	if len(m.Workers) != workers || len(m.Events) != maxEvents {
		t.Errorf("%d workers and %d events in the metrics, want %d and %d", len(m.Workers), len(m.Events), workers, maxEvents)
	}
	var crashes uint64
	for _, w := range m.Workers {
		crashes += w.Restarts[ReasonCrash]
	}
	if crashes != 11000 {
		t.Errorf("%d crashes counted, want 11000", crashes)
	}
}

// BenchmarkMetrics64Workers is the primary's share of a scrape (the
// snapshot taken in its loop) with 64 workers after 10,000 restarts.
func BenchmarkMetrics64Workers(b *testing.B) {
	h := newHarnessWith(&testing.T{}, Options{Workers: 64, MemoryLogInterval: -1})
	h.p.log = slog.New(slog.DiscardHandler)
	churn(h, 64, 10000)
	b.ReportAllocs()
	for b.Loop() {
		_ = h.p.metrics()
	}
}
