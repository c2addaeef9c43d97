package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/listen"
)

const runUsage = `usage: herd run [flags] -- COMMAND [ARGS...]

Runs N copies of COMMAND, any program in any language, as supervised workers
that all serve the one socket herd opened: restart with backoff, rolling
reload (herd reload, SIGHUP), herd scale, herd status, graceful stop,
recycling by memory and age, metrics and dashboard (--admin-addr; no
per-request figures: herd does not see the program's requests). The
program finds the socket as fd 3 (LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID,
EINHORN_FD_0, SERVER_STARTER_PORT, or {fd} in ARGS); a Node.js
listen(PORT) on herd's port uses it by itself.
PORT holds the port. Flags override environment variables, which override
a .env file in the working directory.

flags:
`

// runSettings are herd run's settings: serve's that apply to any program,
// and its own.
var runSettings = append(pickFrom(serveSettings,
	"port", "host", "workers", "shutdown-timeout", "log-format", "ready-timeout",
	"worker-timeout", "max-memory", "pid-file", "control-socket", "admin-addr", "admin-token"),
	setting{flag: "stop-signal", env: "STOP_SIGNAL", def: "SIGTERM", usage: "signal that asks a worker to finish in-flight requests and exit (then SIGKILL of its process group after --shutdown-timeout)"},
	setting{flag: "ready-probe", env: "READY_PROBE", def: "", usage: "when a worker is ready, besides READY=1 on NOTIFY_SOCKET: empty (alive for --ready-after), notify (READY=1 only), http:/path (GET on the worker's private probe socket, fd 4) or tcp (the program accepted a connection on that socket)"},
	setting{flag: "ready-after", env: "READY_AFTER", def: "1s", usage: "with no --ready-probe: a worker alive this long counts as ready (the weakest sign)"},
	setting{flag: "max-age", env: "MAX_AGE", def: "", usage: "recycle a worker once it has been ready this long, replacement first, e.g. 24h (empty: never)"},
)

// pickFrom returns the settings with these flag names.
func pickFrom(settings []setting, names ...string) []setting {
	var out []setting
	for _, n := range names {
		out = append(out, find(settings, n))
	}
	return out
}

// runConfig is herd run's validated configuration.
type runConfig struct {
	Port            int
	Host            string
	Workers         int // 0: cluster.DefaultWorkers()
	ShutdownTimeout time.Duration
	LogFormat       string
	ReadyTimeout    time.Duration
	WorkerTimeout   time.Duration
	MaxMemory       uint64
	PIDFile         string
	ControlSocket   string
	AdminAddr       string // "": off (see parseAdminAddr)
	AdminToken      string
	StopSignal      syscall.Signal
	ReadyProbe      string
	ReadyAfter      time.Duration
	MaxAge          time.Duration
	Command         []string // after "--"
	from            resolved // where each setting came from, for messages
}

// stopSignals are the signals --stop-signal accepts.
var stopSignals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGWINCH": syscall.SIGWINCH,
}

