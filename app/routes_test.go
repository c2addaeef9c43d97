package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// testServer is an App behind a real loopback HTTP server.
type testServer struct {
	t   *testing.T
	app *App
	id  int
	url string
}

func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Exit == nil {
		opts.Exit = func(code int) { t.Errorf("Exit(%d) called unexpectedly", code) }
	}
	a := New(opts)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &testServer{t: t, app: a, id: opts.WorkerID, url: srv.URL}
}

// with returns s reporting to t, for subtests.
func (s *testServer) with(t *testing.T) *testServer {
	c := *s
	c.t = t
	return &c
}

// reply is what a client got back.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and checks what every response must carry: the
// worker's identity headers.
func (s *testServer) do(method, path, body string) reply {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	if got, want := resp.Header.Get("X-Worker-Id"), strconv.Itoa(s.id); got != want {
		s.t.Errorf("%s %s: X-Worker-Id = %q, want %q", method, path, got, want)
	}
	if got, want := resp.Header.Get("X-Worker-Pid"), strconv.Itoa(os.Getpid()); got != want {
		s.t.Errorf("%s %s: X-Worker-Pid = %q, want %q", method, path, got, want)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// json decodes a JSON object body, failing the test unless the status is
// want and the body is JSON.
func (r reply) json(t *testing.T, want int) map[string]any {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// wantError checks a JSON error answer {"error": "..."} with status want
// and returns the message.
func (r reply) wantError(t *testing.T, want int) string {
	t.Helper()
	m := r.json(t, want)
	msg, _ := m["error"].(string)
	if msg == "" {
		t.Errorf("status %d without an \"error\" message: %s", want, r.body)
	}
	return msg
}

// get follows a dotted path ("worker.id") through decoded JSON.
func get(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %v is not an object", path, v)
		}
		if v, ok = obj[k]; !ok {
			t.Fatalf("%s: missing in %v", path, m)
		}
	}
	return v
}

func getNum(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	f, ok := get(t, m, path).(float64)
	if !ok {
		t.Fatalf("%s = %v, want a number", path, get(t, m, path))
	}
	return f
}

func getStr(t *testing.T, m map[string]any, path string) string {
	t.Helper()
	s, ok := get(t, m, path).(string)
	if !ok {
		t.Fatalf("%s = %v, want a string", path, get(t, m, path))
	}
	return s
}

var (
	mbRe     = regexp.MustCompile(`^\d+\.\d\d MB$`)
	uptimeRe = regexp.MustCompile(`^\d+\.\d\ds$`)
)

func TestHello(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 2})
	r := s.do("GET", "/", "")
	if r.status != 200 || string(r.body) != "Hello World!" {
		t.Fatalf("GET / = %d %q, want 200 \"Hello World!\"", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

func TestPID(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	m := s.do("GET", "/pid", "").json(t, 200)
	if got := getNum(t, m, "processid"); int(got) != os.Getpid() {
		t.Errorf("processid = %v, want %d", got, os.Getpid())
	}
}

// sumClosedForm is 0+1+...+n = n(n+1)/2, without overflowing for n up to
// MaxSumN.
func sumClosedForm(n uint64) uint64 {
	if n%2 == 0 {
		return n / 2 * (n + 1)
	}
	return (n + 1) / 2 * n
}

func TestSum(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	pid := os.Getpid()
	for _, tc := range []struct {
		n    string
		want uint64
	}{
		{"0", 0},
		{"1", 1},
		{"10", 55},
		{"1000", 500500},
		{"4194304", sumClosedForm(4194304)}, // one whole chunk and one more
		{"12345678", sumClosedForm(12345678)},
		{"-0", 0},
	} {
		r := s.do("GET", "/api/"+tc.n, "")
		want := fmt.Sprintf("Final count is %d %d", tc.want, pid)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("GET /api/%s = %d %q, want 200 %q", tc.n, r.status, r.body, want)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET /api/%s: Content-Type = %q, want text/plain", tc.n, ct)
		}
	}
}

// TestSumClamps runs the full 5e9-iteration loop, once for the limit and
// once for a value above it: seconds each, so in parallel.
func TestSumClamps(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{WorkerID: 1})
	want := fmt.Sprintf("Final count is 12500000002500000000 %d", os.Getpid())
	if got := sumClosedForm(MaxSumN); got != 12500000002500000000 {
		t.Fatalf("closed form of MaxSumN = %d", got)
	}
	// Above int64 too: the message promises every number above is clamped.
	for _, n := range []string{"5000000000", "9223372036854775808"} {
		t.Run(n, func(t *testing.T) {
			t.Parallel()
			r := s.with(t).do("GET", "/api/"+n, "")
			if r.status != 200 || string(r.body) != want {
				t.Errorf("GET /api/%s = %d %q, want 200 %q", n, r.status, r.body, want)
			}
		})
	}
}

