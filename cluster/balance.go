package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Balance is how new connections are spread over the workers.
type Balance string

// Balancing policies. See the README's "Balancing" section for what each
// costs.
const (
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
const DefaultBalance = BalanceLeastConn

// Balances lists the policies ParseBalance accepts.
var Balances = []Balance{BalanceLeastConn, BalanceShared, BalanceSticky}

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
	return "", fmt.Errorf("cluster: unknown balance policy %q: must be least-conn, shared or sticky", s)
}

// passes reports whether the primary accepts and passes connections under b.
func (b Balance) passes() bool { return b == BalanceLeastConn || b == BalanceSticky }

// Records a worker writes on its connection socket (kind byte, then a
// big-endian uint64 sequence number). The primary writes one record per
// connection: the sequence number, with the descriptor as SCM_RIGHTS.
const (
	recAck    = 'A' // the worker holds connection seq; the primary drops its copy
	recNack   = 'N' // the worker could not take connection seq (no descriptor left)
	recClosed = 'C' // one connection the worker was passed has closed
	recLen    = 9
)

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
	id, pid  int
	uc       *net.UnixConn
	rc       syscall.RawConn
	open     int  // passed and not yet reported closed
	eligible bool // ready and not draining
	pending  map[uint64]passedConn
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
// No connection is lost to a worker's exit: the primary keeps its copy of
// every passed descriptor until the worker acknowledges it (the worker
// acks before reading a byte), and when a worker's socket reaches EOF
// (it exited, or drained and closed it) every connection it never
// acknowledged is passed to another worker.
type dispatcher struct {
	ln       *net.TCPListener
	policy   Balance
	maxConns int
	log      *slog.Logger
	doneC    chan struct{} // closed when the accept loop has returned

	mu      sync.Mutex
	cond    *sync.Cond // an eligible worker, a free slot, or close
	workers map[int]*dworker
	sticky  map[string]stickyEntry
	backlog []passedConn // accepted, no worker could take them yet
	seq     uint64
	turn    int // rotates ties
	closed  bool
}

func newDispatcher(ln *net.TCPListener, policy Balance, maxConns int, log *slog.Logger) *dispatcher {
	d := &dispatcher{
		ln: ln, policy: policy, maxConns: maxConns, log: log,
		doneC:   make(chan struct{}),
		workers: make(map[int]*dworker),
		sticky:  make(map[string]stickyEntry),
	}
	d.cond = sync.NewCond(&d.mu)
	return d
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
	d.mu.Lock()
	d.workers[pid] = w
	d.mu.Unlock()
	go d.read(w)
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
// the kernel queue) while no worker can take one.
func (d *dispatcher) run() {
	defer close(d.doneC)
	rc, err := d.ln.SyscallConn()
	if err != nil {
		d.log.Error("balance: cannot accept", "err", err)
		return
	}
	var failing time.Duration
	for {
		d.mu.Lock()
		for !d.closed && (len(d.backlog) > 0 || !d.availableLocked()) {
			d.cond.Wait()
		}
		closed := d.closed
		d.mu.Unlock()
		if closed {
			return
		}
		fd, ip, err := d.accept(rc)
		if err != nil {
			if d.isClosed() {
				return
			}
			// Out of descriptors (EMFILE, ENFILE, ENOBUFS): the connection
			// waits in the queue; try again shortly, and say so once.
			if failing == 0 {
				d.log.Error("balance: the primary cannot accept connections; retrying", "err", err)
			}
			failing = min(max(2*failing, 5*time.Millisecond), 200*time.Millisecond)
			time.Sleep(failing)
			continue
		}
		if failing != 0 {
			d.log.Info("balance: the primary accepts connections again")
			failing = 0
		}
		d.mu.Lock()
		d.passLocked(passedConn{fd: fd, ip: ip}, nil)
		d.mu.Unlock()
	}
}

func (d *dispatcher) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// acceptPoll bounds how long the accept loop waits in poll(2) before it
// looks at d.closed again.
const acceptPoll = 100 * time.Millisecond

// accept takes one connection off the listening socket, waiting for one
// in poll(2) on this goroutine's thread: a TCPListener's RawConn cannot
// wait for readability, and a net.TCPConn per connection would cost the
// primary an epoll registration it does not need.
func (d *dispatcher) accept(rc syscall.RawConn) (int, string, error) {
	var nfd int
	var sa syscall.Sockaddr
	var aerr error
	for {
		if err := rc.Control(func(fd uintptr) {
			for {
				if d.isClosed() {
					aerr = syscall.EAGAIN // leave it in the queue
					return
				}
				nfd, sa, aerr = accept4(int(fd))
				if errors.Is(aerr, syscall.EINTR) || errors.Is(aerr, syscall.ECONNABORTED) {
					continue
				}
				if !errors.Is(aerr, syscall.EAGAIN) {
					return
				}
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}} //nolint:gosec // G115: a file descriptor, which the kernel keeps below 2^31 (an int in C)
				_, _ = unix.Poll(pfd, int(acceptPoll/time.Millisecond))
				if pfd[0].Revents == 0 {
					return // timed out: the caller looks at d.closed
				}
			}
		}); err != nil {
			return -1, "", fmt.Errorf("cluster: accept: %w", err)
		}
		if errors.Is(aerr, syscall.EAGAIN) {
			if d.isClosed() {
				return -1, "", net.ErrClosed
			}
			continue
		}
		break
	}
	if aerr != nil {
		return -1, "", fmt.Errorf("cluster: accept: %w", aerr)
	}
	var ip string
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		ip = net.IP(a.Addr[:]).String()
	case *syscall.SockaddrInet6:
		ip = net.IP(a.Addr[:]).String()
	}
	return nfd, ip, nil
}

