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
)

// fdConns names the socket on which a worker receives connections passed
// by the primary (policies least-conn and sticky).
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
// socket. It acknowledges each one before returning it (so before a byte is
// read from it), and tells the primary when each closes.
//
// Close stops the primary's further sends (shutdown of the socket's read
// side: the primary's sendmsg fails and it picks another worker) and lets
// Accept return, one by one, the connections already queued on the socket;
// after the last, Accept returns net.ErrClosed.
type passedListener struct {
	uc    *net.UnixConn
	addr  net.Addr
	stats *acceptStats

	closeOnce sync.Once
	closedC   chan struct{} // closed by Close
}

func newPassedListener(f *os.File, addr net.Addr, stats *acceptStats) (*passedListener, error) {
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
	return &passedListener{uc: uc, addr: addr, stats: stats, closedC: make(chan struct{})}, nil
}

func (l *passedListener) Addr() net.Addr { return l.addr }

func (l *passedListener) Close() error {
	l.closeOnce.Do(func() {
		_ = l.uc.CloseRead()
		close(l.closedC)
	})
	return nil
}

func (l *passedListener) send(kind byte, seq uint64) {
	var b [recLen]byte
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], seq)
	_, _ = l.uc.Write(b[:]) // fails only once the primary is gone
}

func (l *passedListener) Accept() (net.Conn, error) {
	buf := make([]byte, 16)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	var backoff time.Duration
	for {
		n, oobn, flags, _, err := l.uc.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			// EOF: the queue is empty after Close, or the primary is gone
			// (its IPC link's EOF drains this worker, which calls Close).
			<-l.closedC
			l.uc.Close()
			return nil, net.ErrClosed
		}
		fds := rights(oob[:oobn])
		if n != 8 {
			closeAll(fds)
			continue
		}
		seq := binary.BigEndian.Uint64(buf[:8])
		var c net.Conn
		if flags&syscall.MSG_CTRUNC != 0 || len(fds) != 1 {
			closeAll(fds)
			err = fmt.Errorf("cluster: receiving a connection: %w", syscall.EMFILE)
		} else {
			f := os.NewFile(uintptr(fds[0]), "conn")
			c, err = net.FileConn(f)
			f.Close()
		}
		if err != nil {
			// The primary still holds the connection and passes it on.
			l.send(recNack, seq)
			l.stats.fail(err)
			backoff = nextBackoff(backoff)
			time.Sleep(backoff)
			continue
		}
		l.send(recAck, seq)
		if tc, ok := c.(*net.TCPConn); ok {
			return &passedTCPConn{TCPConn: tc, l: l}, nil
		}
		return &passedOtherConn{Conn: c, l: l}, nil
	}
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

// passedTCPConn tells the primary when it closes. It embeds *net.TCPConn so
// that net/http keeps its fast paths (ReadFrom, CloseWrite).
type passedTCPConn struct {
	*net.TCPConn
	l    *passedListener
	once sync.Once
}

func (c *passedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() { c.l.send(recClosed, 0) })
	return err
}

type passedOtherConn struct {
	net.Conn
	l    *passedListener
	once sync.Once
}

func (c *passedOtherConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.send(recClosed, 0) })
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
