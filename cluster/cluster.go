package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/herd-go/herd/internal/ipc"
	"github.com/herd-go/herd/internal/listen"
)

// Errors a user of the cluster matches with errors.Is or errors.As.
var (
	// ErrInUse is wrapped by Run's error when the address is already taken
	// by another socket (another herd, another server on the same port).
	ErrInUse = listen.ErrInUse
	// ErrShutdown is returned by Run when Shutdown was called before it:
	// nothing was started.
	ErrShutdown = errors.New("cluster: shut down")
	// ErrRunning is returned by a second call to Run on the same Cluster.
	ErrRunning = errors.New("cluster: Run already called")
)

// RemoteError is what Worker.Call returns when the primary's
// Options.Calls handler answered with an error: its text, as the handler
// returned it. Match it with errors.As; any other error from Call means the
// call got no answer (ErrClosed, ctx's error, a request that could not be
// encoded).
type RemoteError = ipc.RemoteError

// WorkerFunc is the worker's side of a cluster: it serves until ctx is done
// (the primary asked this worker to drain, or went away, or Shutdown was
// called) and then returns. Worker.Serve does both.
type WorkerFunc func(ctx context.Context, w *Worker) error

// A Cluster is one run of a cluster, as a value: New makes it, Run runs it,
// and the other methods watch or stop it from other goroutines.
//
// The same program is both the primary and every worker (the primary
// re-executes its own binary), so New takes the worker's function as well
// as the options, and Run plays whichever part this process has: in the
// primary it supervises workers; in a worker (IsWorker) it calls fn with the
// worker's Worker; with Options.Single it calls fn in this process. That
// way one main serves as both, and Ready, Addr, Done and Shutdown mean the
// same in all three: the primary's Ready waits for every worker, a worker's
// for itself. (A design with the worker path outside New would make every
// main branch on IsWorker before New; Run does that once, here.)
//
// The methods are safe for concurrent use.
type Cluster struct {
	opts Options
	fn   WorkerFunc

	readyC    chan struct{} // closed when every wanted worker was first ready
	readyOnce sync.Once
	doneC     chan struct{} // closed when Run has returned (or Shutdown came first)
	doneOnce  sync.Once
	addr      atomic.Pointer[net.Addr]

	mu      sync.Mutex // guards the fields below
	running bool       // Run was called
	stopped bool       // Shutdown was called
	cancel  context.CancelFunc
}

// New returns a cluster that Run will run with opts, fn serving in each
// worker (fn may be nil with Options.Exec, whose workers are another
// program). It starts nothing: a port in use is Run's error.
func New(opts Options, fn WorkerFunc) (*Cluster, error) {
	if fn == nil && opts.Exec == nil && (opts.Single || IsWorker()) {
		return nil, errors.New("cluster: New needs a worker function (or Options.Exec)")
	}
	return &Cluster{opts: opts, fn: fn, readyC: make(chan struct{}), doneC: make(chan struct{})}, nil
}

// Run runs the cluster and blocks until it has stopped. In the primary (the
// process a user starts) it opens the listening socket, starts the workers
// by re-executing this binary, and supervises them until ctx is done,
// Shutdown is called or a SIGTERM/SIGINT arrives; then it stops them
// gracefully (within Options.ShutdownTimeout, killing what is left after
// it) and returns nil. In a worker it calls the worker function with the
// worker's identity, listener and link to the primary, and returns what the
// function returned. With Options.Single the function runs in this process
// with no primary.
//
// Errors: one wrapping ErrInUse when the port is taken, another listen
// failure, ErrStartFailed (wrapped) when every worker failed at start,
// ErrNoPrimary in a process wrongly marked as a worker, ErrShutdown when
// Shutdown came before Run, ErrRunning on a second call.
func (c *Cluster) Run(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.running:
		c.mu.Unlock()
		return ErrRunning
	case c.stopped:
		c.mu.Unlock()
		return ErrShutdown
	}
	c.running = true
	ctx, c.cancel = context.WithCancel(ctx)
	c.mu.Unlock()
	defer c.doneOnce.Do(func() { close(c.doneC) })
	defer c.cancel()

	opts := c.opts.withDefaults()
	opts.hooks = &runHooks{
		listening: func(a net.Addr) { c.addr.Store(&a) },
		allReady:  func() { c.readyOnce.Do(func() { close(c.readyC) }) },
	}
	if IsExecHelper() {
		return ExecHelper()
	}
	if s, ok := os.LookupEnv(EnvWorkerID); ok {
		id, err := strconv.Atoi(s)
		if err != nil || id < 0 {
			return ErrNoPrimary
		}
		opts.takeWorkerOptions()
		return runWorker(ctx, id, opts, c.fn)
	}
	if opts.Single {
		return runSingle(ctx, opts, c.fn)
	}
	return runPrimary(ctx, opts)
}

// Addr is the address the cluster serves on: nil until Run has opened (or,
// upgraded or socket-activated, inherited) the listening socket, and set
// for good from then on. It is set before Ready is closed, so after
// <-c.Ready() it is never nil; with Options.Addr's port 0 it names the
// port the kernel picked.
func (c *Cluster) Addr() net.Addr {
	if a := c.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Ready is closed once every wanted worker (Options.Workers) has been
// ready at the same time, for the first time: the cluster serves at full
// strength. In a worker process it is closed once that worker is ready, and
// with Options.Single once the one in-process worker is. It is never closed
// if the cluster stops first (watch Done as well).
func (c *Cluster) Ready() <-chan struct{} { return c.readyC }

// Done is closed when Run has returned, or at once by a Shutdown that came
// before Run (nothing will run).
func (c *Cluster) Done() <-chan struct{} { return c.doneC }

// Shutdown stops the cluster gracefully, as a SIGTERM does: every worker
// stops taking new connections, finishes what it has in flight within
// Options.ShutdownTimeout (and is killed after it), and Run returns nil.
// Shutdown blocks until Run has returned, or until ctx ends: then it
// returns ctx.Err() and the cluster goes on stopping in the background,
// bounded by Options.ShutdownTimeout; wait on Done for the end.
//
// It is idempotent and safe to call concurrently, and before Run: then Run
// will return ErrShutdown without starting anything, and Done is closed at
// once.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	if !c.running {
		c.mu.Unlock()
		c.doneOnce.Do(func() { close(c.doneC) })
		return nil
	}
	c.cancel()
	c.mu.Unlock()
	select {
	case <-c.doneC:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runHooks let a Cluster watch the run it started. A nil *runHooks does
// nothing.
type runHooks struct {
	listening func(net.Addr) // the listening socket is open
	allReady  func()         // every wanted worker was ready, the first time
}

func (h *runHooks) onListening(a net.Addr) {
	if h != nil && h.listening != nil {
		h.listening(a)
	}
}

func (h *runHooks) onAllReady() {
	if h != nil && h.allReady != nil {
		h.allReady()
	}
}

// onWorker makes w's readiness the cluster's, in a worker process or with
// Options.Single. The watch ends with ctx.
func (h *runHooks) onWorker(ctx context.Context, w *Worker) {
	if h == nil {
		return
	}
	h.onListening(w.ln.Addr())
	go func() {
		select {
		case <-w.readyC:
			h.onAllReady()
		case <-ctx.Done():
		}
	}()
}
