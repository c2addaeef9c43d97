package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Balance is how new connections are spread over the workers.
type Balance string

// Balancing policies. See the README's "Balancing" section for what each
// costs.
const (
	// BalanceAuto: BalanceLeastConn, until connections churn: for 300 ms,
	// new ones come at AutoDirectRate a second or more and at least half
	// as many close (not a proxy opening its pool, whose connections
	// stay: those are spread exactly). Then the workers accept from the
	// shared queue themselves, as under BalanceShared, so that churn costs
	// no hop through the primary; passing resumes once there has been no
	// churn at a quarter of that rate for a second. Whichever way,
	// connections wait in the one kernel queue, so a switch loses none.
	BalanceAuto Balance = "auto"
	// BalanceLeastConn: the primary accepts every connection and passes it
	// to the ready worker holding the fewest open connections, ties taken
	// in turn, so c long-lived connections over N workers end up ⌊c/N⌋ or
	// ⌈c/N⌉ per worker.
	BalanceLeastConn Balance = "least-conn"
	// BalanceShared: every worker accepts from the one shared kernel
	// queue; whichever wakes first takes the connection. No work in the
	// primary, no control over the spread.
	BalanceShared Balance = "shared"
	// BalanceSticky: the primary accepts and passes every connection; a
	// client address keeps going to the same worker while that worker is
	// ready. A new address, or one whose worker left, goes to the worker
	// with the fewest open connections and stays there.
	BalanceSticky Balance = "sticky"
)

// DefaultBalance is the policy of a zero Options.Balance.
const DefaultBalance = BalanceAuto

// Balances lists the policies ParseBalance accepts.
var Balances = []Balance{BalanceAuto, BalanceLeastConn, BalanceShared, BalanceSticky}

// AutoDirectRate is the rate of new connections (per second) at which, if
// they churn (at least half as many close), BalanceAuto lets the workers
// accept themselves.
const AutoDirectRate = 1000

// BalanceAuto's clock: the rate is read every autoTick; the workers take
// over after autoHot ticks in a row of churn at AutoDirectRate or more,
// and passing resumes after autoCalm ticks in a row without churn at a
// quarter of it.
const (
	autoTick = 100 * time.Millisecond
	autoHot  = 3
	autoCalm = 10
)

