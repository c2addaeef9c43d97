package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/cluster"
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
	if wantsHelp(args) {
		fmt.Fprint(stdout, serveUsage)
		printDefaults(stdout, serveSettings)
		return exitOK
	}
	cfg, rest, err := loadServeConfig(args, os.LookupEnv, ".env")
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
		Logger:           log,
		DrainDelay:       cfg.DrainDelay,
	}
	if opts.ControlSocket == "" {
		opts.ControlSocket = cluster.ControlSocketAuto
	}
	if !cluster.IsWorker() {
		// A port in use is a bad setting like any other: one line and
		// nothing before it. (An upgraded primary inherits its socket.)
		if os.Getenv(cluster.EnvUpgradeFrom) == "" && !cluster.SocketActivated() {
			if ln, err := listen.TCP(opts.Addr); errors.Is(err, listen.ErrInUse) {
				fmt.Fprintln(stderr, portInUse(cfg, opts.Addr))
				return exitUsage
			} else if err == nil {
				ln.Close()
			}
		}
	}
	if cfg.RedisURL != "" {
		if err := checkRedisURL(cfg.RedisURL); err != nil {
			fmt.Fprintf(stderr, "herd: %v\n", err)
			return exitUsage
		}
	}
	// The embedded store lives in the primary (or, with --cluster off, in
	// the one process); with Redis every worker connects itself.
	var local store.Store
	if cfg.RedisURL == "" && !cluster.IsWorker() {
		var released atomic.Bool
		if cluster.IsUpgrade() && cfg.StateFile != "" {
			late := openLate(ctx, cfg, log)
			defer late.Close()
			opts.Calls = primaryCalls(late.get, &released)
			opts.OnHandover = func() { released.Store(true); late.Close() }
		} else {
			st, err := openEmbedded(cfg)
			if err != nil {
				fmt.Fprintf(stderr, "herd: %v\n", err)
				return exitUsage
			}
			defer st.Close()
			local = st
			opts.Calls = primaryCalls(func(context.Context) (store.Store, error) { return st, nil }, &released)
			opts.OnHandover = func() { released.Store(true); st.Close() }
		}
	}
	if !cluster.IsWorker() {
		backend := "redis " + store.RedactURL(cfg.RedisURL)
		if cfg.RedisURL == "" {
			backend = "embedded (memory: gone when the primary stops)"
			if cfg.StateFile != "" {
				backend = "embedded (bbolt " + cfg.StateFile + ")"
			}
		}
		log.Info("starting herd", "mode", cfg.Mode, "app_env", cfg.AppEnv, "workers", opts.Workers, "shared_state", backend)
	}
	err = cluster.Run(ctx, opts, func(ctx context.Context, w *cluster.Worker) error {
		var c app.Cluster
		st := local // --cluster off: the store is in this process
		switch {
		case cfg.RedisURL != "":
			rs, err := store.NewRedis(cfg.RedisURL, store.RedisOptions{})
			if err != nil {
				return err
			}
			defer rs.Close()
			st = rs
		case w.ID != 0:
			st = store.NewRemote(w)
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
			case <-w.Unready(): // the drain delay: still serving
			}
			a.SetDraining()
		}()
		if w.ID == 0 {
			w.Logger().Info("serving in a single process", "pid", os.Getpid())
		}
		return w.Serve(ctx, a)
	})
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, cluster.ErrNoPrimary):
		fmt.Fprintf(stderr, "herd: %v: unset %s to run herd normally\n", err, cluster.EnvWorkerID)
		return exitUsage
	case errors.Is(err, listen.ErrInUse):
		fmt.Fprintln(stderr, portInUse(cfg, opts.Addr))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitFail
	}
}

func portInUse(cfg serveConfig, addr string) string {
	return fmt.Sprintf("herd: invalid --port/PORT %d: %s is already in use; choose another port or stop what is using it", cfg.Port, addr)
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
