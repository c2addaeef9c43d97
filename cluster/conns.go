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
// open, and which are idle (new, or between requests) since when. Its
// methods are safe for concurrent use.
type conns struct {
	open     atomic.Int64 // accepted and not yet closed
	draining atomic.Bool  // answer with Connection: close

	mu   sync.Mutex
	idle map[net.Conn]time.Time // since when each idle connection is idle
}

func newConns() *conns { return &conns{idle: make(map[net.Conn]time.Time)} }

// track is the http.Server's ConnState hook.
func (cs *conns) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		cs.open.Add(1)
		cs.setIdle(c, true)
	case http.StateIdle:
		cs.setIdle(c, true)
	case http.StateActive:
		cs.setIdle(c, false)
	case http.StateClosed, http.StateHijacked:
		cs.setIdle(c, false)
		cs.open.Add(-1)
	}
}

func (cs *conns) setIdle(c net.Conn, idle bool) {
	cs.mu.Lock()
	if idle {
		cs.idle[c] = time.Now()
	} else {
		delete(cs.idle, c)
	}
	cs.mu.Unlock()
}

// closeIdle closes the connections that have been idle for d or longer.
func (cs *conns) closeIdle(d time.Duration) {
	now := time.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c, since := range cs.idle {
		if now.Sub(since) >= d {
			c.Close() // its serving goroutine sees the close and reports StateClosed
			delete(cs.idle, c)
		}
	}
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