// ParseBalance reads a policy name; the empty string is DefaultBalance.
func ParseBalance(s string) (Balance, error) {
	if s == "" {
		return DefaultBalance, nil
	}
	for _, b := range Balances {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("cluster: unknown balance policy %q: must be auto, least-conn, shared or sticky", s)
}

// passes reports whether the primary accepts and passes connections under
// b (under BalanceAuto, while the rate is low).
func (b Balance) passes() bool { return b != BalanceShared }

// The connection socket's messages. The primary writes one message per
// batch of connections it passes to a worker: the first connection's
// sequence number (big-endian uint64) and how many follow (uint32), with
// their descriptors as SCM_RIGHTS, in sequence order. The worker writes
// records of recLen bytes: a kind, a sequence number and a count (the
// connections seq, seq+1, … seq+count-1 it took or could not take), and how
// many connections it was passed have closed since its last record.
const (
	recAck    = 'A' // the worker holds the connections; the primary drops its copies
	recNack   = 'N' // the worker could not take them (out of descriptors): pass them on
	recClosed = 'C' // only the closed count
	// One-byte messages of the primary's (BalanceAuto): accept from the
	// shared queue yourself too (recDirect), or no longer (recPass).
	recDirect = 'D'
	recPass   = 'P'
	recLen    = 17
	batchLen  = 12
	// maxBatch bounds the descriptors of one message (SCM_RIGHTS carries
	// up to 253) and the connections the primary accepts in one go.
	maxBatch = 64
)

// nackRetry is how long a worker that could not take a connection is
// passed none, unless one of its connections closes first.
const nackRetry = 500 * time.Millisecond

// stickyMax bounds the sticky table: past it, entries idle for stickyIdle
// are forgotten.
const (
	stickyMax  = 1 << 16
	stickyIdle = 10 * time.Minute
)

// passedConn is an accepted connection the primary holds until a worker
// acknowledges it.
type passedConn struct {
	fd int
	ip string
}

// dworker is one worker as the dispatcher sees it.
type dworker struct {
	id, pid    int
	uc         *net.UnixConn
	rc         syscall.RawConn
	sent       int // passed and not refused, less the closes reported in records
	cur        int // open, as chooseLocked last read it
	shm        *shmCounts
	eligible   bool // ready and not draining
	full       bool // it nacked a connection and none of its own has closed since
	direct     bool // recDirect was the last mode message it was sent
	seen       int  // its direct accepts as the last auto tick read them
	seenClosed int  // its closes, likewise
	retry      *time.Timer
	pending    map[uint64]passedConn
	batch      []passedConn // chosen in the current accept batch, not yet sent
}

type stickyEntry struct {
	pid  int
	last time.Time
}

// dispatcher accepts connections in the primary and passes each to a
// worker (SCM_RIGHTS over a SOCK_SEQPACKET socketpair per worker, apart
// from the framed IPC). It runs in its own goroutines; the supervisor loop
// only tells it which workers are eligible, and never waits on it for
// long (each call takes d.mu for a table update, and a sendmsg never
// blocks).
//
// No connection passed is lost to a worker's exit: the primary keeps its
// copy of every passed descriptor until the worker acknowledges it (the
// worker acks before reading a byte), and when a worker's socket reaches
// EOF (it exited, or drained and closed it) every connection it never
// acknowledged is passed to another worker. (What a worker accepted
// itself, in BalanceAuto's direct mode, it holds as under BalanceShared:
// a worker killed loses those, never the ones still in the queue.)
//
// Under BalanceAuto it also watches new connections and closes and, under
// churn at AutoDirectRate, stops accepting and tells the workers to accept
// from the shared queue themselves (recDirect), until the churn ends
// (recPass).
type dispatcher struct {
	ln       *os.File // the listening socket, outside any poller
	policy   Balance
	maxConns int
	log      *slog.Logger
	doneC    chan struct{} // closed when the accept loop has returned
	stopped  atomic.Bool   // close was called (read without mu by the accept loop)

	mu       sync.Mutex
	cond     *sync.Cond // an eligible worker, a free slot, or close
	workers  map[int]*dworker
	order    []*dworker // workers by id then pid, the order ties are taken in
	sticky   map[string]stickyEntry
	backlog  []passedConn // accepted, no worker could take them yet
	seq      uint64
	turn     int // rotates ties
	closed   bool
	direct   bool          // BalanceAuto: the workers accept; the accept loop waits
	switches uint64        // BalanceAuto's switches, either way
	passed   atomic.Uint64 // connections the accept loop took, for the auto tick
	// acceptFile is the accept loop's pollable duplicate of the listening
	// socket; close sets its deadline to wake the loop.
	acceptFile *os.File
}

func newDispatcher(ln *os.File, policy Balance, maxConns int, log *slog.Logger) *dispatcher {
	d := &dispatcher{
		ln: ln, policy: policy, maxConns: maxConns, log: log,
		doneC:   make(chan struct{}),
		workers: make(map[int]*dworker),
		sticky:  make(map[string]stickyEntry),
	}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// mode reports whether the primary accepts and passes new connections now
// (false on a nil dispatcher: BalanceShared, herd run), and how many times
// BalanceAuto switched, either way. It takes d.mu, which is never held
// for long.
func (d *dispatcher) mode() (passing bool, switches uint64) {
	if d == nil {
		return false, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.direct, d.switches
}

// connPair returns a SOCK_SEQPACKET socketpair: the primary's end as a
// connection and the worker's end as a file to pass to it.
func connPair() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: socketpair: %w", err)
	}
	pf := os.NewFile(uintptr(fds[0]), "herd-conns")
	defer pf.Close()
	c, err := net.FileConn(pf)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("cluster: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "herd-conns"), nil
}

// add registers a started worker's socket (not eligible until ready) and
// reads what the worker writes on it. d owns uc from now on.
func (d *dispatcher) add(id, pid int, uc *net.UnixConn) {
	if d == nil {
		return
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return
	}
	w := &dworker{id: id, pid: pid, uc: uc, rc: rc, pending: make(map[uint64]passedConn)}
	if shm, err := newShmCounts(); err != nil {
		// The worker reports every close in a record instead.
		d.log.Warn("balance: no shared memory for a worker's connection count", "worker", id, "pid", pid, "err", err)
	} else if err := shm.send(rc); err != nil {
		shm.unmap()
		d.log.Warn("balance: no shared memory for a worker's connection count", "worker", id, "pid", pid, "err", err)
	} else {
		w.shm = shm
	}
	d.mu.Lock()
	d.workers[pid] = w
	if d.direct {
		if w.shm == nil {
			// Its accepts could not be counted: pass again.
			d.setDirectLocked(false, 0)
		} else {
			d.sendModeLocked(w)
		}
	}
	d.order = append(d.order, w)
	sort.Slice(d.order, func(i, j int) bool {
		a, b := d.order[i], d.order[j]
		return a.id < b.id || a.id == b.id && a.pid < b.pid
	})
	d.mu.Unlock()
	go d.read(w)
}

// wantClosesLocked asks every worker that is not full to report each close
// in a record (want) or only in its next ack (not): the accept loop waits
// for one.
func (d *dispatcher) wantClosesLocked(want bool) {
	for _, w := range d.order {
		if !w.full {
			w.shm.want(want)
		}
	}
}

// open is how many connections w holds: passed and not refused, or
// accepted itself, and not closed.
func (w *dworker) open() int { return max(w.sent+w.shm.accepted()-w.shm.closes(), 0) }

// removeLocked forgets w (its socket reached EOF).
func (d *dispatcher) removeLocked(w *dworker) {
	delete(d.workers, w.pid)
	w.shm.unmap()
	w.shm = nil
	d.order = slices.DeleteFunc(d.order, func(x *dworker) bool { return x == w })
	if w.retry != nil {
		w.retry.Stop()
	}
}

// setEligible lets the dispatcher pass connections to worker pid (it is
// ready) or stops it (it drains or died). After setEligible(pid, false)
// returns, nothing more is sent to pid. Safe on a nil dispatcher.
func (d *dispatcher) setEligible(pid int, ok bool) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workers[pid]
	if w == nil || w.eligible == ok {
		return
	}
	w.eligible = ok
	if ok {
		d.flushLocked()
		d.cond.Broadcast()
	}
}

// close stops accepting; connections still in the kernel queue stay there
// (for a new primary after an upgrade). Idempotent, safe on nil.
func (d *dispatcher) close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.closed = true
	d.stopped.Store(true)
	if d.acceptFile != nil {
		_ = d.acceptFile.SetReadDeadline(time.Now()) // wakes the accept loop
	}
	d.cond.Broadcast()
	d.mu.Unlock()
}

