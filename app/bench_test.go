package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/store"
)

// nullWriter is a ResponseWriter that keeps the status and discards the
// body, reused across iterations so that the figures are the handler's.
type nullWriter struct {
	h      http.Header
	status int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(code int)        { w.status = code }

// BenchmarkHandlers is each demo route's cost inside the worker, without
// the network: routing, the identity headers, the handler and its JSON.
// The shared-state routes use the in-memory store (a worker reaches the
// embedded store over IPC; store's BenchmarkStore measures that part).
//
//	go test -run '^$' -bench BenchmarkHandlers ./app/
func BenchmarkHandlers(b *testing.B) {
	ctx := context.Background()
	st := store.NewMemory()
	b.Cleanup(func() { st.Close() })
	if err := st.Set(ctx, "cluster:bench", []byte(`{"message":"Hello","count":42}`), 0); err != nil {
		b.Fatal(err)
	}
	a := app.New(app.Options{WorkerID: 1, Store: st, Logger: slog.New(slog.DiscardHandler)})
	cases := []struct {
		name, method, path, body string
	}{
		{"hello", "GET", "/", ""},
		{"pid", "GET", "/pid", ""},
		{"api-1000", "GET", "/api/1000", ""},
		{"cluster-info", "GET", "/cluster/info", ""},
		{"local-state", "GET", "/cluster/local-state", ""},
		{"shared-state-get", "GET", "/cluster/shared-state/bench", ""},
		{"shared-state-set", "POST", "/cluster/shared-state", `{"key":"bench","value":{"message":"Hello","count":42}}`},
		{"counter", "POST", "/cluster/counter", ""},
		{"cpu-intensive-20", "POST", "/cluster/cpu-intensive", `{"n":20}`},
		{"not-found", "GET", "/nope", ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &nullWriter{h: make(http.Header)}
			body := strings.NewReader(c.body)
			r := httptest.NewRequest(c.method, c.path, body)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				body.Reset(c.body)
				a.ServeHTTP(w, r)
			}
			if w.status != 0 && w.status != http.StatusOK && c.name != "not-found" {
				b.Fatalf("%s %s answered %d", c.method, c.path, w.status)
			}
		})
	}
}

// BenchmarkSum is the /api/{n} loop alone: ns/iter is the time of one
// loop iteration, to compare with the CPU's cycle time (about one
// iteration per cycle is the target).
func BenchmarkSum(b *testing.B) {
	const n = 10_000_000
	var total uint64
	for b.Loop() {
		t, _ := app.Sum(context.Background(), n)
		total += t
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
	if total == 0 {
		b.Fatal("Sum returned 0")
	}
}
