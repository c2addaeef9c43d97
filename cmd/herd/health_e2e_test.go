package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
)

// starveDescriptors lowers the descriptor limit of the running process pid
// (a worker) to what it holds now plus spare, as `prlimit --nofile` does.
func starveDescriptors(t *testing.T, pid, spare int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("counting worker %d's descriptors: %v", pid, err)
	}
	limit := uint64(len(fds) + spare) //nolint:gosec // G115: a count of open files
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("prlimit --nofile=%d --pid %d: %v", limit, pid, err)
	}
	return int(limit) //nolint:gosec // G115: small
}

// workerState is the state of pid in herd status ("" if it is not there).
func workerState(s cluster.Status, pid int) string {
	for _, w := range s.Workers {
		if w.PID == pid {
			return w.State
		}
	}
	return ""
}

// slotPID is the pid serving worker id, not draining (0: none).
func slotPID(s cluster.Status, id int) int {
	for _, w := range s.Workers {
		if w.ID == id && w.State != cluster.StateDraining {
			return w.PID
		}
	}
	return 0
}

// fillUntilUnhealthy opens idle keep-alive connections (each served one
// request) until herd status shows pid unhealthy, at most max of them.
func fillUntilUnhealthy(t *testing.T, p *herdtest.Proc, pid, max int) (conns []*rawConn, onIt int) {
	t.Helper()
	opened := 0
	defer func() {
		if t.Failed() {
			t.Logf("%d idle connections opened, %d on pid %d", opened, onIt, pid)
		}
	}()
	for opened < max {
		rc := dialFrom(t, p.Addr, "")
		conns = append(conns, rc)
		_, got, err := rc.get("/pid")
		if err != nil {
			t.Fatalf("idle connection %d: %v", opened+1, err)
		}
		opened++
		if got == pid {
			onIt++
		}
		if opened%5 == 0 && workerState(controlStatus(t, p), pid) == cluster.StateUnhealthy {
			return conns, onIt
		}
	}
	var st string
	p.Eventually(10*time.Second, fmt.Sprintf("worker pid %d shown unhealthy after %d connections (%d on it)", pid, opened, onIt), func() bool {
		st = workerState(controlStatus(t, p), pid)
		return st == cluster.StateUnhealthy
	})
	return conns, onIt
}

// freshAnswers sends n requests, each on a new connection, and fails the
// test if one takes longer than within or is answered by pid.
func freshAnswers(t *testing.T, p *herdtest.Proc, n, pid int, within time.Duration) time.Duration {
	t.Helper()
	var worst time.Duration
	for i := range n {
		start := time.Now()
		rc := dialFrom(t, p.Addr, "")
		_, got, err := rc.get("/healthz")
		took := time.Since(start)
		rc.c.Close()
		if err != nil {
			t.Fatalf("fresh request %d with a worker unhealthy: %v", i+1, err)
		}
		if got == pid {
			t.Fatalf("fresh request %d was answered by the unhealthy worker (pid %d)", i+1, pid)
		}
		if took > within {
			t.Fatalf("fresh request %d took %v with a worker unhealthy, want at most %v", i+1, took, within)
		}
		worst = max(worst, took)
	}
	return worst
}

