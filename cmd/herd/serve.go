package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdenv"
	"github.com/herd-go/herd/internal/listen"
	"github.com/herd-go/herd/store"
)

const serveUsage = `usage: herd [serve] [flags]

Runs the demo application on every core as supervised worker processes
sharing one port. Flags override environment variables, which override a
.env file in the working directory.

flags:
`

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if cluster.IsWorker() {
		// A worker has no arguments: its configuration comes from the
		// primary, which resolved it once.
		return serveWorker(ctx, stderr)
	}
	if wantsHelp(args) {
		fmt.Fprint(stdout, serveUsage)
		printDefaults(stdout, serveSettings)
		return exitOK
	}
	cfg, rest, err := loadServeConfig(args, osSources)
	if err != nil {
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitUsage
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "herd: unexpected argument %q (see herd serve --help)\n", rest[0])
		return exitUsage
	}
	log := newLogger(cfg.LogFormat, stderr)
	opts := cluster.Options{
		Addr:             net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		Workers:          workerCount(cfg),
		Single:           cfg.Mode == modeOff,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		ReadyTimeout:     cfg.ReadyTimeout,
		WorkerTimeout:    cfg.WorkerTimeout,
		Recycle:          cluster.Recycle{MaxRequests: cfg.MaxRequests, MaxRSS: cfg.MaxMemory},
		PIDFile:          cfg.PIDFile,
		WorkerGOMAXPROCS: cfg.WorkerProcs,
		ControlSocket:    cfg.ControlSocket,
		ServeControl:     admin.ServeControl,
		Balance:          cluster.Balance(cfg.Balance),
		MaxConns:         cfg.MaxConns,
		Logger:           log,
		Admin:            adminOptions(cfg),
		DrainDelay:       cfg.DrainDelay,
		// Off, workers skip the per-request instrumentation (the library
		// passes this to them); requests are still counted for recycling.
		DisableRequestMetrics: !cfg.Metrics,
		// Workers get no arguments and none of herd's settings in their
		// environment: a password given by flag or REDIS_URL would be
		// readable in /proc by every local user, and a worker that parsed
		// them itself could disagree with its primary (.env edited since).
		// They ask the primary for its configuration (callConfig).
		Args:    []string{},
		Environ: herdenv.Clean(os.Environ()),
		// What a worker needs before it can ask (its drain time when sent
		// SIGTERM alone, its connection cap) the library passes itself.
	}
	if opts.ControlSocket == "" {
		opts.ControlSocket = cluster.ControlSocketAuto
	}
	// A port in use is a bad setting like any other: one line and nothing
	// before it. (An upgraded or socket-activated primary inherits its socket.)
	if os.Getenv(cluster.EnvUpgradeFrom) == "" && !cluster.SocketActivated() {
		if ln, err := listen.TCP(opts.Addr); errors.Is(err, listen.ErrInUse) {
			fmt.Fprintln(stderr, portInUse(cfg, opts.Addr))
			return exitUsage
		} else if err == nil {
			ln.Close()
		}
	}
	if cfg.RedisURL != "" {
		if err := checkRedis(ctx, cfg, log); err != nil {
			fmt.Fprintf(stderr, "herd: %v\n", err)
			return exitUsage
		}
	}
	// The embedded store lives in the primary (or, with --cluster off, in
	// the one process); with Redis every worker connects itself.
	var local store.Store
	var storeCalls cluster.CallHandler
	if cfg.RedisURL == "" {
		var host *store.Host
		if cluster.IsUpgrade() && cfg.StateFile != "" {
			// The old primary holds the bbolt file until this one is
			// ready: open it once it lets go.
			host = store.NewHostOpening(ctx, func() (store.Store, error) {
				return store.OpenBolt(cfg.StateFile, store.BoltOptions{LockTimeout: time.Second})
			}, func() {
				log.Info("state file opened after the previous primary released it", "path", cfg.StateFile)
			})
		} else {
			st, err := openEmbedded(cfg)
			if err != nil {
				fmt.Fprintf(stderr, "herd: %v\n", err)
				return exitUsage
			}
			local = st
			host = store.NewHost(st)
		}
		defer host.Close()
		storeCalls, opts.DataCalls, opts.OnHandover = host.Calls, host.DataCalls, host.Release
	}
	opts.Calls = configCalls(cfg, storeCalls)

	backend := "redis " + store.RedactURL(cfg.RedisURL)
	if cfg.RedisURL == "" {
		backend = "embedded (memory: gone when the primary stops)"
		if cfg.StateFile != "" {
			backend = "embedded (bbolt " + cfg.StateFile + ")"
		}
	}
	log.Info("starting herd", "mode", cfg.Mode, "app_env", cfg.AppEnv, "workers", opts.Workers, "shared_state", backend)
	if cfg.WorkersDefault && cfg.Mode == modeManual {
		log.Info("manual mode without a worker count: running the default", "workers", defaultManualWorkers,
			"reason", "set --workers or CLUSTER_WORKERS to choose")
	}
	err = cluster.Run(ctx, opts, func(ctx context.Context, w *cluster.Worker) error {
		return serveApp(ctx, w, cfg, local) // --cluster off: this process serves
	})
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, cluster.ErrInUse):
		fmt.Fprintln(stderr, portInUse(cfg, opts.Addr))
		return exitUsage
	case errors.Is(err, cluster.ErrStartFailed):
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitStartFailed
	default:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitFail
	}
}

