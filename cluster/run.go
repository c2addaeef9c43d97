package cluster

import (
	"context"
	"errors"
	"os"
	"strconv"
)

// EnvWorkerID marks a worker process: the primary sets it to the worker's
// id when it re-executes its own binary.
const EnvWorkerID = "HERD_WORKER_ID"

// Exit codes with a meaning to the primary.
const (
	// ExitStartFailed is what a worker should exit with when it cannot
	// start at all (bad configuration, missing dependency), so that the
	// primary's "worker died" line says why. Like any worker that dies
	// soon after its start, it is restarted with backoff, not at once.
	ExitStartFailed = 3
)

var (
	// ErrNoPrimary means this process was marked as a worker but no primary
	// started it (for example HERD_WORKER_ID set by hand).
	ErrNoPrimary = errors.New("cluster: " + EnvWorkerID + " is set but this process was not started by a herd primary")
	// ErrClosed is returned by Worker.Call when the primary has gone away.
	ErrClosed = errors.New("cluster: connection to the primary closed")
)

// IsWorker reports whether this process was started as a worker by a
// primary. Code that only the primary should run (opening a database file
// the primary hosts) checks it before calling Run.
func IsWorker() bool {
	_, ok := os.LookupEnv(EnvWorkerID)
	return ok
}

// Run runs a cluster. In the primary (the process a user starts) it opens
// the listening socket, starts the workers by re-executing this binary, and
// supervises them until ctx is done or a SIGTERM/SIGINT arrives, then stops
// them gracefully and returns nil. In a worker it calls fn with the
// worker's identity, listener and link to the primary; fn should serve until
// its ctx is done (the primary asked it to drain, or went away) and then
// return. So the same main function serves as both, like Node's cluster.
//
// With opts.Single, Run calls fn in this process with no primary.
//
// Run blocks. Errors: a listen failure (wrapping listen.ErrInUse when the
// port is taken) before anything started, ErrNoPrimary in a process wrongly
// marked as a worker, or whatever fn returned in a worker.
func Run(ctx context.Context, opts Options, fn func(ctx context.Context, w *Worker) error) error {
	opts = opts.withDefaults()
	if IsExecHelper() {
		return ExecHelper()
	}
	if s, ok := os.LookupEnv(EnvWorkerID); ok {
		id, err := strconv.Atoi(s)
		if err != nil || id < 0 {
			return ErrNoPrimary
		}
		return runWorker(ctx, id, opts, fn)
	}
	if opts.Single {
		return runSingle(ctx, opts, fn)
	}
	return runPrimary(ctx, opts)
}
