package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}
	cases := []struct {
		streak int
		want   time.Duration
	}{
		{0, 0}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{9, 25600 * time.Millisecond}, {10, 30 * time.Second}, {60, 30 * time.Second},
	}
	for _, c := range cases {
		if got := b.delay(c.streak); got != c.want {
			t.Errorf("delay(%d) = %v, want %v", c.streak, got, c.want)
		}
	}
}

// fakeProc is a worker process that exists only in the test.
type fakeProc struct {
	id, pid         int
	drained, killed bool
}

func (f *fakeProc) drain(time.Duration) error { f.drained = true; return nil }
func (f *fakeProc) kill() error               { f.killed = true; return nil }

// harness drives a primary's handlers directly, with a fake clock and fake
// processes, so rare paths run in microseconds and deterministically.
type harness struct {
	t     *testing.T
	p     *primary
	clock time.Time
	procs map[int]*fakeProc // by pid
	next  int
	logs  *bytes.Buffer
}

func newHarness(t *testing.T, workers int) *harness {
	return newHarnessWith(t, Options{Workers: workers})
}

// newHarnessWith is newHarness with more options; Logger is the harness's.
func newHarnessWith(t *testing.T, opts Options) *harness {
	h := &harness{t: t, clock: time.Unix(1_000_000, 0), procs: map[int]*fakeProc{}, next: 100, logs: &bytes.Buffer{}}
	workers := opts.Workers
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	opts = opts.withDefaults()
	h.p = newPrimary(opts, func(p *primary, id int) (int, handle, error) {
		h.next++
		f := &fakeProc{id: id, pid: h.next}
		h.procs[f.pid] = f
		return f.pid, f, nil
	})
	h.p.now = func() time.Time { return h.clock }
	for id := 1; id <= workers; id++ {
		h.p.startWorker(id)
	}
	return h
}

func (h *harness) advance(d time.Duration) { h.clock = h.clock.Add(d) }

// live returns the fake process currently holding worker id.
func (h *harness) live(id int) *fakeProc {
	h.t.Helper()
	pr := h.p.live(id)
	if pr == nil {
		h.t.Fatalf("no live process for worker %d", id)
	}
	return h.procs[pr.pid]
}

func (h *harness) readyAll() {
	for pid, pr := range h.p.procs {
		if pr.state == StateStarting {
			h.p.handle(evReady{pid})
		}
	}
}

func (h *harness) exit(f *fakeProc, code int) { h.p.handle(evExited{pid: f.pid, code: code}) }

func TestCrashLoopBacksOffAndStableRunResets(t *testing.T) {
	h := newHarness(t, 1)
	// Dies before ever becoming ready, three times in a row.
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		f := h.live(1)
		h.advance(50 * time.Millisecond)
		h.exit(f, 1)
		s := h.p.slots[1]
		if !s.waiting || s.streak != i+1 {
			t.Fatalf("after early death %d: waiting=%v streak=%d, want a backoff with streak %d", i+1, s.waiting, s.streak, i+1)
		}
		if !strings.Contains(h.logs.String(), "next_try_in="+want.String()) {
			t.Fatalf("after early death %d the log does not announce the next try in %v:\n%s", i+1, want, h.logs)
		}
		if h.p.live(1) != nil {
			t.Fatal("a replacement started before its backoff delay ended")
		}
		h.p.handle(evStart{1}) // the timer fired
	}
	// The fourth one becomes ready and runs for longer than StableAfter.
	h.readyAll()
	f := h.live(1)
	h.advance(DefaultStableAfter + time.Second)
	h.exit(f, 2)
	s := h.p.slots[1]
	if s.streak != 0 || s.waiting {
		t.Fatalf("after a stable run: streak=%d waiting=%v, want an immediate restart", s.streak, s.waiting)
	}
	if h.p.live(1) == nil {
		t.Fatal("a worker that died after a stable run was not replaced at once")
	}
	if s.restarts != 4 {
		t.Errorf("restarts = %d, want 4", s.restarts)
	}
}

