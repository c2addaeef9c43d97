package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/ipc"
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
	// timers are the backoff delays under way on the fake clock; their
	// functions send into p.events, which fire delivers to the handlers.
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

// fire runs the timers due by the fake clock and hands the events they
// send to the primary, as the loop would.
func (h *harness) fire() {
	kept := h.timers[:0]
	var due []fakeTimer
	for _, t := range h.timers {
		if !t.at.After(h.clock) {
			due = append(due, t)
		} else {
			kept = append(kept, t)
		}
	}
	h.timers = kept
	for _, t := range due {
		t.f()
	}
	for {
		select {
		case e := <-h.p.events:
			h.p.handle(e)
		default:
			return
		}
	}
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
	h.p.afterFunc = func(d time.Duration, f func()) {
		h.timers = append(h.timers, fakeTimer{at: h.clock.Add(d), f: f})
	}
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

// readyAll makes every process starting now ready (not those that
// start in response).
func (h *harness) readyAll() {
	var pids []int
	for pid, pr := range h.p.procs {
		if pr.state == StateStarting {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		h.p.handle(evReady{pid})
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

// kill ends f's process by a signal from outside the primary, as the OOM
// killer, an operator or a chaos tool does.
func (h *harness) kill(f *fakeProc) {
	h.p.handle(evExited{pid: f.pid, code: -1, signal: "killed"})
}

func TestReadyWorkerKilledFromOutsideIsReplacedAtOnce(t *testing.T) {
	h := newHarness(t, 2)
	h.readyAll()
	h.advance(time.Second) // serving, well within StableAfter
	h.kill(h.live(1))
	if h.p.live(1) == nil || h.p.slots[1].waiting {
		t.Fatalf("a serving worker killed by a signal was not replaced at once:\n%s", h.logs)
	}
	if s := h.p.slots[1].streak; s != 0 {
		t.Errorf("streak after an outside kill = %d, want 0: it was not the worker's failure", s)
	}
}

func TestOwnFailuresSoonAfterReadyStillBackOff(t *testing.T) {
	h := newHarnessWith(t, Options{Workers: 1, WorkerTimeout: 2 * time.Second})
	h.readyAll()
	h.advance(time.Second)
	h.exit(h.live(1), 1) // exits on its own, one second after ready
	if s := h.p.slots[1]; !s.waiting || s.streak != 1 {
		t.Fatalf("a worker that exited with code 1 a second after ready: waiting=%v streak=%d, want a backoff", s.waiting, s.streak)
	}
	// Killed by the primary itself for hanging: its own failure too.
	h.advance(h.p.opts.Backoff.Min)
	h.fire()
	h.readyAll()
	h.advance(h.p.opts.WorkerTimeout + time.Second)
	h.p.checkTimeouts()
	f := h.live(1)
	if !f.killed {
		t.Fatal("the silent worker was not killed")
	}
	h.kill(f)
	if s := h.p.slots[1]; !s.waiting || s.streak != 2 {
		t.Fatalf("a worker the primary killed for hanging: waiting=%v streak=%d, want a longer backoff", s.waiting, s.streak)
	}
}

// 20 kills of a random worker (ready or still starting), one every
// 500 ms, as issue 13's chaos run did with wrk running: no slot may stay
// empty longer than the shortest backoff delay, and once the storm ends
// every worker is ready again within a second.
func TestKillStormNeverEmptiesTheCluster(t *testing.T) {
	const (
		workers = 2
		startup = 50 * time.Millisecond // a fake worker is ready this long after it starts
		step    = 5 * time.Millisecond
	)
	h := newHarness(t, workers)
	h.readyAll()
	rnd := rand.New(rand.NewPCG(13, 13))
	emptySince := map[int]time.Time{}
	var worstGap time.Duration
	var noneReady time.Duration
	run := func(d time.Duration) {
		for end := h.clock.Add(d); h.clock.Before(end); {
			h.advance(step)
			h.fire()
			for pid, pr := range h.p.procs {
				if pr.state == StateStarting && h.clock.Sub(pr.started) >= startup {
					h.p.handle(evReady{pid})
				}
			}
			if h.p.readyCount() == 0 {
				noneReady += step
			}
			for id := 1; id <= workers; id++ {
				if h.p.live(id) != nil {
					delete(emptySince, id)
					continue
				}
				if _, ok := emptySince[id]; !ok {
					emptySince[id] = h.clock
				}
				worstGap = max(worstGap, h.clock.Sub(emptySince[id]))
			}
		}
	}
	for range 20 {
		var pids []int
		for pid, pr := range h.p.procs {
			if !pr.stopping {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			t.Fatalf("at %v no worker is running or starting:\n%s", h.clock, h.logs)
		}
		sort.Ints(pids)
		h.kill(h.procs[pids[rnd.IntN(len(pids))]])
		run(500 * time.Millisecond)
	}
	t.Logf("worst time a slot was empty: %v; time with no worker ready: %v of 10s", worstGap, noneReady)
	if worstGap > h.p.opts.Backoff.Min+step {
		t.Errorf("a slot was empty for %v during the storm, want at most the shortest backoff (%v)", worstGap, h.p.opts.Backoff.Min)
	}
	if h.p.readyCount() != workers {
		run(time.Second)
		if h.p.readyCount() != workers {
			t.Fatalf("a second after the storm %d of %d workers are ready:\n%s", h.p.readyCount(), workers, h.logs)
		}
	}
}

// blockedHandle is a real worker handle whose peer never reads its IPC
// socket (a SIGSTOPped worker with a full socket buffer); kill is recorded.
type blockedHandle struct {
	*procHandle
	killed chan struct{}
}

func (b *blockedHandle) kill() error { close(b.killed); return nil }

type ignoreIPC struct{}

func (ignoreIPC) HandleRequest(context.Context, string, []byte) (any, error) { return nil, nil }
func (ignoreIPC) HandleNotify(string, []byte)                                {}

func TestDrainOfAWorkerThatDoesNotReadDoesNotBlockTheLoop(t *testing.T) {
	h := newHarness(t, 3)
	h.readyAll()
	mine, theirs := net.Pipe() // unbuffered: every write waits for a reader that never comes
	t.Cleanup(func() { mine.Close(); theirs.Close() })
	conn := ipc.NewConn(mine, ignoreIPC{})
	pr := h.p.live(3)
	bh := &blockedHandle{killed: make(chan struct{})}
	bh.procHandle = &procHandle{conn: conn, failed: func(err error) { h.p.send(evDrainFailed{pr.pid, err}) }}
	pr.h = bh

	start := time.Now()
	h.p.scale(1) // drains workers 2 and 3
	d := time.Since(start)
	t.Logf("chaos: blocked worker socket: the loop's scale-down took %v (the write times out after %v)", d, ipc.WriteTimeout)
	if d > time.Second {
		t.Fatalf("scaling down took %v: the loop waited on a worker that does not read (the write times out after %v)", d, ipc.WriteTimeout)
	}
	if !h.procs[102].drained {
		t.Error("worker 2 was not drained")
	}
	if s := h.p.status(); len(s.Workers) != 3 {
		t.Errorf("status during the drain lists %d workers, want 3", len(s.Workers))
	}
	// The failed write comes back as an event, and the worker is killed.
	select {
	case e := <-h.p.events:
		h.p.handle(e)
	case <-time.After(ipc.WriteTimeout + 10*time.Second):
		t.Fatal("the failed drain write never came back to the loop")
	}
	select {
	case <-bh.killed:
	default:
		t.Fatalf("a worker that could not be told to drain was not killed:\n%s", h.logs)
	}
	if !strings.Contains(h.logs.String(), "cannot reach worker to drain it") {
		t.Errorf("the log does not say why the worker was killed:\n%s", h.logs)
	}
}

func TestRollingReloadReplacesOneAtATimeAndFailsSafely(t *testing.T) {
	h := newHarness(t, 2)
	h.readyAll()
	old1, old2 := h.live(1), h.live(2)
	done := make(chan error, 1)
	h.p.reload(done)
	if len(h.p.procs) != 3 || old1.drained {
		t.Fatalf("after reload began: %d processes, old worker 1 drained=%v; want its replacement starting and it still serving", len(h.p.procs), old1.drained)
	}
	h.readyAll() // replacement 1 ready: old 1 drains, replacement 2 starts
	if !old1.drained || old2.drained {
		t.Fatalf("after replacement 1 was ready: old1 drained=%v old2 drained=%v, want old1 only", old1.drained, old2.drained)
	}
	h.exit(old1, 0)
	h.readyAll()
	h.exit(old2, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	default:
		t.Fatal("reload did not report completion")
	}

	// A broken build: the replacement exits at start; the old worker keeps serving.
	cur1 := h.live(1)
	h.p.reload(done)
	var repl *fakeProc
	for _, pr := range h.p.procs {
		if pr.replaces == cur1.pid {
			repl = h.procs[pr.pid]
		}
	}
	if repl == nil {
		t.Fatal("no replacement started for worker 1")
	}
	h.exit(repl, ExitStartFailed)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "keeps serving") {
			t.Fatalf("reload with a broken replacement: %v, want an error saying the old worker keeps serving", err)
		}
	default:
		t.Fatal("a reload whose replacement failed did not report it")
	}
	if cur1.drained || h.p.live(1) == nil || h.p.shutting {
		t.Fatalf("after a failed reload: old drained=%v shutting=%v, want it serving on", cur1.drained, h.p.shutting)
	}
}

func TestScaleUpAndDownCompletesWhenWorkersAreReadyAndGone(t *testing.T) {
	h := newHarness(t, 2)
	h.readyAll()
	done := make(chan error, 1)
	h.p.scale(4)
	h.p.await(func() (bool, error) { return h.p.scaled(4) }, done)
	if len(done) != 0 {
		t.Fatal("scale to 4 reported done before the new workers were ready")
	}
	h.readyAll()
	h.p.checkWaiters()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.p.scale(1)
	h.p.await(func() (bool, error) { return h.p.scaled(1) }, done)
	for _, f := range h.procs {
		if f.id > 1 {
			if !f.drained {
				t.Fatalf("worker %d not drained on scale down", f.id)
			}
			h.exit(f, 0)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("scale to 1 did not complete once the others stopped; %d processes left", len(h.p.procs))
	}
	if h.p.slots[2].waiting || h.p.live(2) != nil {
		t.Error("a worker stopped by scaling down was restarted")
	}
}

func TestFailedUpgradeKeepsThisPrimaryServing(t *testing.T) {
	h := newHarness(t, 2)
	h.readyAll()
	done := make(chan error, 1)
	h.p.upgrading = &upgradeOp{pid: 4242, started: h.clock, done: []chan error{done}}
	h.p.handle(evUpgrade{pid: 4242, err: errors.New("exit status 3")})
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("upgrade outcome: %v, want a failure saying this primary keeps serving", err)
	}
	if h.p.shutting || h.p.handedOver || h.p.upgrading != nil {
		t.Fatalf("after a failed upgrade: shutting=%v handedOver=%v upgrading=%v", h.p.shutting, h.p.handedOver, h.p.upgrading)
	}
	for _, f := range h.procs {
		if f.drained || f.killed {
			t.Fatalf("worker %d was stopped by a failed upgrade", f.id)
		}
	}
}

func TestEveryWorkerFailingAtStartStopsTheFreshPrimary(t *testing.T) {
	h := newHarness(t, 2)
	h.exit(h.live(1), ExitStartFailed)
	if h.p.shutting {
		t.Fatal("the primary stopped before every worker had failed at start")
	}
	h.exit(h.live(2), ExitStartFailed)
	if !h.p.shutting || !errors.Is(h.p.startErr, ErrStartFailed) {
		t.Fatalf("every worker failed at start: shutting=%v err=%v, want the primary stopping with ErrStartFailed", h.p.shutting, h.p.startErr)
	}
	if n := strings.Count(h.logs.String(), "workers failed at start"); n != 1 {
		t.Errorf("the reason was logged %d times, want once:\n%s", n, h.logs)
	}

	// Once a worker has served, a failed start is retried, not fatal.
	h = newHarness(t, 2)
	h.readyAll()
	h.advance(time.Second)
	h.exit(h.live(1), 0)
	h.advance(time.Second)
	h.fire()
	h.exit(h.live(1), ExitStartFailed)
	h.kill(h.live(2))
	h.exit(h.live(2), ExitStartFailed)
	if h.p.shutting {
		t.Fatal("a primary whose workers had been ready stopped on failed starts")
	}
}
