package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/ipc"
	"github.com/herd-go/herd/internal/listen"
	"github.com/herd-go/herd/internal/procstat"
)

// Names of the inherited descriptors.
const (
	fdHTTP = "http"
	fdIPC  = "herd-ipc"
)

// IPC methods between primary and workers.
const (
	msgReady     = "ready"
	msgHeartbeat = "heartbeat"
	msgDrain     = "drain"
	callWorkers  = "cluster.workers"
)

// primaryGoneTimeout is how long a worker whose primary died keeps
// finishing in-flight requests before it exits.
const primaryGoneTimeout = time.Second

// Heartbeat is what a worker reports to the primary periodically.
type Heartbeat struct {
	Requests   uint64 `json:"requests"`
	RSS        uint64 `json:"rss"`
	HeapAlloc  uint64 `json:"heapAlloc"`
	Goroutines int    `json:"goroutines"`
	// Conns is how many connections the worker holds open (Serve's).
	Conns int64 `json:"conns"`
	// AcceptErrors counts the times the worker could not take a
	// connection (out of descriptors); AcceptError is the latest.
	AcceptErrors uint64 `json:"acceptErrors,omitempty"`
	AcceptError  string `json:"acceptError,omitempty"`
	// AcceptFailing: the worker's accepts fail now (it has no descriptor
	// to spare, health.go); the primary shows it as StateUnhealthy.
	AcceptFailing bool `json:"acceptFailing,omitempty"`

	Figures `json:"figures"` // request figures (metrics.go)
}

type drainMsg struct {
	TimeoutMS int64 `json:"timeoutMs"`
}

// Worker is a worker process's view of its cluster: its identity, the
// shared listener, and its link to the primary. Its methods are safe for
// concurrent use.
type Worker struct {
	// ID is the worker's slot, 1..N, stable across restarts (0 with
	// Options.Single).
	ID int

	ln   net.Listener
	conn *ipc.Conn // nil with Options.Single
	log  *slog.Logger
	opts Options

	requests atomic.Uint64
	accept   acceptStats
	health   acceptHealth          // whether accepts fail now (health.go)
	lastRSS  atomic.Uint64         // the latest RSS read, for a heartbeat that cannot read it
	conns    atomic.Pointer[conns] // Serve's connections, once serving
	metrics  *reqMetrics           // nil: not counted (metrics.go)
	readyC   chan struct{}         // closed by Ready
	ready    sync.Once

	mu           sync.Mutex
	drainTimeout time.Duration // guarded by mu

	unreadyC    chan struct{} // closed by markUnready (draindelay.go)
	unreadyOnce sync.Once
}

// Listener returns what the worker accepts connections from: the shared
// socket (BalanceShared), or the connections the primary passes to this
// worker (the other policies; they report their closing to the primary
// when closed). Serve uses it; call it only to run a server of your own
// (then call Ready once serving, and close every connection you accept).
func (w *Worker) Listener() net.Listener { return w.ln }

// Logger returns the worker's logger. In a clustered worker it writes JSON
// lines that the primary re-emits with the worker's id and pid attached.
func (w *Worker) Logger() *slog.Logger { return w.log }

// Ready tells the primary this worker is serving. Serve calls it; it is
// idempotent.
func (w *Worker) Ready() {
	w.ready.Do(func() {
		close(w.readyC)
		if w.conn != nil {
			_ = w.conn.Notify(msgReady, nil)
		}
	})
}

// Requests returns how many requests Serve has handled.
func (w *Worker) Requests() uint64 { return w.requests.Load() }

// Call sends a request to the primary's Options.Calls handler and decodes
// the reply into resp. It blocks until the reply, ctx's end, or the
// primary's departure (ErrClosed). Its error wraps ErrNotSent when the
// request was never written to the primary: then the primary did not act
// on it. After any other error it may have.
func (w *Worker) Call(ctx context.Context, method string, req, resp any) error {
	if w.conn == nil {
		return ErrNoPrimary
	}
	err := w.conn.Call(ctx, method, req, resp)
	switch {
	case errors.Is(err, ipc.ErrNotSent):
		return &notSentError{method: method, err: err}
	case errors.Is(err, ipc.ErrClosed):
		return fmt.Errorf("%w: %s", ErrClosed, method)
	}
	return err
}