func TestSumExact(t *testing.T) {
	const chunk = 1 << 22 // Sum's chunk: check both sides of its edges
	for _, n := range []uint64{0, 1, 2, 3, 99, chunk - 1, chunk, chunk + 1, 2*chunk - 1, 2 * chunk, 3*chunk + 7} {
		got, ok := Sum(context.Background(), n)
		if !ok || got != sumClosedForm(n) {
			t.Errorf("Sum(%d) = %d, %v; want %d, true", n, got, ok, sumClosedForm(n))
		}
	}
}

// TestParseSumN: any decimal number is a count, clamped however long it
// is; anything else is not (the loops themselves are TestSumClamps's).
func TestParseSumN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"7", 7, true}, {"+7", 7, true}, {"007", 7, true},
		{"4999999999", 4999999999, true}, {"5000000000", MaxSumN, true}, {"5000000001", MaxSumN, true},
		{"9223372036854775807", MaxSumN, true}, {"9223372036854775808", MaxSumN, true},
		{"18446744073709551616", MaxSumN, true}, {strings.Repeat("9", 1000), MaxSumN, true},
		{"-0", 0, true}, {"-000", 0, true},
		{"", 0, false}, {"+", 0, false}, {"-", 0, false}, {"-1", 0, false}, {"-99999999999999999999", 0, false}, {"++1", 0, false},
		{"1.5", 0, false}, {"1e3", 0, false}, {"0x10", 0, false}, {" 5", 0, false}, {"5abc", 0, false},
		{"٣", 0, false}, // an Arabic-Indic digit is not a decimal digit here
	} {
		got, ok := parseSumN(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSumN(%q) = %d, %v; want %d, %v", clip(tc.in), got, ok, tc.want, tc.ok)
		}
	}
}

// TestErrorsQuoteAShortPrefix: an error quotes at most MaxQuoted bytes of
// what the client sent, however long that was.
func TestErrorsQuoteAShortPrefix(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	long := strings.Repeat("x", 100<<10)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/" + long},                         // 400: the bad n
		{"GET", "/" + long},                             // 404: the path
		{"POST", "/api/" + long},                        // 405: the path
		{"GET", "/api/1" + strings.Repeat("é", 50<<10)}, // 400, cut at a character boundary
	} {
		r := s.do(tc.method, tc.path, "")
		if r.status < 400 || r.status > 499 {
			t.Errorf("%s /%s…: status %d, want a 4xx", tc.method, tc.path[1:10], r.status)
		}
		msg := r.wantError(t, r.status)
		if len(r.body) > 400 {
			t.Errorf("%s %d-byte path: %d-byte error body, want a short one: %.200s…", tc.method, len(tc.path), len(r.body), r.body)
		}
		if !strings.Contains(msg, "…") {
			t.Errorf("%s %d-byte path: error %q does not show it was cut", tc.method, len(tc.path), msg)
		}
		if !utf8.ValidString(msg) {
			t.Errorf("error %q is not valid UTF-8: cut inside a character", msg)
		}
	}
	// Short input is quoted whole, with no ellipsis.
	if msg := s.do("GET", "/api/abc", "").wantError(t, 400); !strings.Contains(msg, `"abc"`) || strings.Contains(msg, "…") {
		t.Errorf("GET /api/abc: error %q, want the input quoted whole", msg)
	}
}

func TestSumBadInput(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	for _, n := range []string{"-1", "abc", "1.5", "-99999999999999999999", "1e3", "0x10", "%205", "5abc"} {
		msg := s.do("GET", "/api/"+n, "").wantError(t, 400)
		if !strings.Contains(msg, "n must be") {
			t.Errorf("GET /api/%s: error %q does not say what n must be", n, msg)
		}
	}
}