// wait waits for the accept loop to return after close, at most t, and
// closes what nobody took.
func (d *dispatcher) wait(t time.Duration) {
	if d == nil {
		return
	}
	select {
	case <-d.doneC:
	case <-time.After(t):
	}
	d.mu.Lock()
	for _, c := range d.backlog {
		syscall.Close(c.fd)
	}
	d.backlog = nil
	d.mu.Unlock()
}

// run accepts connections until close, waiting (with the connections in
// the kernel queue) while no worker can take one. It accepts what the
// queue holds in one go (up to maxBatch, and no more than the workers have
// room for), chooses a worker for each, and passes each worker its share
// in one message: under connection churn that is one lock, and one sendmsg
// per worker, for several connections.
func (d *dispatcher) run() {
	defer close(d.doneC)
	if d.policy == BalanceAuto {
		go d.auto()
	}
	var f *os.File // nil while the workers accept (BalanceAuto's direct mode)
	var rc syscall.RawConn
	// dropLocked closes the pollable duplicate, if any: it leaves the
	// poller, and pollable makes a new one when the loop accepts again.
	dropLocked := func() {
		if f != nil {
			f.Close()
			f, rc, d.acceptFile = nil, nil, nil
		}
	}
	defer func() {
		d.mu.Lock()
		dropLocked()
		d.mu.Unlock()
	}()
	var err error
	var failing time.Duration
	// An accept that fails for want of descriptors can flap with every
	// connection that closes: one line per episode, then at most one a
	// acceptLogEvery, counting the failures in between.
	var lastLogged time.Time
	var unlogged int
	logged := false
	batch := make([]passedConn, 0, maxBatch)
	for {
		d.mu.Lock()
		room := 0
		waiting := false
		for d.direct && !d.closed {
			// Out of the poller, or the primary would wake at every
			// connection the workers accept.
			dropLocked()
			d.cond.Wait()
		}
		for !d.closed {
			if len(d.backlog) == 0 {
				if room = d.roomLocked(); room > 0 {
					break
				}
			}
			if !waiting {
				// Ask the workers to report their closes, then look again:
				// a close counted before the flag was seen is seen here.
				d.wantClosesLocked(true)
				waiting = true
				continue
			}
			d.cond.Wait()
		}
		if waiting {
			d.wantClosesLocked(false)
		}
		closed, direct := d.closed, d.direct
		d.mu.Unlock()
		if closed {
			return
		}
		if direct {
			continue // switched while waiting for room
		}
		if f == nil {
			if f, rc, err = d.pollable(); err != nil {
				d.log.Error("balance: cannot accept", "err", err)
				return
			}
		}
		batch, err = d.accept(rc, batch[:0], room)
		if err != nil {
			if d.stopped.Load() {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Woken to let the workers accept (direct mode, maybe
				// over already): a new duplicate, without the deadline.
				d.mu.Lock()
				dropLocked()
				d.mu.Unlock()
				continue
			}
			// Out of descriptors (EMFILE, ENFILE, ENOBUFS): the connection
			// waits in the queue; try again shortly, and say so once.
			if failing == 0 {
				unlogged++
				if time.Since(lastLogged) >= acceptLogEvery {
					d.log.Error("balance: the primary cannot accept connections; retrying", "err", err, "failures", unlogged)
					lastLogged, unlogged, logged = time.Now(), 0, true
				}
			}
			failing = min(max(2*failing, 5*time.Millisecond), 200*time.Millisecond)
			time.Sleep(failing)
			continue
		}
		if failing != 0 {
			if logged {
				d.log.Info("balance: the primary accepts connections again")
				logged = false
			}
			failing = 0
		}
		d.passed.Add(uint64(len(batch)))
		d.mu.Lock()
		d.passBatchLocked(batch)
		d.mu.Unlock()
	}
}

// auto is BalanceAuto's clock: every autoTick it reads the rate of new
// connections (those the accept loop took, or those the workers accepted
// themselves) and switches between passing and direct accepting. It
// returns when the accept loop does.
func (d *dispatcher) auto() {
	t := time.NewTicker(autoTick)
	defer t.Stop()
	high := AutoDirectRate * int(autoTick) / int(time.Second)
	hot, calm := 0, 0
	for {
		select {
		case <-d.doneC:
			return
		case <-t.C:
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		// This tick's new connections (n) and closes (c). Churn is many
		// new connections of which at least half as many closed: not a
		// proxy opening its pool, whose connections stay.
		n, c := 0, 0
		for _, w := range d.order {
			a, cl := w.shm.accepted(), w.shm.closes()
			n += a - w.seen
			c += cl - w.seenClosed
			w.seen, w.seenClosed = a, cl
		}
		n += int(d.passed.Swap(0)) //nolint:gosec // G115: a count of connections
		if !d.direct {
			if n >= high && 2*c >= n {
				hot++
			} else {
				hot = 0
			}
			if hot >= autoHot && d.canDirectLocked() {
				d.setDirectLocked(true, n)
				hot, calm = 0, 0
			}
		} else {
			if n >= high/4 && 2*c >= n {
				calm = 0
			} else {
				calm++
			}
			if calm >= autoCalm {
				d.setDirectLocked(false, n)
				hot, calm = 0, 0
			}
		}
		for _, w := range d.order {
			if w.direct != d.direct {
				d.sendModeLocked(w) // a socket that was full, or a new worker
			}
		}
		if len(d.backlog) > 0 {
			// Nothing else flushes it while the workers accept: no acks
			// come, and the accept loop waits.
			d.flushLocked()
			d.cond.Broadcast()
		}
		d.mu.Unlock()
	}
}

// canDirectLocked reports whether every worker counts its accepts in a
// shared page, without which the primary could not count its connections.
func (d *dispatcher) canDirectLocked() bool {
	for _, w := range d.order {
		if w.shm == nil {
			return false
		}
	}
	return len(d.order) > 0
}

// setDirectLocked switches BalanceAuto's mode; n is the last tick's count
// of new connections, for the log.
func (d *dispatcher) setDirectLocked(on bool, n int) {
	d.direct = on
	d.switches++
	for _, w := range d.order {
		d.sendModeLocked(w)
	}
	rate := n * int(time.Second/autoTick)
	if on {
		d.log.Info("balance: new connections come fast; the workers accept them from the shared queue", "per_second", rate)
		if d.acceptFile != nil {
			_ = d.acceptFile.SetReadDeadline(time.Now()) // wakes the accept loop, which waits
		}
	} else {
		d.log.Info("balance: new connections come slowly again; the primary passes them to the least busy worker", "per_second", rate)
		d.cond.Broadcast()
	}
}

// sendModeLocked tells w the mode (recDirect or recPass) without blocking;
// a full socket is tried again at the next tick.
func (d *dispatcher) sendModeLocked(w *dworker) {
	m := byte(recPass)
	if d.direct {
		m = recDirect
	}
	var serr error
	err := w.rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), []byte{m}, nil, nil, syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
		return true
	})
	if err != nil || !errors.Is(serr, syscall.EAGAIN) {
		// Told, or its socket is closed (it drains or died) and will
		// never be: only a full socket is worth another try.
		w.direct = d.direct
	}
}