// A worker that runs out of descriptors (its limit lowered from outside,
// the way prlimit does, while clients hold idle connections to it) reports
// that it cannot accept; herd status, /cluster/workers and the metrics show
// it unhealthy, least-conn passes it nothing new (fresh requests are
// answered by the other worker at once), and once its connections close it
// is ready again and gets connections again.
func TestWorkerOutOfDescriptorsIsUnhealthyAndSkipped(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--balance", "least-conn", "--worker-timeout", "60s")
	p.WaitReady(30 * time.Second)
	s := controlStatus(t, p)
	w1 := slotPID(s, 1)
	limit := starveDescriptors(t, w1, 16)

	idle, onIt := fillUntilUnhealthy(t, p, w1, 200)
	if onIt == 0 {
		t.Fatalf("none of %d connections reached worker 1", len(idle))
	}
	worst := freshAnswers(t, p, 20, w1, 5*time.Second)

	code, _, body := p.Do("GET", "/cluster/workers", "")
	var doc struct {
		Workers []app.WorkerInfo `json:"workers"`
	}
	if err := json.Unmarshal(body, &doc); code != 200 || err != nil {
		t.Fatalf("/cluster/workers: %d %v: %s", code, err, body)
	}
	var st string
	for _, w := range doc.Workers {
		if w.PID == w1 {
			st = w.State
		}
	}
	if st != cluster.StateUnhealthy {
		t.Errorf("/cluster/workers shows worker 1 as %q, want %q: %s", st, cluster.StateUnhealthy, body)
	}
	mfs, _ := scrape(t, adminURL(t, p))
	if v, ok := mfs.value("herd_worker_state", map[string]string{"worker": "1", "state": cluster.StateUnhealthy}); !ok || v != 1 {
		t.Errorf(`herd_worker_state{worker="1",state="unhealthy"} = %v (found %v), want 1`, v, ok)
	}
	if v, _ := mfs.value("herd_workers_ready", nil); v != 1 {
		t.Errorf("herd_workers_ready = %v with one of 2 workers unhealthy, want 1", v)
	}
	logged := p.Find(func(r herdtest.Record) bool { return strings.HasPrefix(r.Msg(), "worker cannot accept connections") })
	if len(logged) != 1 || logged[0].Int("pid") != w1 {
		t.Errorf("log lines saying worker 1 cannot accept: %v, want one naming pid %d", logged, w1)
	}

	// Its idle connections close: it accepts again, and is chosen again.
	for _, rc := range idle {
		rc.c.Close()
	}
	p.Eventually(20*time.Second, "worker 1 ready again once its connections closed", func() bool {
		return workerState(controlStatus(t, p), w1) == cluster.StateReady
	})
	p.Eventually(20*time.Second, "a fresh request answered by worker 1 again", func() bool {
		rc := dialFrom(t, p.Addr, "")
		defer rc.c.Close()
		_, got, err := rc.get("/pid")
		return err == nil && got == w1
	})
	if s := controlStatus(t, p); slotPID(s, 1) != w1 {
		t.Errorf("worker 1 was replaced (pid %d, was %d); with --worker-timeout 60s it should have recovered in place", slotPID(s, 1), w1)
	}
	t.Logf("chaos: worker out of descriptors (least-conn): worker 1 (pid %d) at --nofile %d: unhealthy after %d idle connections (%d on it); 20 fresh requests answered by worker 2, slowest %v; ready again once they closed",
		w1, limit, len(idle), onIt, worst.Round(time.Millisecond))
}

// Under --balance shared the primary cannot steer connections away from a
// worker; a failing accept leaves the connection in the kernel's queue,
// where the other worker takes it, and the unhealthy worker is recycled,
// replacement first, once it has been unhealthy for --worker-timeout.
func TestWorkerOutOfDescriptorsIsRecycledUnderSharedBalance(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--balance", "shared", "--worker-timeout", "4s")
	p.WaitReady(30 * time.Second)
	w1 := slotPID(controlStatus(t, p), 1)
	starveDescriptors(t, w1, 16)

	idle, onIt := fillUntilUnhealthy(t, p, w1, 400)
	worst := freshAnswers(t, p, 20, w1, 5*time.Second)

	var repl int
	p.Eventually(30*time.Second, "worker 1 replaced by a ready process", func() bool {
		s := controlStatus(t, p)
		repl = slotPID(s, 1)
		return repl != 0 && repl != w1 && workerState(s, repl) == cluster.StateReady
	})
	herdtest.WaitUntil(t, 30*time.Second, "the unhealthy worker's exit", func() bool { return !herdtest.Alive(w1) })
	rec := p.WaitLog(5*time.Second, "the replacement's reason", func(r herdtest.Record) bool {
		return r.Msg() == "replacing worker" && r.Int("pid") == w1
	})
	if !strings.Contains(rec.Str("reason"), "cannot accept connections") {
		t.Errorf("replacing worker 1 for %q, want a reason saying it cannot accept connections", rec.Str("reason"))
	}
	p.Eventually(20*time.Second, "a fresh request answered by worker 1's replacement", func() bool {
		rc := dialFrom(t, p.Addr, "")
		defer rc.c.Close()
		_, got, err := rc.get("/pid")
		return err == nil && got == repl
	})
	t.Logf("chaos: worker out of descriptors (shared): worker 1 (pid %d) at --nofile of its open descriptors + 16: unhealthy after %d idle connections (%d on it); 20 fresh requests answered by worker 2, slowest %v; recycled after --worker-timeout 4s (new pid %d)",
		w1, len(idle), onIt, worst.Round(time.Millisecond), repl)
}
