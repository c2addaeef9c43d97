package cluster

import (
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the request latency
// histogram every worker keeps; a last, unbounded bucket follows them.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Figures are a worker's request figures, carried in its heartbeats. The
// counters are cumulative since the worker started, so a lost heartbeat
// loses nothing and the primary never has to add up deltas.
type Figures struct {
	InFlight int64        `json:"inFlight"`         // requests being served now
	Conns    int64        `json:"conns"`            // open client connections
	Routes   []RouteCount `json:"routes,omitempty"` // responses by route pattern, sorted
	Latency  Histogram    `json:"latency"`          // every response's latency
}

// RouteCount counts the responses to one route pattern (the ServeMux
// pattern that matched, such as "GET /api/{n}"; "" when none did) by status
// class: Classes[0] is 1xx, ..., Classes[4] is 5xx.
type RouteCount struct {
	Pattern string    `json:"p"`
	Classes [5]uint64 `json:"c"`
}

// Histogram is a latency histogram over LatencyBuckets: Counts[i] counts
// the observations in bucket i alone (not cumulative), the last entry those
// above every bound. Sum is in seconds.
type Histogram struct {
	Counts []uint64 `json:"n,omitempty"`
	Sum    float64  `json:"s"`
}

// Count returns the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Add returns h plus o.
func (h Histogram) Add(o Histogram) Histogram {
	n := max(len(h.Counts), len(o.Counts))
	out := Histogram{Counts: make([]uint64, n), Sum: h.Sum + o.Sum}
	for i := range n {
		if i < len(h.Counts) {
			out.Counts[i] += h.Counts[i]
		}
		if i < len(o.Counts) {
			out.Counts[i] += o.Counts[i]
		}
	}
	return out
}

// Sub returns h minus an earlier snapshot prev of the same counters: the
// observations made in between. A counter that went backwards (a different
// process) yields h itself.
func (h Histogram) Sub(prev Histogram) Histogram {
	out := Histogram{Counts: make([]uint64, len(h.Counts)), Sum: h.Sum - prev.Sum}
	for i, c := range h.Counts {
		var p uint64
		if i < len(prev.Counts) {
			p = prev.Counts[i]
		}
		if p > c {
			return h
		}
		out.Counts[i] = c - p
	}
	return out
}

// Quantile estimates the q-quantile (0 < q < 1) in seconds by linear
// interpolation within its bucket, as Prometheus's histogram_quantile does;
// an observation above the last bound counts as the last bound. It returns
// NaN when h is empty.
func (h Histogram) Quantile(q float64) float64 {
	total := h.Count()
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			if i >= len(LatencyBuckets) {
				return LatencyBuckets[len(LatencyBuckets)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = LatencyBuckets[i-1]
			}
			return lo + (LatencyBuckets[i]-lo)*(rank-seen)/float64(c)
		}
		seen += float64(c)
	}
	return LatencyBuckets[len(LatencyBuckets)-1]
}

// Requests returns the number of responses counted in f.
func (f Figures) Requests() uint64 {
	var n uint64
	for _, r := range f.Routes {
		for _, c := range r.Classes {
			n += c
		}
	}
	return n
}

// addCounters returns f's cumulative counters plus o's; the gauges
// (in-flight, connections) are f's.
func (f Figures) addCounters(o Figures) Figures {
	out := Figures{InFlight: f.InFlight, Conns: f.Conns, Latency: f.Latency.Add(o.Latency)}
	byPattern := make(map[string]int, len(f.Routes)+len(o.Routes))
	for _, rs := range [][]RouteCount{f.Routes, o.Routes} {
		for _, r := range rs {
			i, ok := byPattern[r.Pattern]
			if !ok {
				i = len(out.Routes)
				byPattern[r.Pattern] = i
				out.Routes = append(out.Routes, RouteCount{Pattern: r.Pattern})
			}
			for c := range r.Classes {
				out.Routes[i].Classes[c] += r.Classes[c]
			}
		}
	}
	sort.Slice(out.Routes, func(i, j int) bool { return out.Routes[i].Pattern < out.Routes[j].Pattern })
	return out
}

// maxRoutes bounds the route patterns a worker counts separately; more
// (only a handler that invents patterns could make them) count as "other".
const maxRoutes = 256

