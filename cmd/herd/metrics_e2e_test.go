package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/procstat"
)

// allMetrics is every metric herd exposes; the README lists the same.
var allMetrics = []string{
	"herd_worker_requests_total", "herd_worker_request_duration_seconds", "herd_worker_in_flight_requests",
	"herd_worker_open_connections", "herd_worker_resident_memory_bytes", "herd_worker_heap_bytes",
	"herd_worker_goroutines", "herd_worker_restarts_total", "herd_worker_state", "herd_worker_stale",
	"herd_workers_wanted", "herd_workers_ready", "herd_listen_backlog_queued", "herd_listen_backlog_limit",
	"herd_reloads_total", "herd_upgrades_total", "herd_scrape_stale_workers", "herd_balance_primary_passes", "herd_balance_switches_total",
	"herd_store_calls_total", "herd_store_call_errors_total", "herd_store_call_duration_seconds",
}

// adminURL learns the admin listener's address from the status document,
// through the control socket.
func adminURL(t *testing.T, p *herdtest.Proc) string {
	t.Helper()
	var addr string
	p.Eventually(20*time.Second, "the admin address in herd status", func() bool {
		addr = status(t, p).AdminAddr
		return addr != ""
	})
	return "http://" + addr
}

type families map[string]*dto.MetricFamily

// scrape reads /metrics and returns it parsed, and how long it took.
func scrape(t *testing.T, base string) (families, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := herdtest.Client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: status %d, err %v: %s", resp.StatusCode, err, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("scrape: parsing: %v\n%s", err, b)
	}
	return mfs, took
}