// notSentError is Worker.Call's error for a request never written to the
// primary. It is ErrNotSent, ErrClosed when the link is closed, and
// unwraps to the ipc error (so that store's remote backend, which knows
// ipc and not this package, recognizes it too).
type notSentError struct {
	method string
	err    error
}

func (e *notSentError) Error() string {
	return fmt.Sprintf("cluster: %s not sent to the primary: %v", e.method, e.err)
}

func (e *notSentError) Is(target error) bool {
	return target == ErrNotSent || target == ErrClosed && errors.Is(e.err, ipc.ErrClosed) //nolint:errorlint // sentinels compared by identity, as errors.Is asks of an Is method
}

func (e *notSentError) Unwrap() error { return e.err }

// CallData is Call with bytes: data travels beside the JSON-encoded req as
// it is (not base64 in JSON) to the primary's Options.DataCalls handler,
// and the reply's bytes are returned (nil when it had none). It blocks like
// Call and fails like it.
func (w *Worker) CallData(ctx context.Context, method string, req any, data []byte, resp any) ([]byte, error) {
	if w.conn == nil {
		return nil, ErrNoPrimary
	}
	out, err := w.conn.CallData(ctx, method, req, data, resp)
	switch {
	case errors.Is(err, ipc.ErrNotSent):
		return nil, &notSentError{method: method, err: err}
	case errors.Is(err, ipc.ErrClosed):
		return nil, fmt.Errorf("%w: %s", ErrClosed, method)
	}
	return out, err
}

// WorkerStatus is one worker as the primary sees it.
type WorkerStatus struct {
	ID        int       `json:"id"`
	PID       int       `json:"pid"`
	State     string    `json:"state"`
	Started   time.Time `json:"started"`
	Restarts  int       `json:"restarts"`
	Heartbeat           // the latest figures the worker reported

	Beat time.Time `json:"beat"` // when Heartbeat arrived (rates: Δrequests / Δbeat)
}

// Status is the cluster as the primary sees it.
type Status struct {
	PrimaryPID int            `json:"primaryPid"`
	Addr       string         `json:"addr"`
	Want       int            `json:"want"`
	AdminAddr  string         `json:"adminAddr,omitempty"` // the admin HTTP listener, once it listens
	Workers    []WorkerStatus `json:"workers"`
}

// Status asks the primary for the state of every worker.
func (w *Worker) Status(ctx context.Context) (Status, error) {
	var s Status
	if w.conn == nil {
		return s, ErrNoPrimary
	}
	err := w.Call(ctx, callWorkers, nil, &s)
	return s, err
}

// NewServer returns an http.Server for h with production limits: headers
// within 10 s and 1 MiB, idle keep-alive connections closed after 120 s.
// Bodies are limited by the handlers, which know what they accept.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          nil,
	}
}