// reqMetrics counts a worker's requests. The request path touches only
// atomics: the route table is copied on write and read without a lock, and
// a pattern is added once, the first time it is seen.
type reqMetrics struct {
	inFlight atomic.Int64
	routes   atomic.Pointer[map[string]*routeCounters]
	mu       sync.Mutex // serializes additions to routes
	buckets  []atomic.Uint64
	sumNanos atomic.Uint64
	conns    atomic.Pointer[atomic.Int64] // the serving loop's open connections
}

type routeCounters struct{ classes [5]atomic.Uint64 }

func newReqMetrics() *reqMetrics {
	m := &reqMetrics{buckets: make([]atomic.Uint64, len(LatencyBuckets)+1)}
	empty := map[string]*routeCounters{}
	m.routes.Store(&empty)
	return m
}

func (m *reqMetrics) route(pattern string) *routeCounters {
	if rc := (*m.routes.Load())[pattern]; rc != nil {
		return rc
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	if rc := old[pattern]; rc != nil {
		return rc
	}
	if len(old) >= maxRoutes {
		pattern = "other"
		if rc := old[pattern]; rc != nil {
			return rc
		}
	}
	next := make(map[string]*routeCounters, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	rc := &routeCounters{}
	next[pattern] = rc
	m.routes.Store(&next)
	return rc
}

func (m *reqMetrics) observe(pattern string, code int, d time.Duration) {
	class := code/100 - 1
	if class < 0 || class > 4 {
		class = 4 // a handler that wrote a nonsense code: count it with the errors
	}
	m.route(pattern).classes[class].Add(1)
	s := d.Seconds()
	i := sort.SearchFloat64s(LatencyBuckets, s)
	m.buckets[i].Add(1)
	m.sumNanos.Add(uint64(d)) //nolint:gosec // G115: a duration on the monotonic clock, never negative
}

// figures snapshots the counters. Counters read one after another may be
// a request apart; each one on its own never goes backwards.
func (m *reqMetrics) figures() Figures {
	f := Figures{InFlight: m.inFlight.Load(), Latency: Histogram{Counts: make([]uint64, len(m.buckets))}}
	if c := m.conns.Load(); c != nil {
		f.Conns = c.Load()
	}
	for p, rc := range *m.routes.Load() {
		r := RouteCount{Pattern: p}
		for i := range rc.classes {
			r.Classes[i] = rc.classes[i].Load()
		}
		f.Routes = append(f.Routes, r)
	}
	sort.Slice(f.Routes, func(i, j int) bool { return f.Routes[i].Pattern < f.Routes[j].Pattern })
	for i := range m.buckets {
		f.Latency.Counts[i] = m.buckets[i].Load()
	}
	f.Latency.Sum = float64(m.sumNanos.Load()) / float64(time.Second)
	return f
}

// instrument wraps h so that every request is counted: by the route
// pattern the ServeMux matched (r.Pattern, set on the request it was
// given), by status class, and in the latency histogram. With metrics off
// it only counts requests.
func (w *Worker) instrument(h http.Handler) http.Handler {
	if w.opts.DisableRequestMetrics || w.metrics == nil {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			w.requests.Add(1)
			h.ServeHTTP(rw, r)
		})
	}
	m := w.metrics
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.requests.Add(1)
		m.inFlight.Add(1)
		start := time.Since(monoEpoch)
		sw := statusWriterPool.Get().(*statusWriter)
		sw.ResponseWriter, sw.code = rw, 0
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK // wrote nothing: net/http sends 200
			}
			if p := recover(); p != nil {
				// net/http logs the panic and closes the connection; the
				// client sees no response, which is a server error.
				m.observe(r.Pattern, http.StatusInternalServerError, time.Since(monoEpoch)-start)
				m.inFlight.Add(-1)
				sw.ResponseWriter = nil
				statusWriterPool.Put(sw)
				panic(p)
			}
			m.observe(r.Pattern, code, time.Since(monoEpoch)-start)
			m.inFlight.Add(-1)
			sw.ResponseWriter = nil
			statusWriterPool.Put(sw)
		}()
		h.ServeHTTP(sw, r)
	})
}

// monoEpoch is a fixed instant: time.Since(monoEpoch) reads only the
// monotonic clock, where time.Now reads the wall clock too. Clock reads
// are most of the instrumentation's cost on machines whose clock source
// has no fast path (a VM's kvm-clock: about 400 ns each).
var monoEpoch = time.Now()

var statusWriterPool = sync.Pool{New: func() any { return &statusWriter{} }}

// statusWriter records the status code a handler sends. Unwrap lets
// http.ResponseController reach the connection's own writer (flush,
// deadlines, hijack).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for handlers that assert it.
func (s *statusWriter) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
