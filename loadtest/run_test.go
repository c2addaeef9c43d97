package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server starts a real HTTP server on 127.0.0.1 and counts the connections
// it accepted.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func hello(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello\n") }

func TestLoadtestCount(t *testing.T) {
	var served atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		hello(w, r)
	})
	res := run(t, Config{URL: s.URL, Requests: 500, Concurrency: 10})

	if res.Requests != 500 || res.Status[200] != 500 || served.Load() != 500 {
		t.Fatalf("got %d requests, %d 200s, %d served; want 500 each", res.Requests, res.Status[200], served.Load())
	}
	if res.Failed() != 0 || res.Interrupted {
		t.Errorf("got %d failed, interrupted %v; want 0, false", res.Failed(), res.Interrupted)
	}
	// A worker that starts late may find no request left: at most, not
	// exactly, one connection per worker.
	if got := s.conns.Load(); got < 1 || got > 10 {
		t.Errorf("server accepted %d connections, want 1 to 10 (one per worker, kept alive)", got)
	}
	if res.Duration <= 0 || res.Duration > 10*time.Second {
		t.Errorf("duration %v, want within (0, 10s]", res.Duration)
	}
	if want := 500 / res.Duration.Seconds(); res.RPS() != want || res.RPS() < 50 {
		t.Errorf("rps %.1f, want 500/duration = %.1f and at least 50 on loopback", res.RPS(), want)
	}
	l := res.Latency
	if l.Min <= 0 || l.Min > l.P50 || l.P50 > l.P90 || l.P90 > l.P95 || l.P95 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max || l.Max > res.Duration+time.Millisecond {
		t.Errorf("latency summary out of order or range: %+v (run took %v)", l, res.Duration)
	}
	if l.Mean < l.Min || l.Mean > l.Max {
		t.Errorf("mean %v outside [min %v, max %v]", l.Mean, l.Min, l.Max)
	}
	if res.BytesRead != 500*int64(len("hello\n")) {
		t.Errorf("read %d body bytes, want %d", res.BytesRead, 500*len("hello\n"))
	}
}

func TestLoadtestConcurrencyAboveCount(t *testing.T) {
	var served atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		hello(w, r)
	})
	res := run(t, Config{URL: s.URL, Requests: 3, Concurrency: 50})
	if res.Requests != 3 || served.Load() != 3 || s.conns.Load() > 3 {
		t.Errorf("got %d requests, %d served over %d connections, want 3, 3 over at most 3", res.Requests, served.Load(), s.conns.Load())
	}
}

func TestLoadtestDuration(t *testing.T) {
	s := newServer(t, hello)
	start := time.Now()
	res := run(t, Config{URL: s.URL, Duration: 500 * time.Millisecond, Concurrency: 4})
	took := time.Since(start)
	if took < 450*time.Millisecond || took > 3*time.Second {
		t.Errorf("Run took %v, want about 500ms", took)
	}
	if res.Duration < 450*time.Millisecond || res.Duration > 3*time.Second {
		t.Errorf("Result.Duration %v, want about 500ms", res.Duration)
	}
	if res.Requests < 10 || res.Failed() != 0 || res.Interrupted {
		t.Errorf("got %d requests, %d failed, interrupted %v; want some, 0, false", res.Requests, res.Failed(), res.Interrupted)
	}
}

// Requests still in flight when the duration ends are cut off, not counted
// as errors.
func TestLoadtestDurationCutsOffInFlight(t *testing.T) {
	var served atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
	})
	res := run(t, Config{URL: s.URL, Duration: 500 * time.Millisecond, Concurrency: 3})
	if res.Requests > 3 || res.Errors.Total() != 0 {
		t.Errorf("got %d requests, errors %+v; want at most one round of 3, no errors", res.Requests, res.Errors)
	}
	if served.Load() <= res.Requests {
		t.Errorf("server saw %d requests, report counts %d: want the cut-off ones seen but not counted", served.Load(), res.Requests)
	}
	if res.Duration > 2*time.Second {
		t.Errorf("run took %v, want the in-flight requests aborted at 500ms", res.Duration)
	}
}