// value sums the samples of name whose labels include want (a histogram
// counts its observations).
func (f families) value(name string, want map[string]string) (float64, bool) {
	mf := f[name]
	if mf == nil {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range mf.Metric {
		for k, v := range want {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

func workerPID(t *testing.T, p *herdtest.Proc, id int) int {
	t.Helper()
	for _, w := range status(t, p).Workers {
		if w.ID == id && w.State == cluster.StateReady {
			return w.PID
		}
	}
	t.Fatalf("no ready worker %d in %+v", id, status(t, p))
	return 0
}

func TestMetricsCountersSurviveAKilledWorker(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	base := adminURL(t, p)
	const sent = 300
	for range sent / 3 {
		for _, path := range []string{"/", "/api/5", "/no-such-page"} {
			p.Do("GET", path, "")
		}
	}
	p.Eventually(20*time.Second, "every request counted in the scrape", func() bool {
		mfs, _ := scrape(t, base)
		all, _ := mfs.value("herd_worker_requests_total", nil)
		return all == sent
	})
	mfs, _ := scrape(t, base)
	if n, _ := mfs.value("herd_worker_requests_total", map[string]string{"route": "GET /api/{n}", "code": "2xx"}); n != sent/3 {
		t.Errorf("GET /api/{n} 2xx = %v, want %d", n, sent/3)
	}
	if n, _ := mfs.value("herd_worker_requests_total", map[string]string{"code": "4xx"}); n != sent/3 {
		t.Errorf("4xx responses = %v, want %d (the unknown page)", n, sent/3)
	}
	if n, _ := mfs.value("herd_worker_request_duration_seconds", nil); n != sent {
		t.Errorf("latency histogram counts %v requests, want %d", n, sent)
	}
	// The requests went over one keep-alive connection, so one worker
	// served them: that one is killed.
	id, before := "1", 0.0
	for _, w := range []string{"1", "2"} {
		if n, _ := mfs.value("herd_worker_requests_total", map[string]string{"worker": w}); n > before {
			id, before = w, n
		}
	}
	slot, _ := strconv.Atoi(id)
	victim := workerPID(t, p, slot)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Eventually(30*time.Second, "a new worker "+id+", and the crash counted", func() bool {
		mfs, _ := scrape(t, base)
		n, _ := mfs.value("herd_worker_restarts_total", map[string]string{"worker": id, "reason": "crash"})
		ready, _ := mfs.value("herd_workers_ready", nil)
		return n == 1 && ready == 2
	})
	if pid := workerPID(t, p, slot); pid == victim {
		t.Fatalf("worker %d is still pid %d", slot, pid)
	}
	mfs, _ = scrape(t, base)
	after, _ := mfs.value("herd_worker_requests_total", map[string]string{"worker": id})
	if after < before {
		t.Errorf("worker %d's request counter went backwards when its process was killed: %v, then %v", slot, before, after)
	}
	if n, _ := mfs.value("herd_worker_request_duration_seconds", map[string]string{"worker": id}); n < before {
		t.Errorf("worker %d's latency histogram went backwards: %v observations, had %v requests", slot, n, before)
	}
	// And it keeps counting from there.
	for range 20 {
		p.Do("GET", "/", "")
	}
	p.Eventually(20*time.Second, "the new requests counted on top", func() bool {
		mfs, _ := scrape(t, base)
		all, _ := mfs.value("herd_worker_requests_total", nil)
		return all >= sent+20
	})
}

func TestScrapeDoesNotWaitOnAStoppedWorker(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--worker-timeout", "60s")
	p.WaitReady(30 * time.Second)
	base := adminURL(t, p)
	victim := workerPID(t, p, 1)
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(victim, syscall.SIGCONT) })
	herdtest.WaitUntil(t, 10*time.Second, "the victim stopped", func() bool { return procstat.Stopped(victim) })
	var slowest time.Duration
	p.Eventually(30*time.Second, "the stopped worker counted stale", func() bool {
		mfs, took := scrape(t, base)
		slowest = max(slowest, took)
		stale, _ := mfs.value("herd_scrape_stale_workers", nil)
		w1, _ := mfs.value("herd_worker_stale", map[string]string{"worker": "1"})
		w2, _ := mfs.value("herd_worker_stale", map[string]string{"worker": "2"})
		return stale == 1 && w1 == 1 && w2 == 0
	})
	// The worker timeout is a minute: a scrape that waited for the
	// stopped worker would take that long.
	for range 5 {
		_, took := scrape(t, base)
		slowest = max(slowest, took)
	}
	if slowest > 5*time.Second {
		t.Errorf("a scrape took %s with a stopped worker, want it answered from what the primary holds", slowest)
	}
	if procstat.State(victim) != 'T' {
		t.Fatalf("the victim is no longer stopped; the test proved nothing")
	}
}

func TestEveryMetricIsExposedAndDocumented(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	base := adminURL(t, p)
	// A shared-store call, answered by the primary.
	if code, _, b := p.Do("POST", "/cluster/counter", ""); code != 200 {
		t.Fatalf("POST /cluster/counter: %d %s", code, b)
	}
	p.Do("GET", "/", "")
	var mfs families
	p.Eventually(20*time.Second, "every metric in the scrape", func() bool {
		mfs, _ = scrape(t, base)
		for _, name := range allMetrics {
			if mfs[name] == nil {
				return false
			}
		}
		return true
	})
	for name := range mfs {
		if !slices.Contains(allMetrics, name) {
			t.Errorf("the scrape has %s, which this test (and so maybe the README) does not list", name)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(herd_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	for _, name := range allMetrics {
		if !documented[name] {
			t.Errorf("README.md does not list %s", name)
		}
	}

	// OpenMetrics when the scraper asks for it.
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
	resp, err := herdtest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type %q, want OpenMetrics", ct)
	}
	if !strings.HasSuffix(string(b), "# EOF\n") {
		t.Errorf("an OpenMetrics exposition ends with # EOF; got ...%q", b[max(0, len(b)-40):])
	}
}

// post sends an admin action with token (none if empty).
func post(t *testing.T, url, token string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("POST %s: status %d, body not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func TestAdminActionsNeedTheToken(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	base := adminURL(t, p)
	rec := p.WaitMsg(10*time.Second, "admin listening")
	path := rec.Str("token_file")
	if path == "" {
		t.Fatalf("the admin log line names no token file: %v", rec)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	token := strings.TrimSpace(string(b))

	for _, tok := range []string{"", "wrong"} {
		code, body := post(t, base+"/api/reload", tok)
		if code != http.StatusUnauthorized || !strings.Contains(body["error"].(string), path) {
			t.Errorf("reload with token %q: %d %v, want 401 naming the token file", tok, code, body)
		}
	}
	if code, body := post(t, base+"/api/scale?n=zero", token); code != http.StatusBadRequest {
		t.Errorf("scale to zero: %d %v, want 400", code, body)
	}
	before := readyPIDs(status(t, p))
	code, body := post(t, base+"/api/reload", token)
	if code != 200 {
		t.Fatalf("reload with the token: %d %v", code, body)
	}
	after := readyPIDs(status(t, p))
	for pid := range before {
		if _, ok := after[pid]; ok {
			t.Errorf("worker pid %d survived the reload: before %v, after %v", pid, before, after)
		}
	}
	mfs, _ := scrape(t, base)
	if n, _ := mfs.value("herd_reloads_total", map[string]string{"outcome": "ok"}); n != 1 {
		t.Errorf("herd_reloads_total{outcome=ok} = %v, want 1", n)
	}
	if n, _ := mfs.value("herd_worker_restarts_total", map[string]string{"reason": "reload"}); n != 2 {
		t.Errorf("restarts by reload = %v, want 2", n)
	}
	old := workerPID(t, p, 2)
	if code, body := post(t, base+"/api/workers/2/restart", token); code != 200 {
		t.Fatalf("restart worker 2: %d %v", code, body)
	}
	if pid := workerPID(t, p, 2); pid == old {
		t.Errorf("worker 2 is still pid %d after its restart", pid)
	}
	if code, body := post(t, base+"/api/workers/9/restart", token); code != http.StatusConflict {
		t.Errorf("restart of a worker that does not exist: %d %v, want 409", code, body)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the token file is still there after the primary exited: %v", err)
	}
}

func TestAdminOffAndOnANonLoopbackAddressWithoutAToken(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1", "--admin-addr", "off")
	p.WaitReady(30 * time.Second)
	if a := status(t, p).AdminAddr; a != "" {
		t.Errorf("admin off, yet status reports an admin address %q", a)
	}
	if code, _, _ := p.Do("GET", "/", ""); code != 200 {
		t.Errorf("GET / with the admin listener off: %d", code)
	}

	q := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1", "--admin-addr", "0.0.0.0:0")
	q.WaitReady(30 * time.Second)
	addr := status(t, q).AdminAddr
	if addr == "" {
		q.Eventually(10*time.Second, "admin address", func() bool { addr = status(t, q).AdminAddr; return addr != "" })
	}
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	base := "http://127.0.0.1:" + port
	if _, took := scrape(t, base); took <= 0 {
		t.Fatal("no scrape")
	}
	code, body := post(t, base+"/api/reload", "")
	if code != http.StatusForbidden || !strings.Contains(body["error"].(string), "no admin token is configured") {
		t.Errorf("reload on a non-loopback listener with no token: %d %v, want 403 saying why", code, body)
	}
}

func TestAdminAddrIsValidated(t *testing.T) {
	for _, bad := range []string{"9300", "host:port", "127.0.0.1:70000", "example.com:9300"} {
		c := herdtest.Start(t, herdtest.Options{}, "serve", "--admin-addr", bad)
		if code := c.Wait(20 * time.Second); code != exitUsage {
			t.Errorf("--admin-addr %q: exit %d, want %d", bad, code, exitUsage)
		}
		herdtest.WaitUntil(t, 5*time.Second, "the error line read", func() bool { return strings.TrimSpace(c.Output()) != "" })
		lines := strings.Split(strings.TrimSpace(c.Output()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("invalid --admin-addr %q", bad)) {
			t.Errorf("--admin-addr %q: want one line naming the setting, got %q", bad, c.Output())
		}
	}
}