// Serve serves h on the worker's listener, tells the primary it is ready,
// and when ctx is done drains: it stops accepting, answers the next request
// on each connection it already accepted with "Connection: close" and then
// closes that connection, closes connections whose client stays silent for
// a second after the drain began, and returns nil once they are all closed,
// or closes them when the time the primary allowed runs out.
//
// It does not drain with http.Server.Shutdown, nor SetKeepAlivesEnabled:
// both close idle keep-alive connections at once, dropping a request the
// client is sending on one at that moment, which under load loses requests
// at every reload (net/http's client hides it by resending a GET; wrk,
// proxies and any POST do not).
func (w *Worker) Serve(ctx context.Context, h http.Handler) error {
	cs := newConns()
	if w.metrics != nil {
		w.metrics.conns.Store(&cs.open)
	}
	srv := NewServer(cs.wrap(w.instrument(h)))
	srv.ConnState = cs.track
	w.conns.Store(cs)
	ln := &onceCloseListener{Listener: w.serveListener(&cs.open)}
	errC := make(chan error, 1)
	go func() { errC <- srv.Serve(ln) }()
	w.Ready()
	select {
	case err := <-errC:
		return fmt.Errorf("cluster: worker %d: serve: %w", w.ID, err)
	case <-ctx.Done():
	}
	w.mu.Lock()
	timeout := w.drainTimeout
	w.mu.Unlock()
	start := time.Now()
	deadline := start.Add(timeout)

	cs.draining.Store(true) // every response from now on closes its connection
	ln.Close()              // stop accepting; the other workers take new connections
	<-errC                  //nolint:errcheck // Serve's error is the closed listener's; we only wait for it to return. Every accepted connection is now counted in cs
	for cs.open.Load() > 0 && time.Now().Before(deadline) {
		cs.closeIdle(drainIdleAfter, start)
		time.Sleep(5 * time.Millisecond)
	}
	if n := cs.open.Load(); n > 0 {
		srv.Close()
		w.log.Warn("drain timed out; closed remaining connections", "timeout", timeout, "connections", n)
	}
	return nil
}

// serveListener is what Serve accepts from: the passed connections as they
// come (the primary enforces Options.MaxConns), or the shared socket
// behind the connection cap.
func (w *Worker) serveListener(open *atomic.Int64) net.Listener {
	if pl, ok := w.ln.(*passedListener); ok {
		pl.setCap(open, int64(w.opts.MaxConns))
		return w.ln
	}
	return &sharedListener{Listener: w.ln, open: open, max: int64(w.opts.MaxConns), stats: &w.accept}
}

// onceCloseListener lets Serve and the drain both close the listener.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

func (w *Worker) setDrainTimeout(d time.Duration) {
	w.mu.Lock()
	w.drainTimeout = d
	w.mu.Unlock()
}

// workerIPC handles what the primary sends a worker.
type workerIPC struct {
	w     *Worker
	drain context.CancelFunc
}

func (h *workerIPC) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	return nil, fmt.Errorf("cluster: worker %d: unknown request %q", h.w.ID, method)
}

func (h *workerIPC) HandleNotify(method string, body []byte) {
	if method == msgUnready {
		h.w.markUnready()
		return
	}
	if method != msgDrain {
		return
	}
	var m drainMsg
	if json.Unmarshal(body, &m) == nil && m.TimeoutMS > 0 {
		h.w.setDrainTimeout(time.Duration(m.TimeoutMS) * time.Millisecond)
	}
	h.drain()
}