func TestLoadtestCancel(t *testing.T) {
	var served atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		select {
		case <-time.After(20 * time.Millisecond):
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for served.Load() < 20 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	res, err := Run(ctx, Config{URL: s.URL, Duration: time.Minute, Concurrency: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Run returned %v after start, want soon after cancel", time.Since(start))
	}
	if !res.Interrupted || res.Requests < 16 || res.Errors.Total() != 0 {
		t.Errorf("got interrupted %v, %d requests, errors %+v; want true, >= 16, none", res.Interrupted, res.Requests, res.Errors)
	}
}

func TestLoadtestNon2xx(t *testing.T) {
	var n atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 1:
			http.NotFound(w, r)
		default:
			hello(w, r)
		}
	})
	res := run(t, Config{URL: s.URL, Requests: 400, Concurrency: 4})
	want := map[int]int64{200: 200, 404: 100, 503: 100}
	for code, c := range want {
		if res.Status[code] != c {
			t.Errorf("status %d: got %d, want %d (all: %v)", code, res.Status[code], c, res.Status)
		}
	}
	if res.Failed() != 200 || res.Non2xx() != 200 || res.Errors.Total() != 0 {
		t.Errorf("got failed %d non-2xx %d errors %+v, want 200, 200, none", res.Failed(), res.Non2xx(), res.Errors)
	}
}

// deadAddr returns the URL of a port nothing listens on: one the kernel
// just gave to a listener that is now closed.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

