package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/listen"
	"github.com/herd-go/herd/internal/procstat"
)

// Worker states, as reported by Status.
const (
	StateStarting = "starting" // started, not serving yet
	StateReady    = "ready"    // serving
	StateDraining = "draining" // asked to stop: finishing in-flight requests
	// StateUnhealthy (health.go): ready, but cannot accept.
)

// handle is the primary's grip on one worker process. The real one wraps
// os/exec and the IPC connection; tests use fakes.
type handle interface {
	// drain asks the worker to stop accepting and finish in-flight requests
	// within timeout. It must not block on the worker: the real handle
	// writes from its own goroutine and reports a failed write as an
	// evDrainFailed event. An error returned here means the request could
	// not even be queued.
	drain(timeout time.Duration) error
	// kill ends the worker at once (SIGKILL).
	kill() error
}

// spawner starts worker id. The process reports back by sending evReady,
// evBeat and, exactly once, evExited for the returned pid into the
// primary's events.
type spawner func(p *primary, id int) (pid int, h handle, err error)

// Events into the supervisor loop. Only the loop touches primary's state.
type (
	evReady struct{ pid int }
	evBeat  struct {
		pid    int
		hb     Heartbeat
		sample bool // figures the primary read itself (Exec): not a sign of life
	}
	evExited struct {
		pid    int
		code   int    // exit code, -1 when killed by a signal
		signal string // the signal's name, when killed by one
		output string // its last lines of stderr, when the spawner kept them
	}
	evStart struct{ id int } // a backoff delay ended
	// evDrainFailed: the drain request could not be written to the worker.
	evDrainFailed struct {
		pid int
		err error
	}
	evSignal struct{ sig os.Signal }
	evFunc   func() // runs in the loop: queries and commands
)

// proc is one worker process.
type proc struct {
	id, pid  int
	state    string
	started  time.Time
	readyAt  time.Time
	lastBeat time.Time
	hb       Heartbeat
	stopping bool // stopped on purpose: not restarted
	h        handle

	replaces   int    // pid this process takes over from once ready (0: none)
	replacedBy int    // pid of the replacement starting for this one (0: none)
	reqLimit   uint64 // recycle after this many requests (0: never)
	killReason string // why the primary killed it, for the log and reload errors
	recycleAt  time.Time
	readyBeats int           // heartbeats received since ready
	beating    bool          // sends heartbeats: the heartbeat timeout applies
	ageLimit   time.Duration // recycle once ready this long (0: never)

	unhealthySince time.Time // when it reported that it cannot accept (zero: it can; health.go)
	retire         string    // restart reason when replaced on purpose (metrics_primary.go)
}

// slot is a worker id's history across its processes.
type slot struct {
	restarts int
	streak   int  // early deaths in a row
	waiting  bool // a backoff timer will start it
	m        slotMetrics
}

type primary struct {
	opts  Options
	log   *slog.Logger
	ln    *net.TCPListener
	lnF   *os.File
	ctl   *net.UnixListener // control socket, nil when not configured
	ctlF  *os.File          // its descriptor, handed to a new primary on upgrade
	spawn spawner
	now   func() time.Time
	disp  *dispatcher // passes connections to workers; nil under BalanceShared

	events chan any
	doneC  chan struct{} // closed when the loop has returned
	calls  atomic.Uint64 // requests from workers answered (the shared store's load)
	mx     *primaryMetrics
	admin  adminState

	// Owned by the loop.
	want           int
	procs          map[int]*proc // by pid
	slots          map[int]*slot // by worker id
	shutting       bool
	handedOver     bool      // an upgrade succeeded: the new primary owns the sockets
	deadline       time.Time // when draining workers get killed
	allReadySaid   bool
	reloading      *reloadOp
	upgrading      *upgradeOp
	waiters        []*waiter
	stopWaiters    []chan error // answered when the loop returns
	onAllReady     []func()     // run once, the first time every worker is ready
	rssLimitWarned bool         // said once that Recycle.MaxRSS is below a new worker's RSS
	rnd            func(n uint64) uint64
	afterFunc      func(d time.Duration, f func()) // time.AfterFunc; tests fake the clock
	everReady      bool                            // some worker of this primary has been ready
	startFailed    map[int]bool                    // slots whose worker exited with ExitStartFailed before any was ever ready
	startErr       error                           // why the primary stopped: every slot failed at start
	dep            deployState                     // drain delay and service-manager notifications (draindelay.go, notify.go)
}

