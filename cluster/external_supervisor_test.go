package cluster

import (
	"strings"
	"testing"
	"time"
)

// quietProc is a fake process that sends no heartbeats unless told to, like
// an Exec program.
type quietProc struct{ *fakeProc }

func (quietProc) quiet() bool { return true }

// A program that never heartbeats is not killed for silence; once it has
// sent one (WATCHDOG=1) the timeout applies. Samples of its RSS are not
// signs of life.
func TestQuietWorkerGetsNoHeartbeatTimeoutUntilItBeats(t *testing.T) {
	h := newHarness(t, 0)
	h.p.spawn = func(p *primary, id int) (int, handle, error) {
		h.next++
		f := &fakeProc{id: id, pid: h.next}
		h.procs[f.pid] = f
		return f.pid, quietProc{f}, nil
	}
	h.p.want = 1
	h.p.startWorker(1)
	h.readyAll()
	f := h.live(1)
	for range 3 {
		h.advance(DefaultWorkerTimeout)
		h.p.handle(evBeat{pid: f.pid, hb: Heartbeat{RSS: 1 << 20}, sample: true})
		h.p.checkTimeouts()
	}
	if f.killed {
		t.Fatal("a worker that never sent a heartbeat was killed for silence")
	}
	if got := h.p.procs[f.pid].hb.RSS; got != 1<<20 {
		t.Errorf("sampled RSS %d not recorded", got)
	}
	h.p.handle(evBeat{pid: f.pid}) // WATCHDOG=1
	h.advance(DefaultWorkerTimeout / 2)
	h.p.checkTimeouts()
	if f.killed {
		t.Fatal("killed within the worker timeout of its heartbeat")
	}
	h.advance(DefaultWorkerTimeout)
	h.p.handle(evBeat{pid: f.pid, sample: true}) // a sample does not count
	h.p.checkTimeouts()
	if !f.killed {
		t.Fatal("a worker silent for longer than the timeout after its first heartbeat was not killed")
	}
}

// Go workers keep the heartbeat timeout from the start.
func TestGoWorkerHeartbeatTimeoutAppliesFromTheStart(t *testing.T) {
	h := newHarness(t, 1)
	h.readyAll()
	f := h.live(1)
	h.advance(DefaultWorkerTimeout + time.Second)
	h.p.checkTimeouts()
	if !f.killed {
		t.Fatal("a Go worker that never sent a heartbeat was not killed")
	}
}

// A worker failing at start is reported once per streak, at the third
// failure, with the output the spawner kept; MaxAge recycles a ready one.
func TestFailedStartReportAndMaxAge(t *testing.T) {
	h := newHarnessWith(t, Options{Workers: 1, Recycle: Recycle{MaxAge: time.Hour}})
	for range 5 {
		f := h.live(1)
		h.p.handle(evExited{pid: f.pid, code: 1, output: "boom: config missing"})
		h.p.handle(evStart{1})
	}
	if n := strings.Count(h.logs.String(), "worker keeps failing at start"); n != 1 {
		t.Errorf("%d failed-start reports over 5 failures, want 1:\n%s", n, h.logs)
	}
	if !strings.Contains(h.logs.String(), `output="boom: config missing"`) {
		t.Errorf("the report lacks the program's output:\n%s", h.logs)
	}
	h.readyAll()
	old := h.live(1)
	h.advance(time.Hour - time.Minute)
	h.p.handle(evBeat{pid: old.pid})
	h.p.checkTimeouts()
	if len(h.p.procs) != 1 {
		t.Fatal("recycled before MaxAge")
	}
	h.advance(time.Hour/10 + 2*time.Minute) // past the largest jitter
	h.p.handle(evBeat{pid: old.pid})
	h.p.checkTimeouts()
	if pr := h.p.procs[old.pid]; pr == nil || pr.replacedBy == 0 || !strings.Contains(h.logs.String(), "recycle: up for") {
		t.Fatalf("not recycled after MaxAge plus jitter:\n%s", h.logs)
	}
}
