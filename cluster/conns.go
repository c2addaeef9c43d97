package cluster

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// drainIdleAfter is how long a draining worker leaves a connection that is
// idle between requests open before closing it. Closing an idle keep-alive
// connection races with a request the client may be sending on it at that
// instant, and that request is lost (a client may resend it, but only if it
// is idempotent). So a draining worker answers the next request on each
// connection with "Connection: close" instead, and closes only connections
// whose client has stayed silent this long: no more of a race than any
// server's idle timeout.
const drainIdleAfter = time.Second

// conns tracks a server's connections, as its ConnState hook: how many are
// open, and since when each is idle (new, or between requests). A
// connection's record is added when it opens and removed when it closes; a
// request only looks its record up (a sync.Map read, no lock once the
// connection has been open a while) and stores a time in it. Its methods
// are safe for concurrent use.
type conns struct {
	open     atomic.Int64 // accepted and not yet closed
	draining atomic.Bool  // answer with Connection: close
	all      sync.Map     // net.Conn -> *connState
}

// connState is one connection's idleness: the UnixNano time it went idle,
// or 0 while it serves a request.
type connState struct{ idleSince atomic.Int64 }

func newConns() *conns { return &conns{} }

// track is the http.Server's ConnState hook. net/http calls it from the
// connection's own goroutine, so calls for one connection never overlap.
func (cs *conns) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s := &connState{}
		s.idleSince.Store(time.Now().UnixNano())
		cs.all.Store(c, s)
		cs.open.Add(1)
	case http.StateActive, http.StateIdle:
		v, ok := cs.all.Load(c)
		if !ok {
			return
		}
		s := v.(*connState)
		if st == http.StateActive {
			s.idleSince.Store(0)
		} else {
			s.idleSince.Store(time.Now().UnixNano())
		}
	case http.StateClosed, http.StateHijacked:
		cs.all.Delete(c)
		cs.open.Add(-1)
	}
}

// closeIdle closes the connections that have been idle for d or longer,
// counting from from at the earliest: a client silent for a while before
// the drain began still gets d to send its next request.
func (cs *conns) closeIdle(d time.Duration, from time.Time) {
	cutoff, start := time.Now().Add(-d).UnixNano(), from.UnixNano()
	cs.all.Range(func(k, v any) bool {
		if since := v.(*connState).idleSince.Load(); since != 0 && max(since, start) <= cutoff {
			k.(net.Conn).Close() // its serving goroutine sees the close and reports StateClosed
		}
		return true
	})
}

// wrap makes h answer "Connection: close" once draining starts, so that
// every client learns from its next response that the connection ends, and
// sends its following request elsewhere.
func (cs *conns) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if cs.draining.Load() {
			rw.Header().Set("Connection", "close")
		}
		h.ServeHTTP(rw, r)
	})
}