// acceptLogEvery bounds how often the dispatcher logs failed accepts.
const acceptLogEvery = 10 * time.Second

// pollable returns a duplicate of the listening socket as a file the
// runtime's poller waits on (a TCPListener's RawConn cannot wait for
// readability, and a net.TCPConn per connection would cost the primary an
// epoll registration it does not need), and arranges for close to wake
// the accept loop. Closing it leaves the listening socket open.
func (d *dispatcher) pollable() (*os.File, syscall.RawConn, error) {
	nfd, err := dupSocket(d.ln)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: accept: dup: %w", err)
	}
	f := os.NewFile(uintptr(nfd), "herd-accept") // non-blocking, as the listener: pollable
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cluster: accept: %w", err)
	}
	d.mu.Lock()
	d.acceptFile = f
	stopped := d.closed || d.direct
	d.mu.Unlock()
	if stopped {
		_ = f.SetReadDeadline(time.Now())
	}
	return f, rc, nil
}

// accept appends to cs the connections waiting on the listening socket, at
// least one and at most max, parking in the runtime's poller until the
// first arrives. An error comes only with no connection.
func (d *dispatcher) accept(rc syscall.RawConn, cs []passedConn, max int) ([]passedConn, error) {
	var aerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			if d.stopped.Load() {
				aerr = net.ErrClosed // what waits stays in the queue
				return true
			}
			nfd, sa, err := accept4(int(fd))
			switch {
			case err == nil:
				cs = append(cs, passedConn{fd: nfd, ip: sockaddrIP(sa)})
				if len(cs) >= max {
					return true
				}
			case errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ECONNABORTED):
			case errors.Is(err, syscall.EAGAIN):
				return len(cs) > 0 // none yet: wait in the poller
			default:
				if len(cs) == 0 {
					aerr = err // else it comes back on the next call
				}
				return true
			}
		}
	})
	if len(cs) > 0 {
		return cs, nil
	}
	if aerr == nil {
		aerr = err
	}
	if d.stopped.Load() {
		return cs, net.ErrClosed
	}
	return cs, fmt.Errorf("cluster: accept: %w", aerr)
}

