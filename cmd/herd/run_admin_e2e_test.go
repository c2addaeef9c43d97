package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// exampleNamed returns the example program called name.
func exampleNamed(t *testing.T, name string) runExample {
	t.Helper()
	for _, ex := range runExamples(t) {
		if ex.name == name {
			return ex
		}
	}
	t.Fatalf("no example %q", name)
	return runExample{}
}

// herd run has serve's admin listener: /metrics shows the foreign
// program's workers (state, restarts by reason, the RSS the primary samples
// from /proc, workers wanted and ready, the accept backlog) and the
// dashboard answers; per-request figures stay at zero, as herd does not see
// the program's requests.
func TestRunAdminMetricsAndDashboard(t *testing.T) {
	ex := exampleNamed(t, "gofd")
	p := startRun(t, []string{"--ready-probe", ex.ready}, ex.cmd...)
	p.WaitReady(60 * time.Second)
	started := time.Now() // every worker is ready from here on
	base := adminURL(t, p)

	// RSS comes from the primary's own sampling, every heartbeat interval.
	p.Eventually(30*time.Second, "both workers ready, with their RSS, in the scrape", func() bool {
		mfs, _ := scrape(t, base)
		ready, _ := mfs.value("herd_workers_ready", nil)
		wanted, _ := mfs.value("herd_workers_wanted", nil)
		rss1, _ := mfs.value("herd_worker_resident_memory_bytes", map[string]string{"worker": "1"})
		rss2, _ := mfs.value("herd_worker_resident_memory_bytes", map[string]string{"worker": "2"})
		return ready == 2 && wanted == 2 && rss1 > 1<<20 && rss2 > 1<<20
	})
	mfs, _ := scrape(t, base)
	for _, w := range []string{"1", "2"} {
		if n, _ := mfs.value("herd_worker_state", map[string]string{"worker": w, "state": "ready"}); n != 1 {
			t.Errorf("herd_worker_state{worker=%q,state=\"ready\"} = %v, want 1", w, n)
		}
	}
	if n, ok := mfs.value("herd_listen_backlog_limit", nil); !ok || n <= 0 {
		t.Errorf("herd_listen_backlog_limit = %v (present %v), want the socket's backlog", n, ok)
	}

	// A program that sends no heartbeat (no WATCHDOG=1) has none to miss:
	// past the staleness bound (3 heartbeat intervals) it is not stale.
	time.Sleep(time.Until(started.Add(4 * time.Second)))
	mfs, _ = scrape(t, base)
	if n, ok := mfs.value("herd_balance_primary_passes", map[string]string{"policy": "shared"}); !ok || n != 0 {
		t.Errorf("herd_balance_primary_passes = %v (present %v), want 0 with policy shared: herd run's workers accept themselves", n, ok)
	}
	if n, ok := mfs.value("herd_scrape_stale_workers", nil); !ok || n != 0 {
		t.Errorf("herd_scrape_stale_workers = %v (present %v), want 0: herd run's workers send no heartbeats", n, ok)
	}

	// Requests to the program do not show: herd does not see them.
	for range 10 {
		getPID(t, p.URL)
	}
	mfs, _ = scrape(t, base)
	if n, _ := mfs.value("herd_worker_requests_total", nil); n != 0 {
		t.Errorf("herd_worker_requests_total = %v under herd run, want 0 (herd does not see a foreign program's requests)", n)
	}

	// The dashboard answers.
	resp, err := herdtest.Client.Get(base + "/")
	if err != nil {
		t.Fatalf("GET the dashboard: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Errorf("GET the dashboard: status %d, %d bytes; want 200 and an HTML page", resp.StatusCode, len(body))
	}

	// A SIGKILLed worker is counted as a crash and replaced.
	victim := workerPID(t, p, 1)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Eventually(60*time.Second, "worker 1 replaced, and the crash counted", func() bool {
		mfs, _ := scrape(t, base)
		crashes, _ := mfs.value("herd_worker_restarts_total", map[string]string{"worker": "1", "reason": "crash"})
		ready, _ := mfs.value("herd_workers_ready", nil)
		return crashes == 1 && ready == 2
	})
	if pid := workerPID(t, p, 1); pid == victim {
		t.Errorf("worker 1 is still pid %d after SIGKILL", pid)
	}
	mfs, _ = scrape(t, base)
	if n, _ := mfs.value("herd_worker_restarts_total", map[string]string{"worker": "2"}); n != 0 {
		t.Errorf("worker 2 restarts = %v, want 0 (only worker 1 was killed)", n)
	}
}

// --admin-addr off leaves herd run without an admin listener, and a bad
// --admin-addr stops it with one line naming the setting.
func TestRunAdminAddrOffAndValidated(t *testing.T) {
	ex := exampleNamed(t, "gofd")
	p := startRun(t, []string{"--ready-probe", ex.ready, "--admin-addr", "off"}, ex.cmd...)
	p.WaitReady(60 * time.Second)
	if a := status(t, p).AdminAddr; a != "" {
		t.Errorf("--admin-addr off, yet herd status reports an admin address %q", a)
	}

	for _, bad := range []string{"9300", "127.0.0.1:70000"} {
		c := herdtest.Start(t, herdtest.Options{NoDefaults: true}, "run", "--port", "0", "--host", "127.0.0.1", "--admin-addr", bad, "--", ex.cmd[0])
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

// herd scale under herd run: 2 → 3 → 1, each step exits 0 with that many
// ready workers of distinct pids, and the scaled-away programs exit.
func TestRunScale(t *testing.T) {
	ex := exampleNamed(t, "python")
	p := startRun(t, []string{"--ready-probe", ex.ready}, ex.cmd...)
	p.WaitReady(60 * time.Second)
	prev := workerPIDs(t, p)
	if len(prev) != 2 {
		t.Fatalf("herd status: ready workers %v, want 2", prev)
	}
	for _, n := range []int{3, 1} {
		code, out := herdCmd(t, p, "scale", strconv.Itoa(n))
		if code != 0 {
			t.Fatalf("herd scale %d: exit %d: %s", n, code, out)
		}
		now := workerPIDs(t, p) // distinct pids by construction: a set
		if len(now) != n {
			t.Fatalf("after herd scale %d: ready workers %v, want %d", n, now, n)
		}
		if ids := readyPIDs(status(t, p)); len(ids) != n {
			t.Fatalf("after herd scale %d: ready worker slots %v, want %d", n, ids, n)
		}
		if n > len(prev) {
			for pid := range prev {
				if !now[pid] {
					t.Errorf("herd scale %d replaced worker pid %d; scaling up should only add workers (before %v, after %v)", n, pid, prev, now)
				}
			}
		}
		for pid := range prev {
			if now[pid] {
				continue
			}
			p.Eventually(30*time.Second, fmt.Sprintf("scaled-away program pid %d to exit", pid), func() bool {
				return !herdtest.Alive(pid)
			})
		}
		for pid := range now {
			if !herdtest.Alive(pid) {
				t.Errorf("after herd scale %d: ready worker pid %d is not alive", n, pid)
			}
		}
		prev = now
	}
	// The one worker left serves.
	var last int
	for pid := range prev {
		last = pid
	}
	if pid := getPID(t, p.URL); pid != last {
		t.Errorf("/pid answered %d, want the one worker left, %d", pid, last)
	}
}