// TestSumAndFibStopWhenCancelled: a cancelled context ends the loops long
// before they would finish (seconds for these inputs).
func TestSumAndFibStopWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, ok := Sum(ctx, MaxSumN); ok {
		t.Error("Sum with a cancelled context reported ok")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Sum with a cancelled context took %s", d)
	}
	start = time.Now()
	if _, ok := Fib(ctx, MaxFibN); ok {
		t.Error("Fib with a cancelled context reported ok")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Fib with a cancelled context took %s", d)
	}
}

// countingWriter counts what a handler writes.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int
}

func (c *countingWriter) WriteHeader(code int) { c.status = code; c.ResponseWriter.WriteHeader(code) }
func (c *countingWriter) Write(b []byte) (int, error) {
	c.n += len(b)
	return c.ResponseWriter.Write(b)
}

// abandon sends a request whose client gives up as soon as the handler has
// started, and reports what the handler wrote before it returned. A handler
// that ignored the client's departure would run for minutes here (fib(45)
// under -race) or write its result anyway.
func abandon(t *testing.T, method, path, body string) (status, written int) {
	t.Helper()
	a := New(Options{WorkerID: 1, Logger: slog.New(slog.DiscardHandler)})
	started := make(chan struct{})
	type result struct{ status, n int }
	done := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		close(started)
		a.ServeHTTP(cw, r)
		done <- result{cw.status, cw.n}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
	errC := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errC <- err
	}()
	select {
	case <-started:
	case err := <-errC:
		t.Fatalf("%s %s finished before the handler started: %v", method, path, err)
	}
	cancel()
	if err := <-errC; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	select {
	case res := <-done:
		return res.status, res.n
	case <-time.After(20 * time.Second):
		t.Fatalf("%s %s: the handler still runs 20 s after its client went away", method, path)
		return 0, 0
	}
}

func TestHandlersStopWhenClientGoesAway(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/5000000000", ""},
		{"POST", "/cluster/cpu-intensive", `{"n":45}`}, // also: 45 is accepted
	} {
		t.Run(tc.path, func(t *testing.T) {
			if status, n := abandon(t, tc.method, tc.path, tc.body); status != 0 || n != 0 {
				t.Errorf("after the client left, the handler wrote status %d and %d bytes; want nothing", status, n)
			}
		})
	}
}

func TestClusterInfo(t *testing.T) {
	for _, id := range []int{0, 3} {
		t.Run(fmt.Sprintf("worker %d", id), func(t *testing.T) {
			s := newTestServer(t, Options{WorkerID: id})
			first := getNum(t, s.do("GET", "/cluster/info", "").json(t, 200), "stats.requestCount")
			m := s.do("GET", "/cluster/info", "").json(t, 200)
			if got := getNum(t, m, "worker.id"); int(got) != id {
				t.Errorf("worker.id = %v, want %d", got, id)
			}
			if got := getNum(t, m, "worker.pid"); int(got) != os.Getpid() {
				t.Errorf("worker.pid = %v, want %d", got, os.Getpid())
			}
			if got := get(t, m, "worker.isPrimary"); got != (id == 0) {
				t.Errorf("worker.isPrimary = %v for worker %d", got, id)
			}
			if got := get(t, m, "worker.isWorker"); got != (id != 0) {
				t.Errorf("worker.isWorker = %v for worker %d", got, id)
			}
			if got := getNum(t, m, "system.cpus"); int(got) != runtime.NumCPU() {
				t.Errorf("system.cpus = %v, want %d", got, runtime.NumCPU())
			}
			if got := getStr(t, m, "system.platform"); got != runtime.GOOS {
				t.Errorf("system.platform = %q, want %q", got, runtime.GOOS)
			}
			if got := getStr(t, m, "system.goVersion"); got != runtime.Version() {
				t.Errorf("system.goVersion = %q, want %q", got, runtime.Version())
			}
			for _, k := range []string{"memory.rss", "memory.heapUsed", "memory.heapTotal"} {
				if got := getStr(t, m, k); !mbRe.MatchString(got) || got == "0.00 MB" {
					t.Errorf("%s = %q, want a non-zero size like \"45.23 MB\"", k, got)
				}
			}
			if got := getStr(t, m, "stats.uptime"); !uptimeRe.MatchString(got) {
				t.Errorf("stats.uptime = %q, want like \"123.45s\"", got)
			}
			if got := getNum(t, m, "stats.requestCount"); got <= first {
				t.Errorf("stats.requestCount went from %v to %v over a request", first, got)
			}
		})
	}
}