func runWorker(ctx context.Context, id int, opts Options, fn func(context.Context, *Worker) error) error {
	os.Unsetenv(EnvWorkerID) // the app's own children are not herd workers
	files, err := listen.Inherited()
	if err != nil || files[fdIPC] == nil || files[fdHTTP] == nil {
		return ErrNoPrimary
	}
	nc, err := ipc.FileConn(files[fdIPC])
	if err != nil {
		return ErrNoPrimary
	}
	ln, err := listen.FileListener(files[fdHTTP])
	if err != nil {
		nc.Close()
		return err
	}
	w := &Worker{ID: id, log: newWorkerLogger(os.Stderr), opts: opts, metrics: newReqMetrics(), readyC: make(chan struct{}), drainTimeout: opts.ShutdownTimeout, unreadyC: make(chan struct{})}
	w.accept.failC = make(chan struct{}, 1)
	if f := files[fdConns]; f != nil {
		// The primary accepts and passes connections: this worker accepts
		// from the shared socket only when told to (BalanceAuto's direct
		// mode), from a duplicate kept out of the poller meanwhile.
		pl, err := newPassedListener(f, ln.Addr(), dupListener(ln), &w.accept)
		ln.Close()
		if err != nil {
			nc.Close()
			return err
		}
		w.ln = pl
	} else {
		w.ln = ln
	}
	// The primary orchestrates stops: a signal to the whole process group
	// (Ctrl-C in a terminal) must not kill workers behind its back. A
	// SIGTERM sent to this worker alone drains it; the primary replaces it.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2)
	// The primary relays this worker's stderr: once the primary is gone, a
	// log line must fail (EPIPE), not kill the worker with SIGPIPE while it
	// finishes its requests. Notify rather than Ignore: the app's own
	// children keep the default SIGPIPE.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	log := w.log
	wctx, drain := context.WithCancel(ctx)
	defer drain()
	opts.hooks.onWorker(wctx, w)
	h := &workerIPC{w: w, drain: drain}
	w.conn = ipc.NewConn(nc, h)
	go func() {
		_ = w.conn.Serve()
		// EOF from the primary: it is gone (even by SIGKILL). Finish quickly
		// and exit rather than serve on as an orphan.
		select {
		case <-wctx.Done():
		default:
			w.setDrainTimeout(primaryGoneTimeout)
			log.Warn("primary went away; exiting")
			drain()
		}
	}()
	termC := make(chan os.Signal, 1)
	signal.Notify(termC, syscall.SIGTERM)
	defer signal.Stop(termC)
	go func() {
		select {
		case <-termC:
			log.Info("SIGTERM received; draining", "signal", "SIGTERM")
			drain()
		case <-wctx.Done():
		}
	}()
	go w.heartbeats(wctx)
	go releaseWhenIdle(wctx, w.requests.Load)

	err = fn(wctx, w)
	_ = w.conn.Notify(msgHeartbeat, w.heartbeat()) // the last figures: nothing served is left uncounted
	drain()                                        // our own end: not "primary went away"
	w.conn.Close()
	<-w.conn.Done()
	select {
	case <-w.readyC:
	default:
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStartFailed, err)
		}
	}
	return err
}

// newWorkerLogger writes a worker's JSON log lines for the primary to
// relay. Durations are written as text ("2s"): as JSON numbers of
// nanoseconds they would reach the primary's log as 2e+09.
func newWorkerLogger(out io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.String(a.Key, a.Value.Duration().String())
			}
			return a
		},
	}))
}

func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.accept.failC:
			if w.health.failing.Load() {
				continue // already reported: the next beat says whether it still fails
			}
		}
		if err := w.conn.Notify(msgHeartbeat, w.heartbeat()); err != nil {
			return
		}
	}
}

func (w *Worker) heartbeat() Heartbeat {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := procstat.RSS()
	if rss == 0 {
		rss = w.lastRSS.Load() // out of descriptors, it cannot open /proc: the last figure rather than none
	}
	w.lastRSS.Store(rss)
	hb := Heartbeat{Requests: w.requests.Load(), RSS: rss, HeapAlloc: ms.HeapAlloc, Goroutines: runtime.NumGoroutine(),
		AcceptErrors: w.accept.errors.Load(), AcceptError: w.accept.lastError(), AcceptFailing: w.health.check(&w.accept)}
	if cs := w.conns.Load(); cs != nil {
		hb.Conns = cs.open.Load()
	}
	if w.metrics != nil {
		hb.Figures = w.metrics.figures()
	}
	return hb
}

func runSingle(ctx context.Context, opts Options, fn func(context.Context, *Worker) error) error {
	ln, err := listen.TCP(opts.Addr)
	if err != nil {
		return err
	}
	opts.Logger.Info("listening", "addr", ln.Addr().String(), "pid", os.Getpid(), "mode", "single process")
	w := &Worker{ln: ln, log: opts.Logger, opts: opts, metrics: newReqMetrics(), readyC: make(chan struct{}), drainTimeout: opts.ShutdownTimeout, unreadyC: make(chan struct{})}
	ctx, stop := stopContext(ctx, w, opts.DrainDelay)
	defer stop()
	opts.hooks.onWorker(ctx, w)
	relCtx, stopRelease := context.WithCancel(ctx)
	defer stopRelease()
	go releaseWhenIdle(relCtx, w.requests.Load)
	err = fn(ctx, w)
	ln.Close()
	return err
}