func sockaddrIP(sa syscall.Sockaddr) string {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.IP(a.Addr[:]).String()
	case *syscall.SockaddrInet6:
		return net.IP(a.Addr[:]).String()
	}
	return ""
}

// roomLocked returns how many connections the workers could take now, up
// to maxBatch.
func (d *dispatcher) roomLocked() int {
	room := 0
	for _, w := range d.order {
		if !d.canTakeLocked(w) {
			continue
		}
		if d.maxConns <= 0 {
			return maxBatch
		}
		room += d.maxConns - w.open()
	}
	return min(room, maxBatch)
}

// availableLocked reports whether some worker could take a connection now.
func (d *dispatcher) availableLocked() bool {
	for _, w := range d.order {
		if d.canTakeLocked(w) {
			return true
		}
	}
	return false
}

func (d *dispatcher) canTakeLocked(w *dworker) bool {
	return w.eligible && !w.full && (d.maxConns <= 0 || w.open() < d.maxConns)
}

// chooseLocked picks the worker for a connection from ip, skipping those
// in skip; nil when none can take it. It does not allocate.
func (d *dispatcher) chooseLocked(ip string, skip map[int]bool) *dworker {
	if d.policy == BalanceSticky && ip != "" {
		if e, ok := d.sticky[ip]; ok {
			if w := d.workers[e.pid]; w != nil && !skip[w.pid] && d.canTakeLocked(w) {
				return w
			}
		}
	}
	least, ties := -1, 0
	for _, w := range d.order {
		if skip[w.pid] || !d.canTakeLocked(w) {
			continue
		}
		w.cur = w.open()
		switch {
		case least < 0 || w.cur < least:
			least, ties = w.cur, 1
		case w.cur == least:
			ties++
		}
	}
	if ties == 0 {
		return nil
	}
	// Ties in turn, in the stable order of d.order.
	d.turn++
	k := d.turn % ties
	for _, w := range d.order {
		if skip[w.pid] || !w.eligible || w.full || w.cur != least {
			continue
		}
		if k == 0 {
			return w
		}
		k--
	}
	return nil
}