// fakeCluster stands in for the primary behind /cluster/workers.
type fakeCluster struct {
	pid     int
	workers []WorkerInfo
	err     error
	noDL    atomic.Bool // set when a call came without a deadline
}

func (f *fakeCluster) Workers(ctx context.Context) (int, []WorkerInfo, error) {
	if _, ok := ctx.Deadline(); !ok {
		f.noDL.Store(true)
	}
	return f.pid, f.workers, f.err
}

func TestClusterWorkers(t *testing.T) {
	ws := []WorkerInfo{
		{ID: 1, PID: 101, State: "ready", Uptime: "12.50s", UptimeS: 12.5, Restarts: 0, Requests: 7, RSS: 9 << 20},
		{ID: 2, PID: 202, State: "starting", Uptime: "0.10s", UptimeS: 0.1, Restarts: 3},
	}
	fc := &fakeCluster{pid: 4242, workers: ws}
	s := newTestServer(t, Options{WorkerID: 1, Cluster: fc})
	m := s.do("GET", "/cluster/workers", "").json(t, 200)
	if fc.noDL.Load() {
		t.Error("the handler asked the primary without a deadline: a hung primary would hang the request")
	}
	if got := getNum(t, m, "primary.pid"); got != 4242 {
		t.Errorf("primary.pid = %v, want 4242", got)
	}
	if got := getNum(t, m, "count"); got != 2 {
		t.Errorf("count = %v, want 2", got)
	}
	list, ok := m["workers"].([]any)
	if !ok || len(list) != len(ws) {
		t.Fatalf("workers = %v, want %d entries", m["workers"], len(ws))
	}
	for i, w := range ws {
		got := list[i].(map[string]any)
		state := w.State
		if state == "ready" {
			state = "online" // the reference's name for a serving worker
		}
		want := map[string]any{
			"id": float64(w.ID), "pid": float64(w.PID), "state": state,
			"uptime": w.Uptime, "restarts": float64(w.Restarts),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("workers[%d].%s = %v, want %v", i, k, got[k], v)
			}
		}
	}

	t.Run("no workers", func(t *testing.T) {
		s := newTestServer(t, Options{WorkerID: 1, Cluster: &fakeCluster{pid: 4242}})
		r := s.do("GET", "/cluster/workers", "")
		m := r.json(t, 200)
		if !strings.Contains(string(r.body), `"workers":[]`) || getNum(t, m, "count") != 0 {
			t.Errorf("no workers: body %s, want \"workers\":[] and count 0", r.body)
		}
	})
	t.Run("primary does not answer", func(t *testing.T) {
		s := newTestServer(t, Options{WorkerID: 1, Cluster: &fakeCluster{err: errors.New("cluster: connection to the primary closed")}})
		msg := s.do("GET", "/cluster/workers", "").wantError(t, 503)
		if !strings.Contains(msg, "connection to the primary closed") {
			t.Errorf("error %q does not say why", msg)
		}
	})
	t.Run("single process", func(t *testing.T) {
		s := newTestServer(t, Options{})
		m := s.do("GET", "/cluster/workers", "").json(t, 200)
		if got := getNum(t, m, "primary.pid"); int(got) != os.Getpid() {
			t.Errorf("primary.pid = %v, want this process %d", got, os.Getpid())
		}
		if got := getNum(t, m, "count"); got != 0 {
			t.Errorf("count = %v, want 0", got)
		}
	})
}

