package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
)

// workersFigures waits until every ready worker has reported at least min
// requests in a heartbeat, and returns the workers as herd status shows them.
func workersFigures(t *testing.T, p *herdtest.Proc, workers int, min uint64) []cluster.WorkerStatus {
	t.Helper()
	var ws []cluster.WorkerStatus
	p.Eventually(20*time.Second, "every worker's heartbeat counting the requests", func() bool {
		ws = ws[:0]
		for _, w := range status(t, p).Workers {
			if w.State == cluster.StateReady && w.Requests >= min {
				ws = append(ws, w)
			}
		}
		return len(ws) == workers
	})
	return ws
}

// With --metrics false the workers count requests (recycling needs them)
// but not the per-request figures, there is no admin listener, and herd
// status still works. The same run with metrics on shows the figures the
// off case must lack.
func TestMetricsOff(t *testing.T) {
	const workers = 1 // every request reaches it, whatever the balancing policy
	for _, on := range []bool{true, false} {
		args := []string{"serve", "--workers", "1"}
		if !on {
			args = append(args, "--metrics=false")
		}
		p := herdtest.Start(t, herdtest.Options{}, args...)
		p.WaitReady(30 * time.Second)
		for range 50 {
			if code, _, body := p.Do("GET", "/", ""); code != 200 {
				t.Fatalf("metrics %v: GET / = %d %s", on, code, body)
			}
		}
		ws := workersFigures(t, p, workers, 1)
		for _, w := range ws {
			routes, hist := len(w.Routes), w.Latency.Count()
			if on && (routes == 0 || hist == 0) {
				t.Errorf("metrics on: worker %d served %d requests but reports %d routes and %d latencies", w.ID, w.Requests, routes, hist)
			}
			if !on && (routes != 0 || hist != 0) {
				t.Errorf("metrics off: worker %d reports %d routes and %d latencies (%d requests), want none: the instrumentation still runs",
					w.ID, routes, hist, w.Requests)
			}
		}
		admin := status(t, p).AdminAddr
		if on {
			p.Eventually(20*time.Second, "the admin address", func() bool { admin = status(t, p).AdminAddr; return admin != "" })
			if _, took := scrape(t, "http://"+admin); took <= 0 {
				t.Error("metrics on: no scrape")
			}
		} else {
			if admin != "" {
				t.Errorf("metrics off, yet status reports an admin address %q", admin)
			}
			if recs := p.Find(func(r herdtest.Record) bool { return r.Msg() == "admin listening" }); len(recs) > 0 {
				t.Errorf("metrics off, yet the log says %v", recs[0])
			}
			if code, out := herdCmd(t, p, "status"); code != 0 || !strings.Contains(out, "ready") {
				t.Errorf("herd status with metrics off: exit %d: %s", code, out)
			}
		}
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(30 * time.Second); code != 0 {
			t.Fatalf("metrics %v: exit code %d", on, code)
		}
	}
}

// An admin address asked for with --metrics false is refused in one line.
func TestMetricsOffWithAnAdminAddress(t *testing.T) {
	c := herdtest.Start(t, herdtest.Options{Env: []string{"METRICS=false"}}, "serve", "--admin-addr", "127.0.0.1:0")
	if code := c.Wait(20 * time.Second); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	herdtest.WaitUntil(t, 5*time.Second, "the error line read", func() bool { return strings.TrimSpace(c.Output()) != "" })
	lines := strings.Split(strings.TrimSpace(c.Output()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `invalid --admin-addr "127.0.0.1:0"`) ||
		!strings.Contains(lines[0], `METRICS "false" (from the environment)`) {
		t.Errorf("want one line naming both settings, got %q", c.Output())
	}
}
