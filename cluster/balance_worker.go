package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fdConns names the socket on which a worker receives connections passed
// by the primary (policies auto, least-conn and sticky).
const fdConns = "herd-conns"

// acceptStats counts a worker's failures to take a connection (out of
// descriptors), for its heartbeat. Safe for concurrent use.
type acceptStats struct {
	errors atomic.Uint64
	last   atomic.Value  // string
	failC  chan struct{} // told of each failure without blocking; nil: nobody listens (health.go)
}

func (s *acceptStats) fail(err error) {
	s.errors.Add(1)
	s.last.Store(err.Error())
	s.signalFail()
}

func (s *acceptStats) lastError() string {
	v, _ := s.last.Load().(string)
	return v
}

// acceptBackoff paces retries after a failed accept: the connection waits
// in the queue (or goes to another worker) instead of the worker spinning.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = 200 * time.Millisecond
)

func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, acceptBackoffMin), acceptBackoffMax)
}

// resourceErr reports whether an accept failed for want of descriptors or
// memory, which passes once connections close.
func resourceErr(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// passedListener is a worker's listener under a passing policy: Accept
// returns the connections the primary passes on the worker's connection
// socket and, under BalanceAuto's direct mode, those the worker accepts
// from the shared queue itself. It acknowledges each message's
// connections before returning the first of them (so before a byte is
// read from any), and tells the primary how many have closed (and, in
// direct mode, how many it accepted) in the page they share, or in its
// next record.
//
// Two goroutines feed Accept, once it is first called: one reads the
// connection socket, the other (only in direct mode) accepts from the
// shared queue. Each hands over one connection at a time, so what is not
// yet returned waits in the socket or in the kernel's queue.
//
// Close stops the primary's further sends (shutdown of the socket's read
// side: the primary's sendmsg fails and it picks another worker) and the
// direct accepting, and lets Accept return, one by one, the connections
// already queued on the socket; after the last, Accept returns
// net.ErrClosed.
type passedListener struct {
	uc    *net.UnixConn
	addr  net.Addr
	stats *acceptStats

	closeOnce sync.Once
	closedC   chan struct{} // closed by Close

	// Closes not yet reported, and whether a Close is reporting them: a
	// record carries every close counted before it, so closes that come
	// together cost one record.
	closes    atomic.Uint32
	reporting atomic.Bool
	shm       atomic.Pointer[shmCounts] // from the primary's first message; nil: count in records

	startOnce sync.Once
	connC     chan net.Conn  // unbuffered: from the feeding goroutines to Accept; closed after both return
	feeders   sync.WaitGroup // the socket reader, and the direct acceptor while there is one

	dmu     sync.Mutex      // guards what follows
	lnFD    int             // the shared listening socket, outside any poller; -1: none (closed by Close)
	dln     *sharedListener // the direct acceptor's, in direct mode
	open    *atomic.Int64   // the worker's open connections, for the direct acceptor's cap; nil: no cap
	max     int64
	stopped bool // Close was called

	// Owned by the socket reader.
	queue []net.Conn // taken and acknowledged, not yet handed over
	buf   []byte
	oob   []byte
}

// newPassedListener reads passed connections from f (the worker's end of
// its connection socket, closed here). lnFD is a duplicate of the shared
// listening socket, not in any poller, for direct mode (-1 for none); the
// listener owns it.
func newPassedListener(f *os.File, addr net.Addr, lnFD int, stats *acceptStats) (*passedListener, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("cluster: inherited %s: %w", fdConns, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("cluster: inherited %s is not a unix socket", fdConns)
	}
	return &passedListener{
		uc: uc, addr: addr, stats: stats, closedC: make(chan struct{}), lnFD: lnFD, connC: make(chan net.Conn),
		buf: make([]byte, 2*batchLen), oob: make([]byte, syscall.CmsgSpace(4*maxBatch)),
	}, nil
}

// setCap bounds what the direct acceptor takes: not while open holds max
// connections (0: no cap). Call it before the first Accept.
func (l *passedListener) setCap(open *atomic.Int64, max int64) {
	l.dmu.Lock()
	l.open, l.max = open, max
	l.dmu.Unlock()
}

func (l *passedListener) Addr() net.Addr { return l.addr }

func (l *passedListener) Close() error {
	l.closeOnce.Do(func() {
		_ = l.uc.CloseRead()
		close(l.closedC)
		l.dmu.Lock()
		l.stopped = true
		if l.dln != nil {
			_ = l.dln.Close()
			l.dln = nil
		}
		if l.lnFD >= 0 {
			syscall.Close(l.lnFD)
			l.lnFD = -1
		}
		l.dmu.Unlock()
	})
	return nil
}

// send writes one record, with the closes counted so far.
func (l *passedListener) send(kind byte, seq uint64, count int) {
	var b [recLen]byte
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:9], seq)
	binary.BigEndian.PutUint32(b[9:13], uint32(count)) //nolint:gosec // G115: at most maxBatch
	binary.BigEndian.PutUint32(b[13:17], l.closes.Swap(0))
	_, _ = l.uc.Write(b[:]) // fails only once the primary is gone
}

