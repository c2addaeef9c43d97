package cluster

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// pipeConn is one end of a net.Pipe that remembers it was closed.
type pipeConn struct {
	net.Conn
	closed bool
}

func (c *pipeConn) Close() error { c.closed = true; return c.Conn.Close() }

func newPipeConn(t *testing.T) *pipeConn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &pipeConn{Conn: a}
}

// A draining worker closes a connection only once its client has been
// silent for drainIdleAfter since the drain began, never one serving a
// request.
func TestCloseIdleGivesEveryClientTheGraceFromTheDrain(t *testing.T) {
	cs := newConns()
	idle, busy := newPipeConn(t), newPipeConn(t)
	for _, c := range []*pipeConn{idle, busy} {
		cs.track(c, http.StateNew)
		cs.track(c, http.StateActive)
		cs.track(c, http.StateIdle)
	}
	cs.track(busy, http.StateActive)
	// The idle one's client has been silent for an hour.
	v, _ := cs.all.Load(idle)
	v.(*connState).idleSince.Store(time.Now().Add(-time.Hour).UnixNano())
	if got := cs.open.Load(); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}

	cs.closeIdle(drainIdleAfter, time.Now()) // the drain just began
	if idle.closed || busy.closed {
		t.Fatalf("right at the drain's start: idle closed %v, busy closed %v; want neither", idle.closed, busy.closed)
	}
	cs.closeIdle(drainIdleAfter, time.Now().Add(-drainIdleAfter)) // a grace period later
	if !idle.closed || busy.closed {
		t.Fatalf("after the grace: idle closed %v, busy closed %v; want only the idle one", idle.closed, busy.closed)
	}
	cs.track(idle, http.StateClosed)
	if got := cs.open.Load(); got != 1 {
		t.Errorf("open = %d after one closed, want 1", got)
	}
}
