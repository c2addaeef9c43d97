package cluster

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHistogramQuantile(t *testing.T) {
	h := Histogram{Counts: make([]uint64, len(LatencyBuckets)+1)}
	if q := h.Quantile(.5); !math.IsNaN(q) {
		t.Errorf("empty histogram: quantile %v, want NaN", q)
	}
	// 100 observations in (1ms, 2.5ms], 100 in (10ms, 25ms].
	h.Counts[4], h.Counts[7] = 100, 100
	for _, c := range []struct{ q, want float64 }{{.25, .00175}, {.5, .0025}, {.75, .0175}, {.99, .0247}} {
		if got := h.Quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	h.Counts[len(h.Counts)-1] = 1000 // above every bound
	if got := h.Quantile(.99); got != 10 {
		t.Errorf("Quantile above the last bound = %v, want the last bound 10", got)
	}
	d := h.Sub(Histogram{Counts: []uint64{0, 0, 0, 0, 50}})
	if d.Count() != 1150 {
		t.Errorf("Sub: %d observations, want 1150", d.Count())
	}
	if back := (Histogram{Counts: []uint64{1}}).Sub(Histogram{Counts: []uint64{5}}); back.Count() != 1 {
		t.Errorf("Sub of a later process's counters: %v, want the counters themselves", back)
	}
}

func TestInstrumentCountsRoutesClassesAndLatency(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/{n}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /teapot", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux.HandleFunc("GET /silent", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /flush", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // handlers that assert Flusher keep working
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Errorf("ResponseController through the wrapper: %v", err)
		}
	})
	w := &Worker{metrics: newReqMetrics()}
	srv := httptest.NewServer(w.instrument(mux))
	defer srv.Close()
	for _, path := range []string{"/api/1", "/api/2", "/teapot", "/silent", "/flush", "/nowhere"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end: the response ends only after the handler, and
		// so its instrumentation, returned (/flush sends its headers early).
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	f := w.metrics.figures()
	want := map[string][5]uint64{
		"GET /api/{n}": {0, 2, 0, 0, 0},
		"GET /teapot":  {0, 0, 0, 1, 0},
		"GET /silent":  {0, 1, 0, 0, 0},
		"GET /flush":   {0, 1, 0, 0, 0},
		"":             {0, 0, 0, 1, 0}, // no pattern matched: the mux's own 404
	}
	if len(f.Routes) != len(want) {
		t.Errorf("routes %+v, want %d of them", f.Routes, len(want))
	}
	for _, r := range f.Routes {
		if r.Classes != want[r.Pattern] {
			t.Errorf("route %q: classes %v, want %v", r.Pattern, r.Classes, want[r.Pattern])
		}
	}
	if n := f.Latency.Count(); n != 6 || f.Latency.Sum <= 0 {
		t.Errorf("latency: %d observations, sum %v; want 6 and a positive sum", n, f.Latency.Sum)
	}
	if f.Requests() != 6 || w.Requests() != 6 || f.InFlight != 0 {
		t.Errorf("requests %d (worker %d), in flight %d; want 6, 6, 0", f.Requests(), w.Requests(), f.InFlight)
	}
}

func TestFiguresAddCountersKeepsEveryRoute(t *testing.T) {
	a := Figures{InFlight: 3, Routes: []RouteCount{{Pattern: "b", Classes: [5]uint64{0, 1}}}, Latency: Histogram{Counts: []uint64{1, 2}, Sum: 1}}
	b := Figures{InFlight: 7, Routes: []RouteCount{{Pattern: "a", Classes: [5]uint64{0, 5}}, {Pattern: "b", Classes: [5]uint64{0, 2, 0, 1}}}, Latency: Histogram{Counts: []uint64{0, 1, 4}, Sum: 2}}
	s := a.addCounters(b)
	if s.InFlight != 3 || s.Requests() != 9 || s.Latency.Count() != 8 || s.Latency.Sum != 3 {
		t.Errorf("sum %+v", s)
	}
	if len(s.Routes) != 2 || s.Routes[0].Pattern != "a" || s.Routes[1].Classes != [5]uint64{0, 3, 0, 1} {
		t.Errorf("routes %+v", s.Routes)
	}
}

// nopWriter is a ResponseWriter that costs nothing, so that the benchmark
// measures the instrumentation.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkInstrument measures the worker's per-request cost of counting,
// on a ServeMux route like the demo app's "/", with metrics on and off.
func BenchmarkInstrument(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello\n")) })
			w := &Worker{metrics: newReqMetrics(), opts: Options{DisableRequestMetrics: !on}}
			h := w.instrument(mux)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				rw := &nopWriter{h: http.Header{}}
				r := httptest.NewRequest("GET", "/", nil)
				for pb.Next() {
					h.ServeHTTP(rw, r)
				}
			})
		})
	}
}

// BenchmarkInstrumentLoopback is the same comparison over real HTTP on
// loopback with keep-alive connections: what a request costs end to end.
func BenchmarkInstrumentLoopback(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello\n")) })
			w := &Worker{metrics: newReqMetrics(), opts: Options{DisableRequestMetrics: !on}}
			srv := httptest.NewServer(w.instrument(mux))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv.URL + "/")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

func TestInstrumentCountsAPanicAsAServerError(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	w := &Worker{metrics: newReqMetrics()}
	srv := httptest.NewServer(w.instrument(mux))
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/boom"); err == nil {
		resp.Body.Close()
		t.Fatalf("a panicking handler answered %s", resp.Status)
	}
	f := w.metrics.figures()
	if len(f.Routes) != 1 || f.Routes[0].Classes != [5]uint64{0, 0, 0, 0, 1} || f.InFlight != 0 {
		t.Errorf("after a panic: routes %+v, in flight %d; want one 5xx on GET /boom and none in flight", f.Routes, f.InFlight)
	}
}
