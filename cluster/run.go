package cluster

import (
	"context"
	"errors"
	"os"
)

// EnvWorkerID marks a worker process: the primary sets it to the worker's
// id when it re-executes its own binary.
const EnvWorkerID = "HERD_WORKER_ID"

// Exit codes with a meaning to the primary.
const (
	// ExitStartFailed is what a process should exit with when it cannot
	// start at all (bad configuration, a missing file or dependency), as
	// gunicorn's boot-error code: a worker whose Run returned an error
	// wrapping ErrStartFailed, and a primary whose Run did.
	//
	// What the primary does with a worker that exits with it:
	//   - on a fresh start, before any worker was ever ready: once every
	//     worker slot has exited with it, the primary logs
	//     "workers failed at start" once, stops, and Run returns an error
	//     wrapping ErrStartFailed (so a service manager is not made to
	//     restart a program that cannot start). Until then such a worker
	//     is restarted with backoff like any other early death;
	//   - once some worker has been ready (it started before, so the cause
	//     may pass: a database restarting): restarted with backoff;
	//   - a replacement during a reload or recycle: the reload fails and
	//     the old workers keep serving.
	//
	// herd serve's own workers practically never exit with it: they take
	// the configuration the primary has already checked, over IPC, and
	// open nothing of their own that the primary did not check first. It
	// is for programs built on this package whose workers set something
	// up at start (examples/hello's HELLO_GREETING_FILE; the end-to-end
	// test in cmd/herd runs that example).
	ExitStartFailed = 3
)

var (
	// ErrNoPrimary means this process was marked as a worker but no primary
	// started it (for example HERD_WORKER_ID set by hand).
	ErrNoPrimary = errors.New("cluster: " + EnvWorkerID + " is set but this process was not started by a herd primary")
	// ErrStartFailed wraps the error Run returns when the program could
	// not start: in a worker, fn returned an error before the worker was
	// ready (before Serve or Ready); in a primary, every worker exited with
	// ExitStartFailed before any was ready. Exit with ExitStartFailed.
	ErrStartFailed = errors.New("cluster: failed at start")
	// ErrClosed is returned by Worker.Call when the primary has gone away.
	ErrClosed = errors.New("cluster: connection to the primary closed")
	// ErrNotSent is wrapped by Worker.Call's error when the request was
	// never written to the primary (it had gone away before, or the write
	// failed): the primary cannot have acted on it, so a write may be
	// retried. Any other failure after the request was written leaves its
	// outcome unknown.
	ErrNotSent = errors.New("cluster: request not sent to the primary")
)

// IsWorker reports whether this process was started as a worker by a
// primary. Code that only the primary should run (opening a database file
// the primary hosts) checks it before calling Run.
func IsWorker() bool {
	_, ok := os.LookupEnv(EnvWorkerID)
	return ok
}

// Run runs a cluster: the shortcut for New(opts, fn) and its Run, for a
// program that needs neither Ready nor Shutdown. In the primary (the process
// a user starts) it opens the listening socket, starts the workers by
// re-executing this binary, and supervises them until ctx is done or a
// SIGTERM/SIGINT arrives, then stops them gracefully and returns nil. In a
// worker it calls fn with the worker's identity, listener and link to the
// primary; fn should serve until its ctx is done (the primary asked it to
// drain, or went away) and then return. So the same main function serves as
// both, like Node's cluster.
//
// With opts.Single, Run calls fn in this process with no primary.
//
// Run blocks. Errors: a listen failure (wrapping ErrInUse when the port is
// taken) before anything started, ErrNoPrimary in a process wrongly marked
// as a worker, or whatever fn returned in a worker. See Cluster.Run.
func Run(ctx context.Context, opts Options, fn func(ctx context.Context, w *Worker) error) error {
	c, err := New(opts, fn)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