// passBatchLocked chooses a worker for each connection of cs, as passLocked
// would one by one, and sends each worker its share in one message.
func (d *dispatcher) passBatchLocked(cs []passedConn) {
	var chosen []*dworker
	for _, c := range cs {
		w := d.chooseLocked(c.ip, nil)
		if w == nil {
			d.passLocked(c, nil) // the backlog, or a draining worker as we stop
			continue
		}
		if len(w.batch) == 0 {
			chosen = append(chosen, w)
		}
		w.batch = append(w.batch, c)
		w.sent++ // counted now, so that the next choice sees it
		if d.policy == BalanceSticky && c.ip != "" {
			d.remember(c.ip, w.pid)
		}
	}
	for _, w := range chosen {
		b := w.batch
		w.batch = w.batch[:0]
		w.sent -= len(b)
		if d.sendLocked(w, b) {
			continue
		}
		for _, c := range b {
			d.passLocked(c, map[int]bool{w.pid: true})
		}
	}
}

// passLocked passes c to a worker, or keeps it in the backlog until one
// can take it. Workers in skip are not tried.
func (d *dispatcher) passLocked(c passedConn, skip map[int]bool) {
	for {
		w := d.chooseLocked(c.ip, skip)
		if w == nil && d.closed {
			// Stopping (shutdown, or an upgrade's hand-over) with a
			// connection accepted just before: a draining worker still
			// serves what reaches it before it closes its socket.
			w = d.anyLocked(skip)
		}
		if w == nil {
			d.backlog = append(d.backlog, c)
			return
		}
		if d.sendLocked(w, []passedConn{c}) {
			if d.policy == BalanceSticky && c.ip != "" {
				d.remember(c.ip, w.pid)
			}
			return
		}
		if skip == nil {
			skip = map[int]bool{}
		}
		skip[w.pid] = true
	}
}

// anyLocked returns a worker not in skip whose socket is still open,
// eligible or not.
func (d *dispatcher) anyLocked(skip map[int]bool) *dworker {
	for _, w := range d.order {
		if !skip[w.pid] {
			return w
		}
	}
	return nil
}