func TestLoadtestConnectErrors(t *testing.T) {
	res := run(t, Config{URL: deadURL(t), Requests: 20, Concurrency: 2})
	if res.Requests != 20 || res.Errors.Connect != 20 || res.Failed() != 20 || res.Errors.Client != 0 {
		t.Errorf("got %d requests, errors %+v; want 20 connect errors, none the client's", res.Requests, res.Errors)
	}
	// Failing fast is no throughput: the headline rate counts successes.
	if !res.AllFailed() || res.Succeeded() != 0 || res.RPS() != 0 || res.CompletedRPS() <= 0 {
		t.Errorf("all failed %v, succeeded %d, rps %v, completed rps %v; want true, 0, 0, above 0",
			res.AllFailed(), res.Succeeded(), res.RPS(), res.CompletedRPS())
	}
	var text strings.Builder
	_ = res.WriteText(&text, false)
	for _, want := range []string{"ALL 20 REQUESTS FAILED", "Requests  20 in ", " · 0 succeeded · 20 failed · ", "Rate      0 req/s succeeded", "server: connect 20 ·", "client: 0 "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	rep := res.Report()
	if rep.RPS != 0 || rep.CompletedRPS <= 0 || rep.Succeeded != 0 || rep.Failed != 20 {
		t.Errorf("JSON rps %v completed_rps %v succeeded %d failed %d; want 0, above 0, 0, 20", rep.RPS, rep.CompletedRPS, rep.Succeeded, rep.Failed)
	}
	if s := res.ErrorSamples["connect"]; !strings.Contains(s, "refused") {
		t.Errorf("connect error sample %q, want it to say refused", s)
	}
	if res.Responses() != 0 || res.Latency != (LatencySummary{}) {
		t.Errorf("got %d responses, latency %+v; want none", res.Responses(), res.Latency)
	}
}

func TestLoadtestTimeouts(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	start := time.Now()
	res := run(t, Config{URL: s.URL, Requests: 4, Concurrency: 2, Timeout: 150 * time.Millisecond})
	if res.Errors.Timeout != 4 || res.Requests != 4 {
		t.Errorf("got %d requests, errors %+v; want 4 timeouts", res.Requests, res.Errors)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v, want about 2 rounds of 150ms", took)
	}
}

// hijack answers with whatever reply writes on the raw connection, then
// closes it.
func hijack(t *testing.T, reply func(*bufio.ReadWriter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		reply(rw)
		rw.Flush()
	}
}

func TestLoadtestResetAndMalformed(t *testing.T) {
	reset := newServer(t, hijack(t, func(*bufio.ReadWriter) {}))
	res := run(t, Config{URL: reset.URL, Requests: 10, Concurrency: 2})
	if res.Errors.Reset != 10 {
		t.Errorf("closing without a reply: got errors %+v, want 10 reset", res.Errors)
	}

	garbage := newServer(t, hijack(t, func(rw *bufio.ReadWriter) { _, _ = rw.WriteString("garbage\r\n\r\n") }))
	res = run(t, Config{URL: garbage.URL, Requests: 10, Concurrency: 2})
	if res.Errors.Other != 10 {
		t.Errorf("garbage reply: got errors %+v, want 10 other", res.Errors)
	}
}

// A server that closes every connection after one response without saying
// so: the next request on it finds it closed. Idempotent requests are
// resent on a new connection; others fail as reset.
func TestLoadtestStaleKeepAlive(t *testing.T) {
	var served atomic.Int64
	s := newServer(t, hijack(t, func(rw *bufio.ReadWriter) {
		served.Add(1)
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}))
	res := run(t, Config{URL: s.URL, Requests: 20, Concurrency: 2})
	if res.Status[200] != 20 || res.Failed() != 0 {
		t.Errorf("GET: got status %v errors %+v, want 20 200s after resending", res.Status, res.Errors)
	}
	// Every request after the first on each connection found it closed.
	if res.Resent < 10 || res.Resent > 19 {
		t.Errorf("GET: Resent = %d, want the 18 or so requests that met a closed connection counted", res.Resent)
	}
	var text strings.Builder
	_ = res.WriteText(&text, false)
	if want := fmt.Sprintf("Resent    %d: ", res.Resent); !strings.Contains(text.String(), want) {
		t.Errorf("text report lacks %q:\n%s", want, text.String())
	}
	if js, _ := res.JSON(); !strings.Contains(string(js), fmt.Sprintf(`"resent": %d,`, res.Resent)) {
		t.Errorf("JSON report lacks \"resent\": %d:\n%s", res.Resent, js)
	}

	served.Store(0)
	res = run(t, Config{URL: s.URL, Requests: 20, Concurrency: 1, Method: "POST", Body: []byte("x")})
	if res.Status[200]+res.Errors.Reset != 20 || res.Errors.Reset == 0 || served.Load() != res.Status[200] || res.Resent != 0 {
		t.Errorf("POST: got status %v errors %+v served %d resent %d; want some resets, never resent", res.Status, res.Errors, served.Load(), res.Resent)
	}
}

func TestLoadtestNoKeepAlive(t *testing.T) {
	var closeAsked atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Close {
			closeAsked.Add(1)
		}
		hello(w, r)
	})
	res := run(t, Config{URL: s.URL, Requests: 30, Concurrency: 3, DisableKeepAlive: true})
	if res.Status[200] != 30 || s.conns.Load() != 30 || closeAsked.Load() != 30 {
		t.Errorf("got %d 200s over %d connections, %d with Connection: close; want 30 each",
			res.Status[200], s.conns.Load(), closeAsked.Load())
	}
}

func TestLoadtestServerClose(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		hello(w, r)
	})
	res := run(t, Config{URL: s.URL, Requests: 20, Concurrency: 2})
	if res.Status[200] != 20 || res.Failed() != 0 || s.conns.Load() != 20 {
		t.Errorf("got status %v errors %+v over %d connections; want 20 200s over 20", res.Status, res.Errors, s.conns.Load())
	}
}

