package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"time"
)

// Defaults applied by Run to zero-valued Options fields.
const (
	DefaultAddr              = ":3000"
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultReadyTimeout      = 60 * time.Second
	DefaultWorkerTimeout     = 30 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 30 * time.Second
	DefaultStableAfter       = 10 * time.Second
	DefaultMemoryLogInterval = 30 * time.Second
)

// CallHandler answers a worker's Worker.Call in the primary, for methods
// the cluster does not answer itself. It runs concurrently, one goroutine
// per call; its result is JSON-encoded as the reply and an error travels
// back as its text.
type CallHandler func(ctx context.Context, method string, body json.RawMessage) (any, error)

// DataCallHandler answers a worker's Worker.CallData in the primary: the
// request's JSON body and its bytes (data, never nil; the handler may keep
// it), and returns a reply JSON-encoded as Calls' is, plus bytes sent
// beside it as they are (nil for none). It runs concurrently, one goroutine
// per call; an error travels back as its text (a *RemoteError).
type DataCallHandler func(ctx context.Context, method string, body json.RawMessage, data []byte) (reply any, replyData []byte, err error)

// Options configure a cluster. The zero value runs DefaultWorkers() workers
// on DefaultAddr.
type Options struct {
	// Addr is the TCP address every worker serves, "host:port". Port 0
	// picks a free port (logged as "listening"). Default DefaultAddr.
	Addr string

	// Workers is how many worker processes to run. Default DefaultWorkers().
	Workers int

	// Single serves in this process with no primary and no workers (like
	// running a Node app without cluster). Worker.ID is 0 and Worker.Call
	// returns ErrNoPrimary.
	Single bool

	// ShutdownTimeout bounds a graceful stop: how long workers may take to
	// finish in-flight requests before they are killed.
	// Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// ReadyTimeout bounds how long a new worker may take to become ready
	// before it is killed and counted as a failed start.
	// Default DefaultReadyTimeout.
	ReadyTimeout time.Duration

	// WorkerTimeout is how long a ready worker may go without a heartbeat
	// before it is considered hung, killed and replaced; and how long it
	// may stay unable to accept connections (StateUnhealthy) before it is
	// recycled, replacement first. Default DefaultWorkerTimeout.
	WorkerTimeout time.Duration

	// HeartbeatInterval is how often workers report their figures.
	// Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration

	// Backoff paces restarts of workers that keep dying soon after start.
	Backoff Backoff

	// MemoryLogInterval is how often the primary logs its own memory use;
	// negative disables it. Default DefaultMemoryLogInterval.
	MemoryLogInterval time.Duration

	// Logger receives the primary's log lines and, re-emitted at their own
	// level with worker and pid attached, the workers'. Default slog.Default().
	Logger *slog.Logger

	hooks *runHooks // set by Cluster.Run (cluster.go)

	// Calls answers workers' calls that the cluster does not answer itself
	// (every method not starting with "cluster."). Nil: such calls fail.
	Calls CallHandler

	// DataCalls answers workers' Worker.CallData, the calls that carry
	// bytes (store.Host.DataCalls, the shared store's values). Nil: such
	// calls fail.
	DataCalls DataCallHandler

	// Args are the command-line arguments a worker is started with (its
	// os.Args[1:]); the executable is this one. Default (nil) os.Args[1:],
	// so a worker parses the same configuration as its primary; an empty
	// slice starts workers with no arguments (then hand them their
	// configuration another way: Calls, answered to Worker.Call).
	Args []string

	// Env lists extra "KEY=value" entries for workers' environments.
	Env []string

	// Environ, if not nil, is the environment workers start from, before
	// Env and the cluster's own entries are added: leave out what workers
	// must not see (a secret that /proc/PID/environ would show every local
	// user). Default (nil) os.Environ().
	Environ []string

	// WorkerGOMAXPROCS is each worker's GOMAXPROCS. Default (0)
	// WorkerProcs(Workers): the workers together use the cores the primary
	// may use and no more.
	WorkerGOMAXPROCS int

	// Balance is how new connections are spread over the workers.
	// Default (empty) DefaultBalance; see ParseBalance. With Exec it is
	// always BalanceShared: a foreign program accepts from the socket
	// itself and cannot take connections passed over herd's IPC.
	Balance Balance

	// MaxConns caps each worker's open connections: a worker holding
	// MaxConns takes no new one; new connections wait in the kernel's
	// queue, or go to another worker, rather than being accepted into
	// failure. Zero: no cap.
	MaxConns int

	// Recycle replaces workers, replacement first, once they have served
	// enough requests or grown too large. Zero: never.
	Recycle Recycle

	// PIDFile, if set, holds the live primary's pid: written once the
	// primary listens, rewritten by a new primary after an upgrade, and
	// removed on exit by the primary whose pid it holds.
	PIDFile string

	// ControlSocket, if set, is the path of a Unix socket (mode 0600) on
	// which the primary takes commands: status, reload, upgrade, scale,
	// stop (see ServeControl). ControlSocketAuto derives the path from the port
	// actually listened on (ControlSocketPath, in the private directory
	// ControlSocketDir, created 0700 and checked). A stale socket file left
	// by a dead primary is replaced. A control socket that cannot be opened
	// (a live primary on it, a directory someone else owns, no temporary
	// directory at all) is one warning in the log: the primary serves
	// without it. The socket is removed when the primary exits. Ignored
	// without ServeControl.
	ControlSocket string

	// ServeControl answers one connection to the control socket (package
	// admin's ServeControl speaks herd's protocol, and admin.Client talks
	// to it). The primary accepts connections and calls it in a goroutine
	// per connection, with the primary as a Plane, and closes c once it
	// returns; when the primary exits it waits up to 2 s for calls still
	// answering (so "herd stop" hears its answer). Nil: no control socket
	// is opened, whatever ControlSocket says.
	ServeControl func(c net.Conn, pl Plane)

	// DisableRequestMetrics turns off the per-request figures workers
	// count and send in their heartbeats (route, status class, latency,
	// in-flight); requests are still counted. Default: counted. The
	// primary passes it to its workers, whose own Options cannot turn the
	// figures back on (or off).
	DisableRequestMetrics bool

	// Admin configures the primary's admin HTTP listener (metrics,
	// dashboard). Zero: none.
	Admin Admin

	// Exec, if set, runs this external program as the workers instead of
	// this binary (see Exec); Args then only start herd's helpers.
	Exec *Exec

	// OnHandover, if set, runs in the primary once a binary upgrade has
	// succeeded, before it drains its own workers: release what the new
	// primary must take over (a database file lock). It must not block.
	OnHandover func()

	// DrainDelay, if positive, is how long a graceful stop (SIGTERM,
	// SIGINT, the end of Run's context, "herd stop") waits before draining:
	// meanwhile every worker keeps serving while Worker.Unready is closed,
	// so a readiness probe fails and a load balancer (a Kubernetes Service)
	// stops sending traffic before the workers stop accepting. A second
	// stop request ends the delay. Default 0: drain at once.
	DrainDelay time.Duration
}