func (d *dispatcher) remember(ip string, pid int) {
	now := time.Now()
	if len(d.sticky) >= stickyMax {
		for k, e := range d.sticky {
			if now.Sub(e.last) > stickyIdle || d.workers[e.pid] == nil {
				delete(d.sticky, k)
			}
		}
	}
	d.sticky[ip] = stickyEntry{pid: pid, last: now}
}

// sendLocked passes cs (at most maxBatch) to w in one message, without
// blocking. It fails when w's socket is full or closed (the worker drains
// or died): the caller tries another.
func (d *dispatcher) sendLocked(w *dworker, cs []passedConn) bool {
	seq := d.seq + 1
	var b [batchLen]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint32(b[8:], uint32(len(cs))) //nolint:gosec // G115: at most maxBatch
	var fdsBuf [maxBatch]int
	fds := fdsBuf[:0]
	for _, c := range cs {
		fds = append(fds, c.fd)
	}
	oob := syscall.UnixRights(fds...)
	var serr error
	err := w.rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), b[:], oob, nil, syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
		return true
	})
	if err != nil || serr != nil {
		if serr != syscall.EAGAIN {
			w.eligible = false // closed: it drains or died
		}
		return false
	}
	d.seq += uint64(len(cs))
	for i, c := range cs {
		w.pending[seq+uint64(i)] = c
	}
	w.sent += len(cs)
	return true
}

// flushLocked passes what waits in the backlog.
func (d *dispatcher) flushLocked() {
	if len(d.backlog) == 0 {
		return
	}
	b := d.backlog
	d.backlog = nil
	for i, c := range b {
		if !d.availableLocked() {
			d.backlog = append(d.backlog, b[i:]...)
			return
		}
		d.passLocked(c, nil)
	}
}

// fullLocked stops passing connections to w, which could not take one for
// want of descriptors, until one of its connections closes or nackRetry
// passes.
func (d *dispatcher) fullLocked(w *dworker) {
	if w.full {
		return
	}
	w.full = true
	w.shm.want(true)
	if w.retry != nil {
		w.retry.Stop()
	}
	w.retry = time.AfterFunc(nackRetry, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if w.full {
			d.roomForLocked(w)
		}
	})
}

// roomForLocked lets w take connections again after it was full.
func (d *dispatcher) roomForLocked(w *dworker) {
	w.full = false
	d.flushLocked()
	d.cond.Broadcast()
}

// read handles worker w's records until EOF, then passes every connection
// w never acknowledged to another worker.
func (d *dispatcher) read(w *dworker) {
	buf := make([]byte, 64)
	for {
		n, err := w.uc.Read(buf)
		if err != nil || n == 0 {
			break
		}
		if n != recLen {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[1:9])
		count := uint64(binary.BigEndian.Uint32(buf[9:13]))
		closed := int(binary.BigEndian.Uint32(buf[13:17]))
		d.mu.Lock()
		switch buf[0] {
		case recAck:
			for s := seq; s < seq+count; s++ {
				if c, ok := w.pending[s]; ok {
					delete(w.pending, s)
					syscall.Close(c.fd)
				}
			}
		case recNack:
			d.fullLocked(w)
			for s := seq; s < seq+count; s++ {
				if c, ok := w.pending[s]; ok {
					delete(w.pending, s)
					w.sent--
					d.passLocked(c, map[int]bool{w.pid: true})
				}
			}
		}
		w.sent -= closed
		if buf[0] == recClosed || closed > 0 {
			if w.full {
				d.roomForLocked(w) // a descriptor freed up
			} else {
				d.cond.Broadcast() // a slot under the cap, maybe
			}
		}
		if len(d.backlog) > 0 {
			d.flushLocked() // w read its socket, or a slot freed up
			d.cond.Broadcast()
		}
		d.mu.Unlock()
	}
	w.uc.Close()
	d.mu.Lock()
	d.removeLocked(w)
	w.eligible = false
	for _, c := range w.pending {
		d.passLocked(c, nil)
	}
	n := len(w.pending)
	w.pending = nil
	d.mu.Unlock()
	if n > 0 {
		d.log.Info("balance: passed on connections a worker never took", "worker", w.id, "pid", w.pid, "connections", n)
	}
}
