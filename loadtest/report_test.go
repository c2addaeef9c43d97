package loadtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mixedResult runs 100 requests against a server answering 503 to one in
// ten, with ids of two workers.
func mixedResult(t *testing.T) *Result {
	t.Helper()
	var n atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("X-Worker-Id", strconv.FormatInt(i%2+1, 10))
		if i%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte("0123456789"))
	})
	return run(t, Config{URL: s.URL, Requests: 100, Concurrency: 4})
}

func TestLoadtestWriteText(t *testing.T) {
	res := mixedResult(t)
	var plain, tty strings.Builder
	if err := res.WriteText(&plain, false); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteText(&tty, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"GET " + res.Config.URL + " · 4 connections · keep-alive · 100 requests\n",
		"Requests  100 in ",
		" · 90 succeeded · 10 failed · 1000 B of response bodies\n",
		"Rate      ",
		" req/s (succeeded requests only; ",
		"Status    200: 90 · 503: 10\n",
		"Errors    server: connect 0 · timeout 0 · reset 0 · other 0 · non-2xx 10\n",
		"          client: 0 (",
		"p99.9",
		"Workers   balanced: every worker within ±10% of the mean share (45%–55%); Jain's fairness index 1.000 over 2 workers\n",
	} {
		if !strings.Contains(plain.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, plain.String())
		}
	}
	if !hasFieldsLine(plain.String(), "worker 1 50 50.0%") || !hasFieldsLine(plain.String(), "worker 2 50 50.0%") {
		t.Errorf("text report lacks the per-worker lines:\n%s", plain.String())
	}
	if strings.Contains(plain.String(), "histogram") || strings.ContainsRune(plain.String(), '█') {
		t.Errorf("piped report has a histogram:\n%s", plain.String())
	}
	if !strings.Contains(tty.String(), "Latency histogram\n") || !strings.ContainsRune(tty.String(), '█') {
		t.Errorf("terminal report lacks the histogram:\n%s", tty.String())
	}
	// The histogram rows add up to all responses.
	var sum float64
	for _, line := range strings.Split(tty.String(), "\n") {
		if strings.HasSuffix(line, "%") && strings.Contains(line, " – ") {
			f := strings.Fields(line)
			p, err := strconv.ParseFloat(strings.TrimSuffix(f[len(f)-1], "%"), 64)
			if err != nil {
				t.Fatalf("histogram row %q: %v", line, err)
			}
			sum += p
		}
	}
	if sum < 99 || sum > 101 {
		t.Errorf("histogram rows add up to %.1f%%, want 100%%:\n%s", sum, tty.String())
	}
}

// hasFieldsLine reports whether text has a line made of want's fields,
// whatever the spacing.
func hasFieldsLine(text, want string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.Join(strings.Fields(line), " ") == want {
			return true
		}
	}
	return false
}

func TestLoadtestWriteTextErrorsAndInterrupt(t *testing.T) {
	res := run(t, Config{URL: deadURL(t), Requests: 3, Concurrency: 1})
	res.Interrupted = true
	var b strings.Builder
	_ = res.WriteText(&b, true)
	for _, want := range []string{"interrupted after", "connect 3", "first connect error: ", "Latency   no responses", VerdictUnknown, "ALL 3 REQUESTS FAILED"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLoadtestJSON(t *testing.T) {
	res := mixedResult(t)
	b, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, b)
	}
	for _, k := range []string{"url", "method", "concurrency", "keepalive", "target_requests", "target_duration_s",
		"duration_s", "interrupted", "requests", "succeeded", "failed", "rps", "completed_rps", "bytes_read", "latency_ms", "status", "errors", "workers"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q:\n%s", k, b)
		}
	}
	var rep JSONReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 100 || rep.Succeeded != 90 || rep.Failed != 10 || rep.Status["503"] != 10 || rep.Errors.Non2xx != 10 {
		t.Errorf("counts: got %+v", rep)
	}
	if rep.Workers.Requests["1"] != 50 || rep.Workers.Fairness == nil || *rep.Workers.Fairness != 1 || rep.Workers.Verdict != "balanced" ||
		rep.Workers.Balanced == nil || !*rep.Workers.Balanced || rep.Workers.Tolerance != 0.1 {
		t.Errorf("workers: got %+v", rep.Workers)
	}
	// rps counts the 90 successes, completed_rps all 100.
	if ratio := rep.RPS / rep.CompletedRPS; ratio < 0.89 || ratio > 0.91 || rep.Errors.Client != 0 || rep.Mix != nil {
		t.Errorf("rps %v completed_rps %v (ratio %v, want 0.9), client errors %d, mix %v (want none without --mix)",
			rep.RPS, rep.CompletedRPS, ratio, rep.Errors.Client, rep.Mix)
	}
	l := rep.Latency
	if l.Min <= 0 || l.P50 < l.Min || l.P999 < l.P99 || l.Max < l.P999 || rep.RPS <= 0 || rep.BytesRead != 1000 {
		t.Errorf("latency/rps/bytes: got %+v rps %v bytes %d", l, rep.RPS, rep.BytesRead)
	}
	if rep.TargetRequests != 100 || rep.TargetDuration != 0 || rep.Concurrency != 4 || !rep.KeepAlive || rep.Method != "GET" {
		t.Errorf("config echo: got %+v", rep)
	}

	// Unknown distribution: fairness is null, not a made-up number.
	none := newServer(t, hello)
	res = run(t, Config{URL: none.URL, Duration: 100 * time.Millisecond, Concurrency: 1})
	b, _ = res.JSON()
	if !strings.Contains(string(b), `"fairness": null`) || !strings.Contains(string(b), VerdictUnknown) {
		t.Errorf("no-header JSON:\n%s", b)
	}
}

func TestLoadtestFmtDur(t *testing.T) {
	tests := map[time.Duration]string{
		0:                        "0",
		850 * time.Microsecond:   "850µs",
		1234 * time.Microsecond:  "1.23ms",
		45678 * time.Microsecond: "45.7ms",
		456 * time.Millisecond:   "456ms",
		2500 * time.Millisecond:  "2.50s",
	}
	for d, want := range tests {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}