// callConfig is the call by which a worker asks its primary for the
// resolved configuration (a serveConfig).
const callConfig = "herd.config"

// configTimeout bounds a worker's wait for its configuration.
const configTimeout = 10 * time.Second

// configCalls answers callConfig with cfg and passes every other call to
// next (the embedded store's calls; nil with Redis).
func configCalls(cfg serveConfig, next cluster.CallHandler) cluster.CallHandler {
	return func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		if method == callConfig {
			return cfg, nil
		}
		if next == nil {
			return nil, fmt.Errorf("herd: unknown call %q", method)
		}
		return next(ctx, method, body)
	}
}

// errNoConfig means a worker could not get its configuration from the
// primary: it exits with cluster.ExitStartFailed.
var errNoConfig = errors.New("herd: worker cannot get its configuration from the primary")

// serveWorker runs one worker. It reads no arguments, settings in the
// environment or .env: it serves with the configuration its primary
// resolved, fetched over the IPC socket.
func serveWorker(ctx context.Context, stderr io.Writer) int {
	// The library applies the primary's worker-side options (drain time,
	// connection cap): these Options need none of their own.
	err := cluster.Run(ctx, cluster.Options{}, func(ctx context.Context, w *cluster.Worker) error {
		cctx, cancel := context.WithTimeout(ctx, configTimeout)
		var cfg serveConfig
		err := w.Call(cctx, callConfig, nil, &cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %w", errNoConfig, err)
		}
		return serveApp(ctx, w, cfg, nil)
	})
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, cluster.ErrNoPrimary):
		fmt.Fprintf(stderr, "herd: %v: unset %s to run herd normally\n", err, cluster.EnvWorkerID)
		return exitUsage
	case errors.Is(err, errNoConfig), errors.Is(err, cluster.ErrStartFailed):
		// Failed before it was ready (its configuration, or the app's
		// set-up such as the Redis client): restarting it at once will not
		// help.
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return cluster.ExitStartFailed
	default:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitFail
	}
}

// serveApp serves the demo application in a worker (or, with local set,
// in the single process of --cluster off) until ctx is done.
func serveApp(ctx context.Context, w *cluster.Worker, cfg serveConfig, local store.Store) error {
	var c app.Cluster
	st := local
	switch {
	case cfg.RedisURL != "":
		rs, err := store.NewRedis(cfg.RedisURL, store.RedisOptions{})
		if err != nil {
			return err
		}
		defer rs.Close()
		st = rs
	case w.ID != 0:
		st = store.Remote(w)
	}
	if w.ID != 0 {
		c = workerLister{w}
	}
	a := app.New(app.Options{
		WorkerID:    w.ID,
		Cluster:     c,
		Store:       st,
		EnableCrash: cfg.EnableCrash,
		Logger:      w.Logger(),
	})
	go func() {
		select {
		case <-ctx.Done():
		case <-w.Unready(): // the drain delay: still serving, /readyz says 503
		}
		a.SetDraining()
	}()
	if w.ID == 0 {
		w.Logger().Info("serving in a single process", "pid", os.Getpid())
	}
	return w.Serve(ctx, a)
}

func portInUse(cfg serveConfig, addr string) string {
	return "herd: " + badSetting(cfg.from.setting("port"), cfg.from.get("port"),
		addr+" is already in use; choose another port or stop what is using it").Error()
}

// defaultWorkers is cluster.DefaultWorkers; tests pretend other core counts.
var defaultWorkers = cluster.DefaultWorkers

// workerCount applies the mode: manual runs what was asked, auto one per
// usable core (two at most in development, like the reference).
func workerCount(cfg serveConfig) int {
	switch cfg.Mode {
	case modeManual:
		return cfg.Workers
	case modeOff:
		return 1
	}
	n := defaultWorkers()
	if cfg.AppEnv == "development" {
		n = min(n, 2)
	}
	return n
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// workerLister adapts a cluster.Worker to app.Cluster.
type workerLister struct{ w *cluster.Worker }

func (l workerLister) Workers(ctx context.Context) (int, []app.WorkerInfo, error) {
	s, err := l.w.Status(ctx)
	if err != nil {
		return 0, nil, err
	}
	out := make([]app.WorkerInfo, len(s.Workers))
	for i, w := range s.Workers {
		up := time.Since(w.Started)
		out[i] = app.WorkerInfo{
			ID: w.ID, PID: w.PID, State: w.State, Restarts: w.Restarts,
			Uptime: fmt.Sprintf("%.2fs", up.Seconds()), UptimeS: up.Seconds(),
			Requests: w.Requests, RSS: w.RSS,
		}
	}
	return s.PrimaryPID, out, nil
}