// Chunked and large bodies are read to the end: every connection carries
// several responses and every byte is counted.
func TestLoadtestBodies(t *testing.T) {
	big := strings.Repeat("z", 1<<20)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			for range 3 {
				_, _ = io.WriteString(w, "chunk")
				http.NewResponseController(w).Flush()
			}
			return
		}
		_, _ = io.WriteString(w, big)
	})
	res := run(t, Config{URL: s.URL + "/chunked", Requests: 20, Concurrency: 2})
	if res.Status[200] != 20 || res.BytesRead != 20*15 {
		t.Errorf("chunked: got status %v, %d bytes; want 20 200s, %d bytes", res.Status, res.BytesRead, 20*15)
	}
	res = run(t, Config{URL: s.URL + "/big", Requests: 20, Concurrency: 2})
	if res.Status[200] != 20 || res.BytesRead != 20<<20 {
		t.Errorf("1 MiB bodies: got status %v, %d bytes; want 20 200s, %d bytes", res.Status, res.BytesRead, 20<<20)
	}
	if s.conns.Load() > 4 {
		t.Errorf("%d connections, want at most 4: bodies must be read exactly for keep-alive to work", s.conns.Load())
	}
}

func TestLoadtestPOST(t *testing.T) {
	type seen struct{ method, path, body, ctype, custom, agent, host string }
	var mu sync.Mutex
	var got []seen
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.RequestURI(), string(b), r.Header.Get("Content-Type"), r.Header.Get("X-Custom"), r.UserAgent(), r.Host})
		mu.Unlock()
	})
	res := run(t, Config{
		URL:         s.URL + "/api/items?x=1",
		Requests:    5,
		Concurrency: 2,
		Method:      "POST",
		Body:        []byte(`{"n":1}`),
		Header:      http.Header{"Content-Type": {"application/json"}, "X-Custom": {"a"}, "Host": {"example.test"}},
	})
	if res.Status[200] != 5 {
		t.Fatalf("got status %v errors %+v, want 5 200s", res.Status, res.Errors)
	}
	want := seen{"POST", "/api/items?x=1", `{"n":1}`, "application/json", "a", "herd-loadtest", "example.test"}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if g != want {
			t.Errorf("server saw %+v, want %+v", g, want)
		}
	}
}

func TestLoadtestTLS(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(hello))
	t.Cleanup(s.Close)
	res := run(t, Config{URL: s.URL, Requests: 10, Concurrency: 2, TLS: s.Client().Transport.(*http.Transport).TLSClientConfig})
	if res.Status[200] != 10 {
		t.Errorf("trusted: got status %v errors %+v %v, want 10 200s", res.Status, res.Errors, res.ErrorSamples)
	}
	res = run(t, Config{URL: s.URL, Requests: 2, Concurrency: 1})
	if res.Errors.Connect != 2 {
		t.Errorf("untrusted certificate: got errors %+v, want 2 connect", res.Errors)
	}
}

func TestLoadtestDistribution(t *testing.T) {
	var n atomic.Int64
	roundRobin := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Id", strconv.FormatInt(n.Add(1)%4+1, 10))
	})
	res := run(t, Config{URL: roundRobin.URL, Requests: 400, Concurrency: 8})
	d := res.Distribution
	if d.Verdict != "balanced" || d.Fairness != 1 || len(d.Workers) != 4 {
		t.Errorf("round robin: got %q, fairness %v, %d workers; want balanced, 1, 4", d.Verdict, d.Fairness, len(d.Workers))
	}
	for i, w := range d.Workers {
		if w.ID != strconv.Itoa(i+1) || w.Requests != 100 || w.Share != 0.25 {
			t.Errorf("worker %d: got %+v, want id %d, 100 requests, share 0.25", i, w, i+1)
		}
	}

	var m atomic.Int64
	hot := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		id := "3"
		if i := m.Add(1) % 10; i >= 7 {
			id = []string{"1", "2", "4"}[i-7]
		}
		w.Header().Set("X-Worker-Id", id)
	})
	res = run(t, Config{URL: hot.URL, Requests: 1000, Concurrency: 8})
	if d, want := res.Distribution, "skewed: worker 3 served 70.0%, outside 22.5%–27.5%"; d.Verdict != want || d.Balanced {
		t.Errorf("hot worker: got verdict %q balanced %v (workers %+v), want %q", d.Verdict, d.Balanced, d.Workers, want)
	}

	none := newServer(t, hello)
	res = run(t, Config{URL: none.URL, Requests: 10, Concurrency: 2})
	if d := res.Distribution; d.Verdict != VerdictUnknown || d.NoHeader != 10 || len(d.Workers) != 0 {
		t.Errorf("no header: got %q, no_header %d, workers %v; want %q, 10, none", d.Verdict, d.NoHeader, d.Workers, VerdictUnknown)
	}
}

