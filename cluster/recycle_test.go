package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// logLines returns the harness's log lines whose message is msg.
func (h *harness) logLines(msg string) []string {
	var out []string
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, fmt.Sprintf("msg=%q ", msg)) || strings.Contains(l, "msg="+msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

// beat delivers a heartbeat reporting rss for f.
func (h *harness) beat(f *fakeProc, rss uint64) {
	h.p.handle(evBeat{pid: f.pid, hb: Heartbeat{RSS: rss}})
}

// started is how many processes the primary has started so far.
func (h *harness) started() int { return len(h.procs) }

func TestRecyclingByMemoryStartsTheReplacementFirst(t *testing.T) {
	const limit = 64 << 20
	h := newHarnessWith(t, Options{Workers: 2, Recycle: Recycle{MaxRSS: limit}})
	h.readyAll()
	w1, w2 := h.live(1), h.live(2)

	// Under the limit, and at it, is not over it: nothing happens.
	h.advance(time.Second)
	h.beat(w1, limit-1<<20)
	h.beat(w2, limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 2 {
		t.Fatalf("after heartbeats at or under the limit: %d processes started, want 2 (no replacement)", got)
	}
	if got := h.logLines("replacing worker"); len(got) != 0 {
		t.Fatalf("a worker at or under the memory limit was recycled: %q", got)
	}

	// Worker 1 grows past the limit: a replacement starts, and the old
	// worker keeps serving until it is ready.
	h.advance(time.Second)
	h.beat(w1, limit+16<<20)
	h.beat(w2, limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 3 {
		t.Fatalf("after worker 1 reported RSS over the limit: %d processes started, want 3 (one replacement)", got)
	}
	repl := h.procs[h.next]
	if repl.id != 1 {
		t.Fatalf("the replacement runs as worker %d, want worker 1", repl.id)
	}
	if w1.drained || w1.killed {
		t.Fatalf("old worker 1: drained=%v killed=%v before its replacement was ready, want it still serving", w1.drained, w1.killed)
	}
	if pr := h.p.procs[w1.pid]; pr.state != StateReady || pr.replacedBy != repl.pid {
		t.Fatalf("old worker 1: state %q, replacedBy %d; want %q, replaced by %d", pr.state, pr.replacedBy, StateReady, repl.pid)
	}
	if w2.drained || w2.killed {
		t.Fatalf("worker 2, at the limit, was drained=%v killed=%v", w2.drained, w2.killed)
	}
	if warned := h.logLines("a worker is over the memory limit as soon as it starts, so workers will be replaced over and over: raise the limit"); len(warned) != 0 {
		t.Errorf("a worker that grew past the limit on its second heartbeat was taken for a limit below a new worker's size: %q", warned)
	}
	lines := h.logLines("replacing worker")
	if len(lines) != 1 {
		t.Fatalf("%d \"replacing worker\" log lines, want 1:\n%s", len(lines), h.logs)
	}
	wantLog := []string{
		fmt.Sprintf("pid=%d new_pid=%d", w1.pid, repl.pid),
		`reason="recycle: RSS 80.0 MB over the limit of 64.0 MB"`,
	}
	for _, want := range wantLog {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q does not say %s", lines[0], want)
		}
	}

	// While the replacement starts, more heartbeats over the limit, from
	// the old worker and even from the starting one, start nothing more.
	for range 3 {
		h.advance(time.Second)
		h.beat(w1, limit+20<<20)
		h.beat(repl, limit+20<<20)
		h.beat(w2, limit)
		h.p.checkTimeouts()
	}
	if got := h.started(); got != 3 {
		t.Fatalf("while a replacement was starting: %d processes started, want still 3", got)
	}

	// The replacement is ready: only now does the old worker drain.
	h.p.handle(evReady{repl.pid})
	if !w1.drained || w1.killed {
		t.Fatalf("old worker 1 once its replacement was ready: drained=%v killed=%v, want drained only", w1.drained, w1.killed)
	}
	if got := h.logLines("draining worker"); len(got) != 1 || !strings.Contains(got[0], fmt.Sprintf(`reason="replaced by pid %d"`, repl.pid)) {
		t.Errorf("draining log lines %q, want one saying worker 1 was replaced by pid %d", got, repl.pid)
	}
	// A draining worker over the limit is not recycled again.
	h.advance(time.Second)
	h.beat(w1, limit+20<<20)
	h.beat(repl, limit/2)
	h.beat(w2, limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 3 {
		t.Fatalf("after the old worker started draining: %d processes started, want still 3", got)
	}
	h.exit(w1, 0)
	if pr := h.p.live(1); pr == nil || pr.pid != repl.pid {
		t.Fatalf("worker 1 after the old process exited: %+v, want the replacement pid %d", pr, repl.pid)
	}
	if got := len(h.p.procs); got != 2 {
		t.Fatalf("%d processes after the recycle, want 2", got)
	}
	if s := h.p.slots[1]; s.restarts != 0 || s.waiting {
		t.Errorf("slot 1 after a recycle: restarts=%d waiting=%v, want no restart", s.restarts, s.waiting)
	}

	// The replacement stays under the limit: it stays.
	h.advance(time.Second)
	h.beat(repl, limit/2)
	h.beat(w2, limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 3 {
		t.Fatalf("with every worker at or under the limit: %d processes started, want still 3", got)
	}
}

func TestMemoryRecycleWhoseReplacementDiesKeepsTheOldWorker(t *testing.T) {
	const limit = 32 << 20
	h := newHarnessWith(t, Options{Workers: 1, Recycle: Recycle{MaxRSS: limit}})
	h.readyAll()
	old := h.live(1)
	h.advance(time.Second)
	h.beat(old, 2*limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 2 {
		t.Fatalf("%d processes started, want 2 (one replacement)", got)
	}
	repl := h.procs[h.next]
	h.exit(repl, 1) // dies before it is ready

	if old.drained || old.killed {
		t.Fatalf("old worker: drained=%v killed=%v after its replacement died, want it still serving", old.drained, old.killed)
	}
	if pr := h.p.procs[old.pid]; pr == nil || pr.state != StateReady || pr.replacedBy != 0 {
		t.Fatalf("old worker after its replacement died: %+v, want ready and no longer being replaced", pr)
	}
	if got := h.logLines("replacement failed"); len(got) != 1 {
		t.Errorf("%d \"replacement failed\" log lines, want 1:\n%s", len(got), h.logs)
	}
	// No retry at once: a recycle that fails would otherwise spawn on every tick.
	step := time.Second
	for waited := step; waited < h.p.opts.Backoff.Max; waited += step {
		h.advance(step)
		h.beat(old, 2*limit)
		h.p.checkTimeouts()
	}
	if got := h.started(); got != 2 {
		t.Fatalf("within Backoff.Max (%v) of a failed replacement: %d processes started, want still 2", h.p.opts.Backoff.Max, got)
	}
	h.advance(2 * step)
	h.beat(old, 2*limit)
	h.p.checkTimeouts()
	if got := h.started(); got != 3 {
		t.Fatalf("after Backoff.Max (%v), still over the limit: %d processes started, want 3 (a new try)", h.p.opts.Backoff.Max, got)
	}
}

// A limit below what a new worker needs would replace workers over and
// over: the primary says so once.
func TestMemoryLimitBelowANewWorkerIsWarnedOnce(t *testing.T) {
	const msg = "a worker is over the memory limit as soon as it starts, so workers will be replaced over and over: raise the limit"
	h := newHarnessWith(t, Options{Workers: 2, Recycle: Recycle{MaxRSS: 1 << 20}})
	h.readyAll()
	h.advance(time.Second)
	h.beat(h.live(1), 10<<20)
	h.beat(h.live(2), 10<<20)
	h.p.checkTimeouts()
	if got := h.logLines(msg); len(got) != 1 {
		t.Fatalf("%d warnings after both new workers reported 10 MB against a 1 MB limit, want 1:\n%s", len(got), h.logs)
	}
	if got := h.started(); got != 4 {
		t.Errorf("%d processes started, want 4: both workers are still recycled", got)
	}
}