func newPrimary(opts Options, spawn spawner) *primary {
	return &primary{
		opts:   opts,
		log:    opts.Logger,
		spawn:  spawn,
		now:    time.Now,
		events: make(chan any, 256),
		doneC:  make(chan struct{}),
		want:   opts.Workers,
		procs:  make(map[int]*proc),
		slots:  make(map[int]*slot),
		rnd:    func(n uint64) uint64 { return rand.Uint64N(n) }, //nolint:gosec // G404: restart jitter, not a secret
		afterFunc: func(d time.Duration, f func()) {
			time.AfterFunc(d, f)
		},
		startFailed: make(map[int]bool),
		mx:          newPrimaryMetrics(),
	}
}

func runPrimary(ctx context.Context, opts Options) error {
	p := newPrimary(opts, spawnProcess)
	if opts.Exec != nil {
		x, err := startExternal(p)
		if err != nil {
			return err
		}
		defer x.close()
		p.spawn = x.spawn
	}
	upgradeFrom := os.Getenv(EnvUpgradeFrom)
	if n, err := strconv.Atoi(os.Getenv(envUpgradeWorkers)); err == nil && n > 0 && upgradeFrom != "" {
		p.want = n
	}
	os.Unsetenv(EnvUpgradeFrom)
	os.Unsetenv(envUpgradeWorkers)
	var readyPipe *os.File
	if upgradeFrom != "" {
		// Started by a primary for a binary upgrade: take over its sockets.
		files, err := listen.Inherited()
		if err != nil || files[fdHTTP] == nil || files[fdUpgrade] == nil {
			return fmt.Errorf("cluster: %s is set but the listening socket was not passed on", EnvUpgradeFrom)
		}
		l, err := listen.FileListener(files[fdHTTP])
		if err != nil {
			return err
		}
		p.ln = l.(*net.TCPListener)
		readyPipe = files[fdUpgrade]
		if opts.ControlSocket == ControlSocketAuto {
			opts.ControlSocket = ControlSocketPath(p.ln.Addr().(*net.TCPAddr).Port)
		}
		if f := files[fdControl]; f != nil {
			cl, err := net.FileListener(f)
			f.Close()
			if err == nil {
				p.ctl = cl.(*net.UnixListener)
				p.ctl.SetUnlinkOnClose(false)
			}
		}
	} else {
		ln, err := p.openListener(opts.Addr) // activation.go: systemd's socket, or a new one
		if err != nil {
			return err
		}
		p.ln = ln
		auto := opts.ControlSocket == ControlSocketAuto
		if auto {
			opts.ControlSocket = ControlSocketPath(ln.Addr().(*net.TCPAddr).Port)
		}
		if opts.ControlSocket != "" {
			var err error
			if auto {
				err = privateDir(filepath.Dir(opts.ControlSocket))
			}
			if err == nil {
				p.ctl, err = listenControl(opts.ControlSocket)
			}
			if err != nil {
				// Serving matters more than being controllable: signals
				// still work.
				p.log.Warn("no control socket: herd status, reload, scale, upgrade and stop cannot reach this primary (signals still work)",
					"path", opts.ControlSocket, "err", err)
			}
		}
	}
	defer p.ln.Close()
	opts.hooks.onListening(p.ln.Addr())
	var err error
	if p.lnF, err = listen.Passable(p.ln); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer p.lnF.Close()
	// The primary keeps the queue in lnF, which no poller watches; its
	// dispatcher, when it passes connections, waits in the poller on a
	// duplicate of its own only while it accepts. Left in the runtime's
	// poller, ln would wake the primary at every new connection for
	// nothing (about 15 µs of its CPU a connection under churn while the
	// workers accept). Its Addr still answers once closed.
	p.ln.Close()
	if opts.Balance.passes() {
		p.disp = newDispatcher(p.lnF, opts.Balance, opts.MaxConns, p.log)
		go p.disp.run()
		defer p.disp.wait(2 * time.Second)
		defer p.disp.close()
	}
	var ctlWG sync.WaitGroup
	if p.ctl != nil {
		if p.ctlF, err = listen.Passable(p.ctl); err != nil {
			// Controllable now, but a binary upgrade will not hand it on.
			p.log.Warn("the control socket cannot be handed to a new primary on upgrade", "path", opts.ControlSocket, "err", err)
		} else {
			defer p.ctlF.Close()
		}
		go p.serveControl(p.ctl, &ctlWG)
	}

	p.logCPUs()
	p.log.Info("primary running",
		"pid", os.Getpid(), "cpus", runtime.NumCPU(), "usable_cpus", UsableCPUs().Cores(),
		"workers", p.want, "gomaxprocs_per_worker", p.workerProcs(), "balance", string(opts.Balance))
	p.log.Info("listening", "addr", p.ln.Addr().String())
	logFDLimit(p.log)
	if opts.ControlSocket != "" && p.ctl != nil {
		p.log.Info("control socket", "path", opts.ControlSocket)
	}
	stopAdmin := p.startAdmin(ctx, controlPath(opts.ControlSocket, p.ctl), upgradeFrom != "")
	defer stopAdmin()
	if readyPipe != nil {
		p.log.Info("upgrade: took over the sockets", "old_pid", upgradeFrom)
		p.onAllReady = append(p.onAllReady, func() {
			if opts.PIDFile != "" {
				if err := writePIDFile(opts.PIDFile, os.Getpid()); err != nil {
					p.log.Error("cannot write the pid file", "err", err)
				}
			}
			_, _ = readyPipe.WriteString("ready\n")
			readyPipe.Close()
		})
	} else if opts.PIDFile != "" {
		if err := writePIDFile(opts.PIDFile, os.Getpid()); err != nil {
			return err
		}
	}

	if err := p.startNotify(upgradeFrom); err != nil {
		return err
	}
	defer p.dep.notify.close()

	sigC := make(chan os.Signal, 8)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2)
	defer signal.Stop(sigC)
	go func() {
		for {
			select {
			case s := <-sigC:
				p.send(evSignal{s})
			case <-p.doneC:
				return
			}
		}
	}()
	p.onAllReady = append(p.onAllReady, opts.hooks.onAllReady)
	relCtx, stopRelease := context.WithCancel(ctx)
	go releaseWhenIdle(relCtx, p.calls.Load)
	err = p.loop(ctx)
	stopRelease()

	if p.ctl != nil {
		p.ctl.Close()
		if !p.handedOver {
			os.Remove(opts.ControlSocket)
		}
		waitGroup(&ctlWG, 2*time.Second) // let "herd stop" hear its answer
	}
	if opts.PIDFile != "" {
		removePIDFile(opts.PIDFile, os.Getpid())
	}
	return err
}