// closed counts one passed connection's close: in the page shared with the
// primary (a record only when the primary waits for one), or else in a
// record, unless a report under way will carry it.
func (l *passedListener) closed() {
	if shm := l.shm.Load(); shm != nil {
		if shm.closeOne() {
			l.send(recClosed, 0, 0)
		}
		return
	}
	l.closes.Add(1)
	for l.closes.Load() > 0 && l.reporting.CompareAndSwap(false, true) {
		if l.closes.Load() > 0 {
			l.send(recClosed, 0, 0)
		}
		l.reporting.Store(false)
	}
}

func (l *passedListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() {
		l.feeders.Add(1)
		go l.read()
		go func() {
			l.feeders.Wait()
			close(l.connC)
		}()
	})
	c, ok := <-l.connC
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// read hands over the connections passed on the socket until it is done.
func (l *passedListener) read() {
	defer l.feeders.Done()
	for {
		for len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.connC <- c
		}
		if err := l.receive(); err != nil {
			return
		}
	}
}

// setDirect starts (on) or stops the direct acceptor: BalanceAuto's mode,
// as the primary's last recDirect or recPass said.
func (l *passedListener) setDirect(on bool) {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if l.stopped || on == (l.dln != nil) {
		return
	}
	if !on {
		_ = l.dln.Close() // its Accept returns; the acceptor hands over what it holds and returns
		l.dln = nil
		return
	}
	if l.shm.Load() == nil {
		return // its accepts could not be counted; the primary's page was never mapped
	}
	ln, err := l.directListenerLocked()
	if err != nil {
		// The primary passes nothing meanwhile: the other workers accept.
		l.stats.fail(err)
		return
	}
	l.dln = ln
	l.feeders.Add(1) // the reader, which called us, still counts: Wait has not returned
	go l.acceptDirect(ln)
}

func (l *passedListener) directListenerLocked() (*sharedListener, error) {
	if l.lnFD < 0 {
		return nil, errors.New("cluster: direct accepting: no shared socket")
	}
	fd, err := unix.FcntlInt(uintptr(l.lnFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cluster: direct accepting: %w", err)
	}
	f := os.NewFile(uintptr(fd), "herd-direct")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("cluster: direct accepting: %w", err)
	}
	open := l.open
	if open == nil {
		open = new(atomic.Int64)
	}
	return &sharedListener{Listener: ln, open: open, max: l.max, stats: l.stats}, nil
}

// acceptDirect hands over what ln accepts until ln is closed, counting each
// connection in the shared page before it can close.
func (l *passedListener) acceptDirect(ln *sharedListener) {
	defer l.feeders.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			l.dmu.Lock()
			if l.dln == ln {
				// Not closed by setDirect or Close: it failed. Say so, and
				// let the next recDirect start another.
				l.dln = nil
				_ = ln.Close()
				l.stats.fail(fmt.Errorf("cluster: direct accepting: %w", err))
			}
			l.dmu.Unlock()
			return
		}
		l.shm.Load().acceptOne()
		l.connC <- l.wrap(c)
	}
}