// availableLocked reports whether some worker could take a connection now.
func (d *dispatcher) availableLocked() bool {
	for _, w := range d.workers {
		if d.canTakeLocked(w) {
			return true
		}
	}
	return false
}

func (d *dispatcher) canTakeLocked(w *dworker) bool {
	return w.eligible && (d.maxConns <= 0 || w.open < d.maxConns)
}

// chooseLocked picks the worker for a connection from ip, skipping those
// in skip; nil when none can take it.
func (d *dispatcher) chooseLocked(ip string, skip map[int]bool) *dworker {
	if d.policy == BalanceSticky && ip != "" {
		if e, ok := d.sticky[ip]; ok {
			if w := d.workers[e.pid]; w != nil && !skip[w.pid] && d.canTakeLocked(w) {
				return w
			}
		}
	}
	var cands []*dworker
	least := -1
	for _, w := range d.workers {
		if skip[w.pid] || !d.canTakeLocked(w) {
			continue
		}
		switch {
		case least < 0 || w.open < least:
			least, cands = w.open, append(cands[:0], w)
		case w.open == least:
			cands = append(cands, w)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	// Ties in turn, in a stable order (map iteration is random).
	sort.Slice(cands, func(i, j int) bool {
		return cands[i].id < cands[j].id || cands[i].id == cands[j].id && cands[i].pid < cands[j].pid
	})
	d.turn++
	return cands[d.turn%len(cands)]
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
		if d.sendLocked(w, c) {
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
	for _, w := range d.workers {
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

// sendLocked passes c to w without blocking. It fails when w's socket is
// full or closed (the worker drains or died): the caller tries another.
func (d *dispatcher) sendLocked(w *dworker, c passedConn) bool {
	d.seq++
	seq := d.seq
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	oob := syscall.UnixRights(c.fd)
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
	w.pending[seq] = c
	w.open++
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
		seq := binary.BigEndian.Uint64(buf[1:recLen])
		d.mu.Lock()
		switch buf[0] {
		case recAck:
			if c, ok := w.pending[seq]; ok {
				delete(w.pending, seq)
				syscall.Close(c.fd)
			}
		case recNack:
			if c, ok := w.pending[seq]; ok {
				delete(w.pending, seq)
				w.open--
				d.passLocked(c, map[int]bool{w.pid: true})
			}
		case recClosed:
			if w.open > 0 {
				w.open--
			}
			if d.maxConns > 0 {
				d.cond.Broadcast() // a slot under the cap
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
	delete(d.workers, w.pid)
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