func TestIntentionalStopsAreNotRestarted(t *testing.T) {
	h := newHarness(t, 3)
	h.readyAll()
	h.p.scale(1)
	for _, id := range []int{2, 3} {
		var f *fakeProc
		for _, fp := range h.procs {
			if fp.id == id {
				f = fp
			}
		}
		if !f.drained {
			t.Fatalf("worker %d was not drained on scale down", id)
		}
		h.exit(f, 0)
	}
	if len(h.p.procs) != 1 {
		t.Fatalf("after scaling to 1: %d processes, want 1", len(h.p.procs))
	}
	h.p.scale(2)
	if h.p.live(2) == nil {
		t.Fatal("scaling up did not start worker 2")
	}
}

func TestShutdownDrainsEveryWorkerAndForceKillsOnSecondInterrupt(t *testing.T) {
	h := newHarness(t, 2)
	h.readyAll()
	h.p.handle(evSignal{syscall.SIGINT})
	for _, f := range h.procs {
		if !f.drained || f.killed {
			t.Fatalf("worker %d after SIGINT: drained=%v killed=%v, want drained only", f.id, f.drained, f.killed)
		}
	}
	first := h.procs[101]
	h.exit(first, 1) // even a failing exit during shutdown is not restarted
	if h.p.live(first.id) != nil || h.p.slots[first.id].waiting {
		t.Fatal("a worker that exited during shutdown was restarted")
	}
	h.p.handle(evSignal{syscall.SIGINT})
	if !h.procs[102].killed {
		t.Fatal("second SIGINT did not kill the remaining worker")
	}
}

func TestShutdownKillsWorkersPastTheDeadline(t *testing.T) {
	h := newHarness(t, 1)
	h.readyAll()
	h.p.shutdown("test")
	h.advance(h.p.opts.ShutdownTimeout)
	h.p.checkTimeouts()
	if h.live0().killed {
		t.Fatal("killed at the shutdown timeout itself; workers get their full timeout first")
	}
	h.advance(3 * time.Second)
	h.p.checkTimeouts()
	if !h.live0().killed {
		t.Fatal("a worker still draining past the deadline was not killed")
	}
}

func (h *harness) live0() *fakeProc {
	for _, f := range h.procs {
		return f
	}
	return nil
}

func TestHungAndNeverReadyWorkersAreKilled(t *testing.T) {
	h := newHarness(t, 2)
	h.p.handle(evReady{101}) // worker 1 ready; worker 2 never becomes ready
	h.advance(h.p.opts.ReadyTimeout + time.Second)
	h.p.handle(evBeat{pid: 101}) // worker 1 keeps beating
	h.p.checkTimeouts()
	if h.procs[101].killed {
		t.Fatal("a ready, heartbeating worker was killed")
	}
	if !h.procs[102].killed {
		t.Fatal("a worker that never became ready within ReadyTimeout was not killed")
	}
	h.advance(h.p.opts.WorkerTimeout + time.Second) // worker 1 goes silent
	h.p.checkTimeouts()
	if !h.procs[101].killed {
		t.Fatal("a worker silent for longer than WorkerTimeout was not killed")
	}
	if !strings.Contains(h.logs.String(), "worker stopped responding") {
		t.Errorf("the log does not say why the hung worker was killed:\n%s", h.logs)
	}
}

func TestStatusListsWorkersInOrder(t *testing.T) {
	h := newHarness(t, 3)
	h.readyAll()
	h.p.handle(evBeat{pid: 102, hb: Heartbeat{Requests: 42, RSS: 1 << 20}})
	s := h.p.status()
	if s.Want != 3 || len(s.Workers) != 3 {
		t.Fatalf("status: want 3 workers, got %+v", s)
	}
	for i, w := range s.Workers {
		if w.ID != i+1 || w.State != StateReady {
			t.Errorf("worker %d: %+v", i, w)
		}
	}
	if s.Workers[1].Requests != 42 {
		t.Errorf("worker 2 requests = %d, want the heartbeat's 42", s.Workers[1].Requests)
	}
}
