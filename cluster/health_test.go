package cluster

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// withDispatcher gives the harness's primary a real dispatcher (no
// listener: the test asks it to choose, it accepts nothing) with a real
// connection socket per process started so far.
func (h *harness) withDispatcher(policy Balance) *dispatcher {
	h.t.Helper()
	d := newDispatcher(nil, policy, 0, slog.New(slog.DiscardHandler))
	h.p.disp = d
	for pid, pr := range h.p.procs {
		uc, wf, err := connPair()
		if err != nil {
			h.t.Fatal(err)
		}
		d.add(pr.id, pid, uc)
		h.t.Cleanup(func() { wf.Close() }) // EOF ends the dispatcher's reader
	}
	return d
}

// chosen is the pid the dispatcher would pass the next connection to (0:
// none).
func chosen(d *dispatcher) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.chooseLocked("", nil); w != nil {
		return w.pid
	}
	return 0
}

func (h *harness) state(pid int) string {
	h.t.Helper()
	for _, w := range h.p.status().Workers {
		if w.PID == pid {
			return w.State
		}
	}
	h.t.Fatalf("pid %d not in the status", pid)
	return ""
}

func (h *harness) acceptBeat(f *fakeProc, failing bool) {
	hb := Heartbeat{AcceptFailing: failing}
	if failing {
		hb.AcceptErrors, hb.AcceptError = 3, "accept4: too many open files"
	}
	h.p.handle(evBeat{pid: f.pid, hb: hb})
}

// A worker that reports it cannot accept is shown as unhealthy, gets no
// new connection, and is back (shown ready, chosen again) once it reports
// it can.
func TestUnhealthyWorkerIsShownAndSkipped(t *testing.T) {
	h := newHarnessWith(t, Options{Workers: 2, WorkerTimeout: time.Minute})
	d := h.withDispatcher(BalanceLeastConn)
	h.readyAll()
	w1, w2 := h.live(1), h.live(2)
	picked := map[int]bool{}
	for range 4 {
		picked[chosen(d)] = true
	}
	if !picked[w1.pid] || !picked[w2.pid] {
		t.Fatalf("two healthy workers: the dispatcher chose %v, want both %d and %d in turn", picked, w1.pid, w2.pid)
	}

	h.acceptBeat(w1, true)
	if got := h.state(w1.pid); got != StateUnhealthy {
		t.Fatalf("worker 1 reported it cannot accept: status shows %q, want %q", got, StateUnhealthy)
	}
	if got := h.state(w2.pid); got != StateReady {
		t.Fatalf("worker 2: status shows %q, want %q", got, StateReady)
	}
	m := h.p.metrics()
	if m.Ready != 1 || m.Workers[0].State != StateUnhealthy {
		t.Fatalf("metrics: ready=%d, worker 1 state %q; want 1 ready and worker 1 %q", m.Ready, m.Workers[0].State, StateUnhealthy)
	}
	for i := range 4 {
		if got := chosen(d); got != w2.pid {
			t.Fatalf("connection %d with worker 1 unhealthy went to pid %d, want worker 2 (pid %d)", i+1, got, w2.pid)
		}
	}
	if got := h.logLines("worker cannot accept connections (out of file descriptors?); it gets no new connection until it can"); len(got) != 1 {
		t.Fatalf("%d log lines saying worker 1 cannot accept, want 1:\n%s", len(got), h.logs)
	}
	h.advance(time.Second)
	h.acceptBeat(w1, true) // still failing: nothing new to say
	if got := h.logLines("worker cannot accept connections (out of file descriptors?); it gets no new connection until it can"); len(got) != 1 {
		t.Fatalf("a second failing beat logged again: %d lines, want 1", len(got))
	}

	h.acceptBeat(w1, false)
	if got := h.state(w1.pid); got != StateReady {
		t.Fatalf("worker 1 reported it accepts again: status shows %q, want %q", got, StateReady)
	}
	picked = map[int]bool{}
	for range 4 {
		picked[chosen(d)] = true
	}
	if !picked[w1.pid] {
		t.Fatalf("worker 1 healthy again but never chosen: %v", picked)
	}
	if got := h.logLines("worker accepts connections again"); len(got) != 1 {
		t.Fatalf("%d log lines saying worker 1 accepts again, want 1:\n%s", len(got), h.logs)
	}
	if h.started() != 2 || w1.drained || w1.killed {
		t.Fatalf("a worker unhealthy for less than WorkerTimeout was replaced: %d started, drained=%v killed=%v", h.started(), w1.drained, w1.killed)
	}
}

// A worker unhealthy for WorkerTimeout is recycled, replacement first, and
// counted under ReasonUnhealthy; a worker that became ready while it could
// not accept gets no connection either.
func TestUnhealthyWorkerIsRecycledAfterWorkerTimeout(t *testing.T) {
	const timeout = 10 * time.Second
	h := newHarnessWith(t, Options{Workers: 2, WorkerTimeout: timeout})
	h.readyAll()
	w1, w2 := h.live(1), h.live(2)
	h.acceptBeat(w1, true)
	for range 3 {
		h.advance(timeout / 4)
		h.acceptBeat(w1, true)
		h.p.handle(evBeat{pid: w2.pid})
		h.p.checkTimeouts()
	}
	if h.started() != 2 {
		t.Fatalf("replaced after %v unhealthy, before WorkerTimeout %v", 3*timeout/4, timeout)
	}
	h.advance(timeout / 4)
	h.acceptBeat(w1, true)
	h.p.handle(evBeat{pid: w2.pid})
	h.p.checkTimeouts()
	if h.started() != 3 {
		t.Fatalf("a worker unhealthy for WorkerTimeout was not replaced: %d processes started, want 3", h.started())
	}
	repl := h.procs[h.next]
	if repl.id != 1 || w1.drained {
		t.Fatalf("replacement runs as worker %d (want 1); old drained=%v before the replacement was ready", repl.id, w1.drained)
	}
	lines := h.logLines("replacing worker")
	if len(lines) != 1 || !strings.Contains(lines[0], "recycle: unhealthy: cannot accept connections for 10s") {
		t.Fatalf("replacing log lines %q, want one saying it cannot accept connections for 10s", lines)
	}
	h.p.handle(evReady{repl.pid})
	if !w1.drained {
		t.Fatal("the old worker was not drained once its replacement was ready")
	}
	h.exit(w1, 0)
	if got := h.p.metrics().Workers[0].Restarts[ReasonUnhealthy]; got != 1 {
		t.Fatalf("restarts[%q] = %d, want 1", ReasonUnhealthy, got)
	}

	// Under a passing policy, a worker that is unhealthy when it becomes
	// ready is not passed connections.
	h2 := newHarnessWith(t, Options{Workers: 2})
	d := h2.withDispatcher(BalanceLeastConn)
	f1 := h2.live(1)
	h2.acceptBeat(f1, true)
	h2.readyAll()
	for range 4 {
		if got := chosen(d); got == f1.pid {
			t.Fatalf("a worker unhealthy when it became ready was chosen")
		}
	}
}