// waitGroup waits for wg, at most d.
func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(d):
	}
}

// send delivers an event to the loop, or drops it if the loop has ended.
func (p *primary) send(e any) {
	select {
	case p.events <- e:
	case <-p.doneC:
	}
}

// do runs f in the loop and waits for it; false if the loop has ended.
func (p *primary) do(f func()) bool {
	done := make(chan struct{})
	select {
	case p.events <- evFunc(func() { f(); close(done) }):
	case <-p.doneC:
		return false
	}
	select {
	case <-done:
		return true
	case <-p.doneC:
		return false
	}
}

// loop is the supervisor: the one goroutine that owns the workers' state.
func (p *primary) loop(ctx context.Context) error {
	defer close(p.doneC)
	for id := 1; id <= p.want; id++ {
		p.startWorker(id)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var memC <-chan time.Time
	if p.opts.MemoryLogInterval > 0 {
		mt := time.NewTicker(p.opts.MemoryLogInterval)
		defer mt.Stop()
		memC = mt.C
	}
	ctxDone := ctx.Done()
	for {
		if p.shutting && len(p.procs) == 0 {
			p.log.Info("all workers stopped; primary exiting")
			for _, w := range p.stopWaiters {
				w <- p.startErr
			}
			return p.startErr
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			p.shutdown("context done")
		case e := <-p.events:
			p.handle(e)
		case <-tick.C:
			p.checkTimeouts()
			p.checkUpgrade()
			p.checkWaiters()
			p.deployTick()
		case <-memC:
			p.log.Info("primary memory", "rss_mb", fmt.Sprintf("%.2f", float64(procstat.RSS())/(1<<20)))
		}
	}
}

func (p *primary) handle(e any) {
	switch e := e.(type) {
	case evReady:
		p.onReady(e.pid)
	case evBeat:
		if pr := p.procs[e.pid]; pr != nil {
			p.noteAccept(pr, e.hb)
			pr.hb = e.hb
			if !e.sample {
				pr.lastBeat, pr.beating = p.now(), true
			}
			if pr.state == StateReady {
				pr.readyBeats++
			}
		}
	case evExited:
		p.onExit(e)
	case evStart:
		if s := p.slots[e.id]; s != nil {
			s.waiting = false
		}
		if !p.shutting && e.id <= p.want && p.live(e.id) == nil {
			p.startWorker(e.id)
		}
	case evDrainFailed:
		if pr := p.procs[e.pid]; pr != nil {
			p.log.Warn("cannot reach worker to drain it; killing it", "worker", pr.id, "pid", pr.pid, "err", e.err)
			_ = pr.h.kill()
		}
	case evSignal:
		p.onSignal(e.sig)
	case evFunc:
		e()
	case evUpgrade:
		p.onUpgrade(e)
	}
	p.checkWaiters()
}

func (p *primary) onSignal(sig os.Signal) {
	switch sig {
	case syscall.SIGINT, syscall.SIGTERM:
		if p.shutting && sig == syscall.SIGINT {
			p.log.Warn("second SIGINT: killing workers now", "signal", "SIGINT")
			p.killAll()
			return
		}
		p.shutdown(sig.String())
	case syscall.SIGTTIN:
		p.scale(p.want + 1)
	case syscall.SIGTTOU:
		p.scale(p.want - 1)
	case syscall.SIGHUP:
		p.reload(nil)
	case syscall.SIGUSR2:
		p.upgrade(nil)
	}
}

func (p *primary) slot(id int) *slot {
	s := p.slots[id]
	if s == nil {
		s = &slot{}
		p.slots[id] = s
	}
	return s
}

// live returns a process serving or about to serve slot id, if any.
func (p *primary) live(id int) *proc {
	for _, pr := range p.procs {
		if pr.id == id && !pr.stopping {
			return pr
		}
	}
	return nil
}

// startWorker starts a process for worker id, or schedules a retry and
// returns nil when it cannot.
func (p *primary) startWorker(id int) *proc {
	pid, h, err := p.spawn(p, id)
	if err != nil {
		p.log.Error("cannot start worker", "worker", id, "err", err)
		s := p.slot(id)
		s.streak++
		p.scheduleRestart(id, s, p.opts.Backoff.delay(s.streak))
		return nil
	}
	now := p.now()
	pr := &proc{id: id, pid: pid, state: StateStarting, started: now, lastBeat: now, h: h, beating: true}
	if q, ok := h.(interface{ quiet() bool }); ok && q.quiet() {
		pr.beating = false // until its first heartbeat
	}
	if m := p.opts.Recycle.MaxRequests; m > 0 {
		pr.reqLimit = m + p.rnd(max(m/10, 1)+1)
	}
	if a := p.opts.Recycle.MaxAge; a > 0 {
		pr.ageLimit = a + time.Duration(p.rnd(uint64(max(a/10, 1))+1)) //nolint:gosec // G115: rnd(n) < n = a/10+1, which fits in a Duration
	}
	p.procs[pid] = pr
	p.slot(id)
	p.log.Info("worker started", "worker", id, "pid", pid)
	p.event("started", id, pid, "worker started")
	return pr
}

func (p *primary) onReady(pid int) {
	pr := p.procs[pid]
	if pr == nil || pr.state != StateStarting {
		return
	}
	pr.state = StateReady
	pr.readyAt = p.now()
	p.everReady = true
	pr.lastBeat = pr.readyAt
	p.disp.setEligible(pid, pr.unhealthySince.IsZero())
	p.log.Info("worker listening", "worker", pr.id, "pid", pid, "addr", p.addr())
	if pr.replaces != 0 {
		// Replacement first: only now does the old worker stop.
		if old := p.procs[pr.replaces]; old != nil {
			p.stop(old, fmt.Sprintf("replaced by pid %d", pid))
		}
		pr.replaces = 0
	}
	if p.reloading != nil && p.reloading.cur == pid {
		p.reloadNext()
	}
	if !p.allReadySaid && p.readyCount() >= p.want {
		p.allReadySaid = true
		p.log.Info("all workers ready", "workers", p.want)
		p.notifyAllReady()
		for _, f := range p.onAllReady {
			f()
		}
		p.onAllReady = nil
	}
}

func (p *primary) readyCount() int {
	n := 0
	for _, pr := range p.procs {
		if pr.state == StateReady && !pr.stopping {
			n++
		}
	}
	return n
}

func (p *primary) onExit(e evExited) {
	pr := p.procs[e.pid]
	if pr == nil {
		return
	}
	delete(p.procs, e.pid)
	p.disp.setEligible(e.pid, false)
	p.noteExit(pr, e)
	up := p.now().Sub(pr.started)
	attrs := []any{"worker", pr.id, "pid", e.pid, "uptime", up.Round(time.Millisecond).String()}
	if e.signal != "" {
		attrs = append(attrs, "signal", e.signal)
	} else {
		attrs = append(attrs, "code", e.code)
	}
	if pr.killReason != "" {
		attrs = append(attrs, "reason", pr.killReason)
	}
	if pr.stopping || p.shutting {
		p.log.Info("worker stopped", attrs...)
		return
	}
	p.log.Warn("worker died", attrs...)
	if pr.replaces != 0 {
		// A replacement died before it was ready: the old worker keeps
		// serving, and whatever asked for the replacement hears why.
		if old := p.procs[pr.replaces]; old != nil {
			old.replacedBy = 0
			old.recycleAt = p.now().Add(p.opts.Backoff.Max) // don't retry a recycle at once
		}
		why := fmt.Sprintf("worker %d's replacement (pid %d) %s before it was ready; the old worker (pid %d) keeps serving",
			pr.id, pr.pid, exitWords(e, pr.killReason), pr.replaces)
		if e.output != "" {
			why += "; its last output: " + e.output
		}
		p.log.Error("replacement failed", "worker", pr.id, "pid", pr.pid, "reason", why)
		if p.reloading != nil && p.reloading.cur == pr.pid {
			p.finishReload(fmt.Errorf("cluster: reload stopped: %s", why))
		}
		return
	}
	if pr.replacedBy != 0 {
		if np := p.procs[pr.replacedBy]; np != nil {
			np.replaces = 0 // the replacement simply takes the slot over
		}
	}
	p.allReadySaid = false
	if pr.id > p.want || p.live(pr.id) != nil {
		return // scaled away, or already replaced
	}
	// ExitStartFailed is herd's convention for its own workers; a foreign
	// program's exit code 3 means whatever that program means by it.
	if e.code == ExitStartFailed && p.opts.Exec == nil && !p.everReady && p.failedAtStart(pr.id) {
		return
	}
	s := p.slot(pr.id)
	stable := !pr.readyAt.IsZero() && p.now().Sub(pr.readyAt) >= p.opts.Backoff.StableAfter
	outside := e.signal != "" && pr.killReason == "" // killed, and not by this primary
	switch {
	case stable:
		s.streak = 0
		p.scheduleRestart(pr.id, s, 0)
	case outside && !pr.readyAt.IsZero():
		// A serving worker killed from outside (the OOM killer, an
		// operator, a chaos tool) did nothing wrong: replace it at once,
		// and leave the streak of the slot's own failures as it was.
		p.scheduleRestart(pr.id, s, 0)
	case outside:
		// Killed while starting: at most the shortest delay, so that a
		// storm of kills can never leave every slot backing off for long.
		p.scheduleRestart(pr.id, s, p.opts.Backoff.Min)
	default:
		// Its own failure: an exit before ready, an exit code soon after,
		// or killed by this primary for hanging.
		s.streak++
		if s.streak == failedStartsToReport {
			p.log.Error("worker keeps failing at start; retrying with backoff", "worker", pr.id, "pid", e.pid,
				"early_deaths", s.streak, "reason", exitWords(e, pr.killReason), "output", e.output)
		}
		p.scheduleRestart(pr.id, s, p.opts.Backoff.delay(s.streak))
	}
}

// failedStartsToReport is the early death in a row at which the primary
// says, once, that a worker keeps failing, with its last output.
const failedStartsToReport = 3

// failedAtStart records that slot id's worker exited with ExitStartFailed
// before any worker of this primary was ever ready. Once every slot has,
// the program cannot start at all: the primary logs why once, stops, and
// Run returns an error wrapping ErrStartFailed. It reports whether the
// primary is stopping.
func (p *primary) failedAtStart(id int) bool {
	p.startFailed[id] = true
	for i := 1; i <= p.want; i++ {
		if !p.startFailed[i] {
			return false
		}
	}
	p.startErr = fmt.Errorf("%w: every worker (%d) exited with code %d (ExitStartFailed) before any was ready; see the workers' log lines above for why",
		ErrStartFailed, p.want, ExitStartFailed)
	p.log.Error("workers failed at start; the primary is stopping", "workers", p.want, "code", ExitStartFailed,
		"reason", "every worker exited with the failed-at-start code before any was ready")
	p.shutdown("every worker failed at start")
	return true
}

// scheduleRestart starts slot id again after d (at once when d is 0).
func (p *primary) scheduleRestart(id int, s *slot, d time.Duration) {
	if p.shutting || s.waiting {
		return
	}
	s.restarts++
	if d == 0 {
		p.log.Info("forking a replacement", "worker", id)
		p.startWorker(id)
		return
	}
	s.waiting = true
	msg := "worker keeps dying soon after start; backing off"
	if s.streak <= 1 {
		msg = "worker died soon after start; restarting after a short delay"
	}
	p.log.Warn(msg, "worker", id, "early_deaths", s.streak, "next_try_in", d.String()) //nolint:sloglint // one of the two constant messages above
	p.afterFunc(d, func() { p.send(evStart{id}) })
}

// stop drains pr on purpose: it will not be restarted.
func (p *primary) stop(pr *proc, reason string) {
	if pr.stopping {
		return
	}
	pr.stopping = true
	pr.state = StateDraining
	p.disp.setEligible(pr.pid, false) // before the drain: nothing more is passed to it
	p.log.Info("draining worker", "worker", pr.id, "pid", pr.pid, "reason", reason)
	if err := pr.h.drain(p.opts.ShutdownTimeout); err != nil {
		p.log.Warn("cannot reach worker to drain it; killing it", "worker", pr.id, "pid", pr.pid, "err", err)
		_ = pr.h.kill()
	}
}

func (p *primary) shutdown(reason string) {
	if p.shutting || p.delayShutdown(reason) {
		return
	}
	p.shutting = true
	p.disp.close() // connections still queued stay for a new primary (upgrade)
	// Workers get ShutdownTimeout to finish; the kill after it is a backstop
	// for a worker that ignores its own deadline.
	p.deadline = p.now().Add(p.opts.ShutdownTimeout + 2*time.Second)
	p.log.Info("shutting down gracefully", "reason", reason, "timeout", p.opts.ShutdownTimeout.String())
	if p.reloading != nil {
		p.finishReload(errors.New("cluster: reload stopped: the primary is shutting down"))
	}
	for _, pr := range p.procs {
		p.stop(pr, "shutdown")
	}
}

func (p *primary) killAll() {
	for _, pr := range p.procs {
		pr.stopping = true
		_ = pr.h.kill()
	}
}

func (p *primary) scale(n int) {
	if p.shutting {
		return
	}
	if n < 1 {
		p.log.Warn("cannot scale below 1 worker", "workers", p.want)
		return
	}
	old := p.want
	p.want = n
	p.log.Info("scaling", "from", old, "to", n)
	p.event("scale", 0, 0, fmt.Sprintf("scaling from %d to %d workers", old, n))
	for id := old + 1; id <= n; id++ {
		if p.live(id) == nil {
			p.startWorker(id)
		}
	}
	for _, pr := range p.procs {
		if pr.id > n {
			p.stop(pr, "scaled down")
		}
	}
}

// checkTimeouts kills workers that never became ready or stopped
// heartbeating, and draining workers past the shutdown deadline.
func (p *primary) checkTimeouts() {
	now := p.now()
	if p.shutting && now.After(p.deadline) {
		for _, pr := range p.procs {
			p.log.Warn("worker did not stop in time; killing it", "worker", pr.id, "pid", pr.pid)
			_ = pr.h.kill()
		}
		p.deadline = now.Add(time.Hour) // kill once
		return
	}
	for _, pr := range p.procs {
		switch {
		case pr.stopping:
		case pr.killReason != "":
		case pr.state == StateStarting && now.Sub(pr.started) > p.opts.ReadyTimeout:
			pr.killReason = fmt.Sprintf("did not become ready within %s", p.opts.ReadyTimeout)
			p.log.Error("worker never became ready; killing it", "worker", pr.id, "pid", pr.pid, "timeout", p.opts.ReadyTimeout.String())
			_ = pr.h.kill()
		case pr.state == StateReady && pr.beating && now.Sub(pr.lastBeat) > p.opts.WorkerTimeout:
			pr.killReason = fmt.Sprintf("no heartbeat for %s", now.Sub(pr.lastBeat).Round(time.Second))
			p.log.Error("worker stopped responding; killing it", "worker", pr.id, "pid", pr.pid, "reason", pr.killReason)
			_ = pr.h.kill()
		default:
			p.maybeRecycle(pr)
		}
	}
}

func (p *primary) addr() string {
	if p.ln == nil {
		return p.opts.Addr
	}
	return p.ln.Addr().String()
}

// status snapshots the cluster. Call it in the loop.
func (p *primary) status() Status {
	s := Status{PrimaryPID: os.Getpid(), Addr: p.addr(), Want: p.want, AdminAddr: p.adminAddr()}
	for _, pr := range p.procs {
		s.Workers = append(s.Workers, WorkerStatus{
			ID: pr.id, PID: pr.pid, State: pr.shownState(), Started: pr.started,
			Restarts: p.slot(pr.id).restarts, Heartbeat: pr.hb, Beat: pr.lastBeat,
		})
	}
	sort.Slice(s.Workers, func(i, j int) bool {
		a, b := s.Workers[i], s.Workers[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Started.Before(b.Started)
	})
	return s
}
