package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Host is the primary's side of the embedded store: it answers the
// workers' calls (Calls for NewRemote's JSON protocol, DataCalls for
// Remote's, values as bytes) from one Store, and knows the two moments a
// cluster's primary needs: a binary upgrade's new primary, which opens the
// store only once the old one has let go of it (NewHostOpening), and the
// handover, after which this primary's draining workers must not write any
// more (Release). In the primary:
//
//	h := store.NewHost(st)
//	opts.Calls, opts.DataCalls, opts.OnHandover = h.Calls, h.DataCalls, h.Release
//
// and store.Remote(w) in each worker. Its methods are safe for concurrent
// use.
type Host struct {
	readyC   chan struct{} // closed once st is set (or the opening gave up)
	released atomic.Bool   // handed over: refuse every call

	mu       sync.Mutex // guards closed, and st until readyC is closed
	st       Store
	closed   bool
	isClosed atomic.Bool // closed, for the calls' path
}

// NewHost returns a Host serving st. The Host owns st: Release and Close
// close it.
func NewHost(st Store) *Host {
	h := &Host{readyC: make(chan struct{}), st: st}
	close(h.readyC)
	return h
}

// hostRetry is how often NewHostOpening tries again.
const hostRetry = 100 * time.Millisecond

// NewHostOpening returns a Host whose store is not open yet: it calls open
// in a goroutine, again every 100 ms while it fails (a bbolt file the
// previous primary still holds during a binary upgrade), until it succeeds
// or ctx ends. Calls meanwhile wait for it within their own context and
// then fail with ErrUnavailable; none is refused for arriving early.
// onOpen, if not nil, is called once the store is open (to log it),
// before any call is answered from it.
func NewHostOpening(ctx context.Context, open func() (Store, error), onOpen func()) *Host {
	h := &Host{readyC: make(chan struct{})}
	go func() {
		for {
			st, err := open()
			if err == nil {
				h.mu.Lock()
				if h.closed {
					st.Close()
				} else {
					h.st = st
				}
				h.mu.Unlock()
				// onOpen first: what it reports (the file is open) is
				// true before any call is answered from the store.
				if onOpen != nil {
					onOpen()
				}
				close(h.readyC)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(hostRetry):
			}
		}
	}()
	return h
}

// store waits until the store is open or ctx ends.
func (h *Host) store(ctx context.Context) (Store, error) {
	select {
	case <-h.readyC:
		// No lock on this path, taken by every call: st is set before
		// readyC is closed and never changes after.
		if h.st == nil || h.isClosed.Load() {
			return nil, ErrClosed
		}
		return h.st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the store is still held by the previous primary", ErrUnavailable)
	}
}

// errReleased is the answer after Release.
var errReleased = fmt.Errorf("%w: handed over to the new primary", ErrUnavailable)

// Calls answers NewRemote's calls (see Serve for the protocol): a
// cluster.CallHandler. After Release every call fails with an error
// wrapping ErrUnavailable; so does a call whose context ends while the
// store is still opening. The worker's side reports any failure as
// ErrUnavailable: a 503, never a write taken for made.
func (h *Host) Calls(ctx context.Context, method string, body json.RawMessage) (any, error) {
	st, err := h.get(ctx)
	if err != nil {
		return nil, err
	}
	reply, _, err := serve(ctx, st, method, body, nil)
	return reply, err
}

// DataCalls answers Remote's calls, whose values travel as bytes beside
// the JSON: a cluster.DataCallHandler. Otherwise as Calls.
func (h *Host) DataCalls(ctx context.Context, method string, body json.RawMessage, data []byte) (any, []byte, error) {
	st, err := h.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return serve(ctx, st, method, body, data)
}

func (h *Host) get(ctx context.Context) (Store, error) {
	// Checked before the store: after a handover the new primary owns the
	// data, and a write this primary made now would be lost or, with
	// bbolt, contend for the file the new primary holds.
	if h.released.Load() {
		return nil, errReleased
	}
	return h.store(ctx)
}

// Release hands the store over (cluster.Options.OnHandover): every later
// call fails with ErrUnavailable, and the store is closed so that a new
// primary can open its file. A call already running when Release is called
// finishes, or fails as the closed store makes it. Idempotent.
func (h *Host) Release() {
	h.released.Store(true)
	h.Close()
}

// Close closes the store (or, still opening, closes it as soon as it
// opens). Calls then fail with ErrUnavailable on the workers' side.
// Idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.isClosed.Store(true)
	if h.st != nil {
		return h.st.Close()
	}
	return nil
}
