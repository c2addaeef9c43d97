// Package app is herd's demo application: plain http.Handlers with no
// process code, testable with httptest. The cluster runtime gives it its
// identity, a way to list the cluster's workers and the shared store.
package app

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/store"
)

// Worker states as /cluster/workers shows them.
const (
	// StateReady is the cluster runtime's name for a serving worker.
	StateReady = "ready"
	// StateOnline is what /cluster/workers says for a ready worker, the
	// name the reference's JSON uses (Node's cluster "online" event).
	StateOnline = "online"
)

// WorkerInfo is one worker as the primary sees it. Cluster implementations
// report the runtime's states ("starting", "ready", "draining");
// /cluster/workers shows "ready" as StateOnline.
type WorkerInfo struct {
	ID       int     `json:"id"`
	PID      int     `json:"pid"`
	State    string  `json:"state"`
	Uptime   string  `json:"uptime"`
	UptimeS  float64 `json:"uptimeSeconds"`
	Restarts int     `json:"restarts"`
	Requests uint64  `json:"requests"`
	RSS      uint64  `json:"rssBytes"`
}

// Cluster answers questions only the primary can: who the workers are.
type Cluster interface {
	// Workers returns the primary's pid and every worker it supervises.
	Workers(ctx context.Context) (primaryPID int, workers []WorkerInfo, err error)
}

// Options configure the application. The zero value serves every route
// that needs nothing from a cluster (worker id 0, no store, no crash).
type Options struct {
	// WorkerID is this process's worker id (1..N); 0 when not clustered.
	WorkerID int
	// Cluster lists the workers; nil answers /cluster/workers with this
	// process alone.
	Cluster Cluster
	// Store is the shared state; nil makes the shared-state routes answer 503.
	Store store.Store
	// EnableCrash turns on POST /cluster/crash (default off: 404).
	EnableCrash bool
	// Exit ends the process after /cluster/crash has answered. Default os.Exit.
	Exit func(code int)
	// Logger receives the application's log lines. Default slog.Default().
	Logger *slog.Logger
}

// App is the demo application. Use New; App is an http.Handler and is safe
// for concurrent use.
type App struct {
	opts     Options
	pid      int
	started  time.Time
	mux      *http.ServeMux
	requests atomic.Uint64 // every request this process served
	local    atomic.Uint64 // /cluster/local-state hits, deliberately not shared
	draining atomic.Bool
}

// New returns the application with all its routes.
func New(opts Options) *App {
	if opts.Exit == nil {
		opts.Exit = os.Exit
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &App{opts: opts, pid: os.Getpid(), started: time.Now(), mux: http.NewServeMux()}
	a.routes(a.mux)
	return a
}

// SetDraining makes /readyz answer 503: the process is shutting down.
func (a *App) SetDraining() { a.draining.Store(true) }

// Requests returns how many requests this process has served.
func (a *App) Requests() uint64 { return a.requests.Load() }

// ServeHTTP stamps every response with the worker's identity and routes it.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	h := w.Header()
	h.Set("X-Worker-Id", strconv.Itoa(a.opts.WorkerID))
	h.Set("X-Worker-Pid", strconv.Itoa(a.pid))
	a.mux.ServeHTTP(w, r)
}