// ControlSocketAuto as Options.ControlSocket puts the control socket at
// ControlSocketPath(port), once the port is known.
const ControlSocketAuto = "auto"

// Recycle sets when a worker is replaced because of its own figures, as
// reported in its heartbeats. The replacement starts first; the old worker
// drains once the replacement is ready.
type Recycle struct {
	// MaxRequests recycles a worker after about this many requests; each
	// worker's limit is raised by a random jitter of up to MaxRequests/10
	// (at least 1) so that workers started together do not recycle together.
	MaxRequests uint64
	// MaxRSS recycles a worker whose resident memory exceeds it, in bytes.
	// For an Exec program it is the RSS of the program's process tree.
	MaxRSS uint64
	// MaxAge recycles a worker once it has been ready this long, raised by
	// a random jitter of up to MaxAge/10 per worker.
	MaxAge time.Duration
}

// Backoff paces restarts. A worker that exits unexpectedly after running
// for StableAfter or longer is replaced at once; one that dies sooner is
// replaced after Min, then 2×Min, 4×Min... up to Max for each further early
// death in a row. The streak resets once a worker stays up for StableAfter.
type Backoff struct {
	Min         time.Duration // default DefaultMinBackoff
	Max         time.Duration // default DefaultMaxBackoff
	StableAfter time.Duration // default DefaultStableAfter
}

// delay returns how long to wait before the next start after streak early
// deaths in a row (0: start now).
func (b Backoff) delay(streak int) time.Duration {
	if streak <= 0 {
		return 0
	}
	d := b.Min
	for i := 1; i < streak && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// DefaultWorkers is the default worker count: UsableCPUs().Cores(), the
// CPUs in the affinity mask limited by the cgroup CPU quota rounded up
// (--cpus 1 and 0.5 give 1, 2.5 gives 3), or the GOMAXPROCS variable when
// set. It is not runtime.GOMAXPROCS(0), which rounds a quota below 2 up to 2.
func DefaultWorkers() int { return UsableCPUs().Cores() }

// WorkerProcs is the GOMAXPROCS each of n workers gets so that together
// they use the cores the primary may use, and no more: max(1, cores/n)
// with cores = UsableCPUs().Cores().
func WorkerProcs(n int) int {
	if n <= 0 {
		n = 1
	}
	return max(1, UsableCPUs().Cores()/n)
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.WorkerTimeout <= 0 {
		o.WorkerTimeout = DefaultWorkerTimeout
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = DefaultMinBackoff
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultMaxBackoff
	}
	if o.Backoff.StableAfter <= 0 {
		o.Backoff.StableAfter = DefaultStableAfter
	}
	if o.MemoryLogInterval == 0 {
		o.MemoryLogInterval = DefaultMemoryLogInterval
	}
	if o.Balance == "" {
		o.Balance = DefaultBalance
	}
	if o.Exec != nil {
		// A foreign program takes no connections over herd's IPC: it
		// accepts from the shared socket itself.
		o.Balance = BalanceShared
	}
	if o.ServeControl == nil {
		o.ControlSocket = "" // nothing would answer on it
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