// loadRunConfig parses herd run's flags (everything before "--") and merges
// them with the environment and the .env file at dotenvPath.
func loadRunConfig(args []string, lookupEnv func(string) (string, bool), dotenvPath string) (runConfig, error) {
	var c runConfig
	i := slices.Index(args, "--")
	if i < 0 || i == len(args)-1 {
		return c, &configError{"herd run needs a program to run: herd run [flags] -- COMMAND [ARGS...]"}
	}
	args, c.Command = args[:i], args[i+1:]
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	r, rest, err := loadSettings(fs, runSettings, args, sources{lookupEnv: lookupEnv, dotenvPath: dotenvPath})
	if err != nil {
		return c, err
	}
	if len(rest) > 0 {
		return c, &configError{fmt.Sprintf("unexpected argument %q before \"--\" (herd run [flags] -- COMMAND [ARGS...])", rest[0])}
	}
	c.from = r
	v := func(name string) string { return r.get(name).s }

	if c.Port, err = strconv.Atoi(strings.TrimSpace(v("port"))); err != nil || c.Port < 0 || c.Port > 65535 {
		return c, r.bad("port", "must be a port number from 0 to 65535 (0 picks a free port)")
	}
	c.Host = strings.TrimSpace(v("host"))
	if w := strings.TrimSpace(v("workers")); w != "" {
		if c.Workers, err = strconv.Atoi(w); err != nil || c.Workers < 1 || c.Workers > maxWorkers {
			return c, r.bad("workers", fmt.Sprintf("must be a whole number from 1 to %d", maxWorkers))
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"shutdown-timeout", &c.ShutdownTimeout}, {"ready-timeout", &c.ReadyTimeout}, {"worker-timeout", &c.WorkerTimeout}, {"ready-after", &c.ReadyAfter}} {
		if *d.dst, err = time.ParseDuration(strings.TrimSpace(v(d.name))); err != nil || *d.dst <= 0 {
			return c, r.bad(d.name, "must be a positive duration such as 30s or 1m")
		}
	}
	if a := strings.TrimSpace(v("max-age")); a != "" {
		if c.MaxAge, err = time.ParseDuration(a); err != nil || c.MaxAge < time.Second {
			return c, r.bad("max-age", "must be a duration of at least 1s, such as 1h or 24h (empty: never)")
		}
	}
	c.LogFormat = strings.ToLower(strings.TrimSpace(v("log-format")))
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, r.bad("log-format", "must be text or json")
	}
	if m := strings.TrimSpace(v("max-memory")); m != "" {
		if c.MaxMemory, err = parseSize(m); err != nil || c.MaxMemory < 1<<20 {
			return c, r.bad("max-memory", "must be a size of at least 1MB, such as 512MB or 1GB")
		}
	}
	sig := strings.ToUpper(strings.TrimSpace(v("stop-signal")))
	if !strings.HasPrefix(sig, "SIG") {
		sig = "SIG" + sig
	}
	var ok bool
	if c.StopSignal, ok = stopSignals[sig]; !ok {
		return c, r.bad("stop-signal", "must be one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH")
	}
	c.ReadyProbe = strings.TrimSpace(v("ready-probe"))
	if p := c.ReadyProbe; p != "" && p != "notify" && p != "tcp" && (!strings.HasPrefix(p, "http:/") || strings.ContainsAny(p, " \t")) {
		return c, r.bad("ready-probe", "must be empty, notify, tcp or http:/path")
	}
	c.PIDFile = strings.TrimSpace(v("pid-file"))
	c.ControlSocket = strings.TrimSpace(v("control-socket"))
	if c.AdminAddr, err = parseAdminAddr(r, v("admin-addr")); err != nil {
		return c, err
	}
	c.AdminToken = strings.TrimSpace(v("admin-token"))
	return c, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if cluster.IsExecHelper() {
		// Started by a primary as its exec step or reaper, not by a user.
		if err := cluster.ExecHelper(); err != nil {
			fmt.Fprintf(stderr, "herd: %v\n", err)
			return 127
		}
		return exitOK
	}
	if wantsHelp(args) {
		fmt.Fprint(stdout, runUsage)
		printDefaults(stdout, runSettings)
		return exitOK
	}
	cfg, err := loadRunConfig(args, os.LookupEnv, ".env")
	if err != nil {
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitUsage
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		fmt.Fprintf(stderr, "herd: invalid COMMAND %q: %v\n", cfg.Command[0], errors.Unwrap(err))
		return exitUsage
	}
	log := newLogger(cfg.LogFormat, stderr)
	opts := cluster.Options{
		Addr:            net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		Workers:         cfg.Workers,
		ShutdownTimeout: cfg.ShutdownTimeout,
		ReadyTimeout:    cfg.ReadyTimeout,
		WorkerTimeout:   cfg.WorkerTimeout,
		Recycle:         cluster.Recycle{MaxRSS: cfg.MaxMemory, MaxAge: cfg.MaxAge},
		PIDFile:         cfg.PIDFile,
		ControlSocket:   cfg.ControlSocket,
		ServeControl:    admin.ServeControl,
		// The same admin listener as herd serve's: metrics of worker state,
		// restarts, RSS (sampled from /proc by the primary), workers and
		// backlog, and the dashboard. Per-request figures stay empty: herd
		// does not see a foreign program's requests.
		Admin:   adminOptions(serveConfig{AdminAddr: cfg.AdminAddr, AdminToken: cfg.AdminToken}),
		Logger:  log,
		Args:    []string{"run"},
		Balance: cluster.BalanceShared, // the only policy a foreign program can take
		Exec: &cluster.Exec{
			Path: path, Args: cfg.Command, StopSignal: cfg.StopSignal,
			ReadyProbe: cfg.ReadyProbe, ReadyAfter: cfg.ReadyAfter,
		},
	}
	if opts.ControlSocket == "" {
		opts.ControlSocket = cluster.ControlSocketAuto
	}
	if os.Getenv(cluster.EnvUpgradeFrom) == "" {
		if ln, err := listen.TCP(opts.Addr); errors.Is(err, listen.ErrInUse) {
			fmt.Fprintln(stderr, portInUse(serveConfig{from: cfg.from}, opts.Addr))
			return exitUsage
		} else if err == nil {
			ln.Close()
		}
	}
	log.Info("starting herd run", "command", strings.Join(cfg.Command, " "), "workers", cmp0(cfg.Workers, cluster.DefaultWorkers()),
		"ready", readyWords(cfg), "stop_signal", unixSignalName(cfg.StopSignal))
	err = cluster.Run(ctx, opts, nil)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, listen.ErrInUse):
		fmt.Fprintln(stderr, portInUse(serveConfig{from: cfg.from}, opts.Addr))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitFail
	}
}

func cmp0(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// readyWords says which rung of the readiness ladder applies.
func readyWords(cfg runConfig) string {
	switch {
	case cfg.ReadyProbe == "notify":
		return "READY=1 on NOTIFY_SOCKET"
	case cfg.ReadyProbe == "tcp":
		return "READY=1 on NOTIFY_SOCKET or a connection accepted on the probe socket (fd 4)"
	case cfg.ReadyProbe != "":
		return "READY=1 on NOTIFY_SOCKET or GET " + strings.TrimPrefix(cfg.ReadyProbe, "http:") + " on the probe socket (fd 4)"
	default:
		return "READY=1 on NOTIFY_SOCKET or alive for " + cfg.ReadyAfter.String()
	}
}

func unixSignalName(s syscall.Signal) string {
	for name, v := range stopSignals {
		if v == s {
			return name
		}
	}
	return s.String()
}