func TestLoadtestConfigInvalid(t *testing.T) {
	tests := []Config{
		{},
		{URL: "127.0.0.1:3000"},
		{URL: "ftp://host/"},
		{URL: "http://"},
		{URL: "http://host:99999/"},
		{URL: DefaultURL, Concurrency: -1},
		{URL: DefaultURL, Requests: -1},
		{URL: DefaultURL, Duration: -time.Second},
		{URL: DefaultURL, Requests: 10, Duration: time.Second},
		{URL: DefaultURL, Timeout: -1},
		{URL: DefaultURL, Method: "GET /"},
		{URL: DefaultURL, Header: http.Header{"Bad Name": {"x"}}},
		{URL: DefaultURL, Header: http.Header{"X-A": {"a\r\nX-Injected: 1"}}},
		{URL: DefaultURL, Header: http.Header{"Content-Length": {"3"}}},
	}
	for _, cfg := range tests {
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "loadtest: ") {
			t.Errorf("%+v: got %v, want a loadtest: error wrapping ErrInvalidConfig", cfg, err)
		}
		if _, err := Run(context.Background(), cfg, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Run(%+v): got %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestLoadtestConfigDefaults(t *testing.T) {
	tg, err := prepare(Config{URL: "http://user:pw@localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c := tg.cfg
	if c.Concurrency != DefaultConcurrency || c.Duration != DefaultDuration || c.Method != "GET" || c.Timeout != DefaultTimeout {
		t.Errorf("defaults: got %+v", c)
	}
	want := "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: herd-loadtest\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n"
	if string(tg.req) != want || tg.addr != "localhost:80" {
		t.Errorf("got request %q to %s, want %q to localhost:80", tg.req, tg.addr, want)
	}
}

func TestLoadtestProgress(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Millisecond) })
	var calls []Progress
	var inCall atomic.Bool
	res, err := Run(context.Background(), Config{URL: s.URL, Duration: 450 * time.Millisecond, Concurrency: 2}, func(p Progress) {
		if inCall.Swap(true) {
			t.Error("progress called concurrently")
		}
		calls = append(calls, p)
		inCall.Store(false)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 3 {
		t.Fatalf("progress called %d times in 450ms, want about every 100ms", len(calls))
	}
	last := calls[len(calls)-1]
	if last.Done != res.Requests || last.Duration != 450*time.Millisecond || last.Fraction() != 1 {
		t.Errorf("last progress %+v (fraction %v), want done %d and fraction 1", last, last.Fraction(), res.Requests)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Done < calls[i-1].Done {
			t.Errorf("progress went backwards: %d then %d", calls[i-1].Done, calls[i].Done)
		}
	}
	var buf strings.Builder
	bar := NewProgressBar(&buf)
	bar.Update(Progress{Done: 50, Total: 100, Elapsed: time.Second})
	bar.Clear()
	if out := buf.String(); !strings.Contains(out, " 50% 50/100 requests, 50 req/s") || !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("progress bar drew %q", out)
	}
}

// Example output is deterministic only for what does not depend on timing.
func ExampleRun() {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Id", strconv.FormatInt(n.Add(1)%2+1, 10))
		_, _ = io.WriteString(w, "hello\n")
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Config{URL: srv.URL, Requests: 100, Concurrency: 4}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("requests:", res.Requests, "failed:", res.Failed(), "200s:", res.Status[200])
	fmt.Println("workers:", res.Distribution.Verdict)
	// Output:
	// requests: 100 failed: 0 200s: 100
	// workers: balanced
}