func TestCPUIntensive(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 2})
	m := s.do("POST", "/cluster/cpu-intensive", `{"n":10}`).json(t, 200)
	if got := getNum(t, m, "calculation.result"); got != 55 {
		t.Errorf("fib(10) = %v, want 55", got)
	}
	if got := getNum(t, m, "calculation.input"); got != 10 {
		t.Errorf("calculation.input = %v, want 10", got)
	}
	if got := getStr(t, m, "calculation.duration"); !regexp.MustCompile(`^\d+ms$`).MatchString(got) {
		t.Errorf("calculation.duration = %q, want like \"12ms\"", got)
	}
	if got := getNum(t, m, "worker.id"); got != 2 {
		t.Errorf("worker.id = %v, want 2", got)
	}
	if got := getNum(t, m, "worker.pid"); int(got) != os.Getpid() {
		t.Errorf("worker.pid = %v, want %d", got, os.Getpid())
	}
	if got := getStr(t, m, "message"); !strings.Contains(got, "Fibonacci(10) = 55") || !strings.Contains(got, "worker 2") {
		t.Errorf("message = %q, want it to name the result and the worker", got)
	}

	// Every n from 0 up to where the recursion gets slow; 45 itself is
	// covered by TestHandlersStopWhenClientGoesAway.
	a, b := uint64(0), uint64(1)
	for n := 0; n <= 27; n++ {
		m := s.do("POST", "/cluster/cpu-intensive", fmt.Sprintf(`{"n":%d}`, n)).json(t, 200)
		if got := getNum(t, m, "calculation.result"); uint64(got) != a {
			t.Errorf("fib(%d) = %v, want %d", n, got, a)
		}
		a, b = b, a+b
	}
	// Exactly MaxBody bytes is accepted; one more is not.
	padded := `{"n":10}` + strings.Repeat(" ", MaxBody-len(`{"n":10}`))
	if r := s.do("POST", "/cluster/cpu-intensive", padded); r.status != 200 {
		t.Errorf("a body of exactly %d bytes: status %d, want 200; %s", MaxBody, r.status, r.body)
	}
	if msg := s.do("POST", "/cluster/cpu-intensive", padded+" ").wantError(t, 413); !strings.Contains(msg, strconv.Itoa(MaxBody)) {
		t.Errorf("413 error %q does not name the limit", msg)
	}
}