// receive reads one message of the primary's and queues the connections it
// carries, acknowledging those it took and refusing (nack) those it could
// not: the primary still holds those and passes them to another worker at
// once. It returns an error only when the socket is done.
func (l *passedListener) receive() error {
	n, oobn, flags, _, err := l.uc.ReadMsgUnix(l.buf, l.oob)
	if err != nil || n == 0 && oobn == 0 {
		// EOF: the queue is empty after Close, or the primary is gone
		// (its IPC link's EOF drains this worker, which calls Close).
		<-l.closedC
		l.uc.Close()
		return net.ErrClosed
	}
	fds := rights(l.oob[:oobn])
	if n == 1 && oobn == 0 && (l.buf[0] == recDirect || l.buf[0] == recPass) {
		l.setDirect(l.buf[0] == recDirect)
		return nil
	}
	if n == 1 && l.buf[0] == recShm && len(fds) == 1 && l.shm.Load() == nil {
		if shm, err := mapShm(fds[0]); err == nil {
			l.shm.Store(shm)
		}
		closeAll(fds)
		return nil
	}
	if n != batchLen {
		closeAll(fds)
		return nil
	}
	seq := binary.BigEndian.Uint64(l.buf[:8])
	count := int(binary.BigEndian.Uint32(l.buf[8:batchLen]))
	if len(fds) > count {
		closeAll(fds)
		return nil
	}
	if flags&syscall.MSG_CTRUNC != 0 || len(fds) < count {
		// Out of descriptors: the kernel installed the first ones that
		// fit and dropped the rest, which are refused below.
		l.stats.fail(fmt.Errorf("cluster: receiving a connection: %w", syscall.EMFILE))
	}
	took := 0
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "conn")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			closeAll(fds[i+1:])
			l.stats.fail(err)
			break
		}
		took++
		l.queue = append(l.queue, l.wrap(c))
	}
	if took > 0 {
		l.send(recAck, seq, took)
	}
	if took < count {
		l.send(recNack, seq+uint64(took), count-took) //nolint:gosec // G115: took ≥ 0
	}
	return nil
}

func rights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// wrap makes c count its close for the primary.
func (l *passedListener) wrap(c net.Conn) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &passedTCPConn{TCPConn: tc, l: l}
	}
	return &passedOtherConn{Conn: c, l: l}
}

// passedTCPConn tells the primary when it closes. It embeds *net.TCPConn so
// that net/http keeps its fast paths (ReadFrom, CloseWrite).
type passedTCPConn struct {
	*net.TCPConn
	l    *passedListener
	once sync.Once
}

func (c *passedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.l.closed)
	return err
}

type passedOtherConn struct {
	net.Conn
	l    *passedListener
	once sync.Once
}

func (c *passedOtherConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.closed)
	return err
}

// sharedListener is a worker's listener under BalanceShared: it accepts
// from the shared queue, but not while the worker holds max connections
// (they wait in the queue for another worker, or for this one), and it
// backs off instead of spinning when it runs out of descriptors.
type sharedListener struct {
	net.Listener
	open   *atomic.Int64 // the worker's open connections
	max    int64         // 0: no cap
	stats  *acceptStats
	closed atomic.Bool
}

// capPoll is how often a worker at its connection cap looks again.
const capPoll = time.Millisecond

func (l *sharedListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

func (l *sharedListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		for l.max > 0 && l.open.Load() >= l.max && !l.closed.Load() {
			time.Sleep(capPoll)
		}
		c, err := l.Listener.Accept()
		if err == nil || !resourceErr(err) || l.closed.Load() {
			return c, err
		}
		l.stats.fail(err)
		backoff = nextBackoff(backoff)
		time.Sleep(backoff)
	}
}