func TestCPUIntensiveBadInput(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"too big", `{"n":46}`, 400},
		{"negative", `{"n":-1}`, 400},
		{"fraction", `{"n":3.5}`, 400},
		{"exponent", `{"n":1e1}`, 400},
		{"string", `{"n":"35"}`, 400},
		{"null", `{"n":null}`, 400},
		{"missing n", `{}`, 400},
		{"not an object", `[10]`, 400},
		{"malformed", `{"n":`, 400},
		{"empty body", ``, 400},
		{"trailing garbage", `{"n":10} x`, 400},
		{"two objects", `{"n":10}{"n":11}`, 400},
		{"over 1 MiB", `{"n":10,"pad":"` + strings.Repeat("x", MaxBody) + `"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.with(t).do("POST", "/cluster/cpu-intensive", tc.body).wantError(t, tc.status)
		})
	}
}

func TestLocalState(t *testing.T) {
	a := newTestServer(t, Options{WorkerID: 1})
	b := newTestServer(t, Options{WorkerID: 2})
	for want := 1; want <= 3; want++ {
		m := a.do("GET", "/cluster/local-state", "").json(t, 200)
		if got := getNum(t, m, "requestCount"); int(got) != want {
			t.Errorf("worker 1 hit %d: requestCount = %v", want, got)
		}
	}
	a.do("GET", "/", "") // other routes do not count
	m := b.do("GET", "/cluster/local-state", "").json(t, 200)
	if got := getNum(t, m, "requestCount"); got != 1 {
		t.Errorf("another App's first hit: requestCount = %v, want 1 (the counter is per process)", got)
	}
	if got := getNum(t, m, "worker.id"); got != 2 {
		t.Errorf("worker.id = %v, want 2", got)
	}
	if getStr(t, m, "message") == "" || getStr(t, m, "explanation") == "" {
		t.Errorf("local-state lacks its explanation: %v", m)
	}
	if m := a.do("GET", "/cluster/local-state", "").json(t, 200); getNum(t, m, "requestCount") != 4 {
		t.Errorf("worker 1 fourth hit: requestCount = %v", m["requestCount"])
	}
}

func TestCrashDisabled(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1}) // Exit fails the test if called
	msg := s.do("POST", "/cluster/crash", "").wantError(t, 404)
	if !strings.Contains(msg, "--enable-crash-endpoint") {
		t.Errorf("error %q does not say how to enable it", msg)
	}
}

// TestCrash: the worker answers in full, then exits 1. Exit stands in for
// os.Exit: it records the code and ends the handler's goroutine on the
// spot, so nothing the server would do after the handler returns (the end
// of a chunked body) happens, just as when the process is gone.
func TestCrash(t *testing.T) {
	codes := make(chan int, 1)
	s := newTestServer(t, Options{WorkerID: 3, EnableCrash: true, Exit: func(code int) {
		codes <- code
		runtime.Goexit()
	}})
	m := s.do("POST", "/cluster/crash", `{"please":"crash"}`).json(t, 200)
	if got := getNum(t, m, "workerId"); got != 3 {
		t.Errorf("workerId = %v, want 3", got)
	}
	if got := getNum(t, m, "pid"); int(got) != os.Getpid() {
		t.Errorf("pid = %v, want %d", got, os.Getpid())
	}
	if got := getStr(t, m, "message"); !strings.Contains(got, "crashing") {
		t.Errorf("message = %q", got)
	}
	select {
	case code := <-codes:
		if code != 1 {
			t.Errorf("Exit(%d), want Exit(1)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exit was not called")
	}
}

func TestMemory(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 4})
	m := s.do("GET", "/cluster/memory", "").json(t, 200)
	if got := getNum(t, m, "worker.id"); got != 4 {
		t.Errorf("worker.id = %v, want 4", got)
	}
	if got := getNum(t, m, "worker.pid"); int(got) != os.Getpid() {
		t.Errorf("worker.pid = %v, want %d", got, os.Getpid())
	}
	for _, k := range []string{"rss", "heapAlloc", "heapSys", "heapInuse", "stackInuse", "sys"} {
		if got := getStr(t, m, "memory."+k); !mbRe.MatchString(got) {
			t.Errorf("memory.%s = %q, want like \"45.23 MB\"", k, got)
		}
		if got := getNum(t, m, "bytes."+k); got <= 0 {
			t.Errorf("bytes.%s = %v, want > 0", k, got)
		}
	}
	if got := getNum(t, m, "goroutines"); got < 1 {
		t.Errorf("goroutines = %v", got)
	}
	getNum(t, m, "numGC")
}

func TestHealthAndReadiness(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	if got := getStr(t, s.do("GET", "/healthz", "").json(t, 200), "status"); got != "alive" {
		t.Errorf("/healthz status = %q, want alive", got)
	}
	if got := getStr(t, s.do("GET", "/readyz", "").json(t, 200), "status"); got != "ready" {
		t.Errorf("/readyz status = %q, want ready", got)
	}
	s.app.SetDraining()
	s.do("GET", "/readyz", "").wantError(t, 503)
	s.do("GET", "/healthz", "").json(t, 200) // alive while draining
}

func TestNotFound(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/nope"},
		{"GET", "/api"},
		{"GET", "/api/"},
		{"GET", "/api/1/2"},
		{"GET", "/cluster"},
		{"GET", "/cluster/nope"},
		{"POST", "/nope"},
		{"DELETE", "/cluster/nothing/here"},
	} {
		msg := s.do(tc.method, tc.path, "").wantError(t, 404)
		if !strings.Contains(msg, tc.path) {
			t.Errorf("%s %s: error %q does not name the path", tc.method, tc.path, msg)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	s := newTestServer(t, Options{WorkerID: 1})
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/", "GET, HEAD"},
		{"DELETE", "/pid", "GET, HEAD"},
		{"POST", "/api/10", "GET, HEAD"},
		{"PUT", "/healthz", "GET, HEAD"},
		{"POST", "/cluster/info", "GET, HEAD"},
		{"GET", "/cluster/cpu-intensive", "POST"},
		{"GET", "/cluster/crash", "POST"},
		{"PATCH", "/cluster/local-state", "GET, HEAD"},
	} {
		r := s.do(tc.method, tc.path, "")
		msg := r.wantError(t, 405)
		if got := r.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if !strings.Contains(msg, tc.method) {
			t.Errorf("%s %s: error %q does not name the method", tc.method, tc.path, msg)
		}
	}
}
