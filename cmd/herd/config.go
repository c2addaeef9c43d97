package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// setting is one configuration value: a flag, an environment variable, and
// a default, in that order of precedence after the flag (flags > environment
// > .env file > default).
type setting struct {
	flag, env, def, usage string
	bool                  bool // a boolean flag: "--name" alone means true
}

// serveSettings are herd serve's settings. Keep the README's configuration
// table in step with this list.
var serveSettings = []setting{
	{flag: "port", env: "PORT", def: "3000", usage: "TCP port to serve (0 picks a free one)"},
	{flag: "host", env: "HOST", def: "", usage: "address to bind (empty: all interfaces)"},
	{flag: "cluster", env: "CLUSTER_MODE", def: "auto", usage: "auto (one worker per usable core), manual (--workers N) or off (one process)"},
	{flag: "workers", env: "CLUSTER_WORKERS", def: "", usage: "number of workers (implies manual)"},
	{flag: "app-env", env: "APP_ENV", def: "production", usage: "production or development (development caps auto at 2 workers)"},
	{flag: "shutdown-timeout", env: "SHUTDOWN_TIMEOUT", def: "30s", usage: "how long a graceful stop waits for in-flight requests"},
	{flag: "log-format", env: "LOG_FORMAT", def: "text", usage: "text or json"},
	{flag: "enable-crash-endpoint", env: "ENABLE_CRASH_ENDPOINT", def: "false", usage: "enable POST /cluster/crash (never in production)", bool: true},
	{flag: "state-file", env: "STATE_FILE", def: "", usage: "persist the embedded shared store in this bbolt file"},
	{flag: "redis-url", env: "REDIS_URL", def: "", usage: "use Redis for shared state (redis://[:password@]host:port/db)"},
	{flag: "ready-timeout", env: "READY_TIMEOUT", def: "60s", usage: "how long a new worker may take to become ready"},
	{flag: "worker-timeout", env: "WORKER_TIMEOUT", def: "30s", usage: "a worker silent (no heartbeat) this long is killed and replaced"},
	{flag: "max-requests", env: "MAX_REQUESTS", def: "0", usage: "recycle a worker after about this many requests, replacement first (0: never)"},
	{flag: "max-memory", env: "MAX_MEMORY", def: "", usage: "recycle a worker whose RSS exceeds this size, e.g. 512MB (empty: never)"},
	{flag: "worker-gomaxprocs", env: "WORKER_GOMAXPROCS", def: "", usage: "GOMAXPROCS of each worker (default: usable cores / workers, at least 1)"},
	{flag: "pid-file", env: "PID_FILE", def: "", usage: "write the live primary's pid here (follows binary upgrades)"},
	{flag: "control-socket", env: "CONTROL_SOCKET", def: "", usage: "control socket path (default: herd-PORT.sock in the temp dir)"},
	{flag: "drain-delay", env: "DRAIN_DELAY", def: "0s", usage: "on SIGTERM, fail /readyz and keep serving this long before draining (5s behind a Kubernetes Service)"},
}

// Cluster modes.
const (
	modeAuto   = "auto"
	modeManual = "manual"
	modeOff    = "off"
)

// maxWorkers bounds --workers: far beyond any machine herd targets, small
// enough that a typo cannot fork thousands of processes.
const maxWorkers = 1024

// serveConfig is herd serve's validated configuration.
type serveConfig struct {
	Port            int
	Host            string
	Mode            string
	Workers         int // 0 in auto mode: cluster.DefaultWorkers(), capped in development
	AppEnv          string
	ShutdownTimeout time.Duration
	LogFormat       string
	EnableCrash     bool
	StateFile       string
	RedisURL        string
	ReadyTimeout    time.Duration
	WorkerTimeout   time.Duration
	MaxRequests     uint64
	MaxMemory       uint64 // bytes
	PIDFile         string
	ControlSocket   string // empty: derived from the port
	WorkerProcs     int    // 0: automatic
	DrainDelay      time.Duration
}

// configError is a bad setting: the command prints it as one line and
// exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badSetting(s setting, val, allowed string) error {
	name := "--" + s.flag
	if s.env != "" {
		name += "/" + s.env
	}
	return &configError{fmt.Sprintf("invalid %s %q: %s", name, val, allowed)}
}

// resolve returns each setting's value by precedence. lookupEnv is
// os.LookupEnv in the command; dotenv is the parsed .env file.
func resolve(fs *flag.FlagSet, settings []setting, lookupEnv func(string) (string, bool), dotenv map[string]string) map[string]string {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	vals := make(map[string]string, len(settings))
	for _, s := range settings {
		v := s.def
		if dv, ok := dotenv[s.env]; ok && s.env != "" {
			v = dv
		}
		if ev, ok := lookupEnv(s.env); ok && s.env != "" {
			v = ev
		}
		if set[s.flag] {
			v = fs.Lookup(s.flag).Value.String()
		}
		vals[s.flag] = v
	}
	return vals
}

// defineFlags registers settings on fs as string (or bool) flags whose
// defaults are empty: the precedence is worked out by resolve.
func defineFlags(fs *flag.FlagSet, settings []setting) {
	for _, s := range settings {
		usage := s.usage
		if s.env != "" {
			usage += " (env " + s.env + ")"
		}
		if s.def != "" {
			usage += " (default " + s.def + ")"
		}
		if s.bool {
			fs.Var(new(boolFlag), s.flag, usage)
		} else {
			fs.String(s.flag, "", usage)
		}
	}
}

// boolFlag is a boolean flag ("--name" alone means true) that keeps
// whatever value it was given, so that "--name=maybe" is reported like any
// other bad value, naming the setting and what is allowed.
type boolFlag struct{ v string }

func (b *boolFlag) String() string     { return b.v }
func (b *boolFlag) Set(v string) error { b.v = v; return nil }
func (b *boolFlag) IsBoolFlag() bool   { return true }

func parseBool(s setting, v string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, badSetting(s, v, "must be true or false")
	}
	return b, nil
}

func find(settings []setting, name string) setting {
	for _, s := range settings {
		if s.flag == name {
			return s
		}
	}
	panic("unknown setting " + name) // a programming error in this file
}

// loadServeConfig parses herd serve's flags and merges them with the
// environment and the .env file at dotenvPath (missing is fine).
func loadServeConfig(args []string, lookupEnv func(string) (string, bool), dotenvPath string) (serveConfig, []string, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	defineFlags(fs, serveSettings)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return c, nil, &configError{err.Error()}
	}
	dotenv, err := readDotenv(dotenvPath)
	if err != nil {
		return c, nil, &configError{err.Error()}
	}
	v := resolve(fs, serveSettings, lookupEnv, dotenv)
	st := func(name string) setting { return find(serveSettings, name) }

	if c.Port, err = strconv.Atoi(strings.TrimSpace(v["port"])); err != nil || c.Port < 0 || c.Port > 65535 {
		return c, nil, badSetting(st("port"), v["port"], "must be a port number from 0 to 65535 (0 picks a free port)")
	}
	c.Host = strings.TrimSpace(v["host"])

	c.Mode = strings.ToLower(strings.TrimSpace(v["cluster"]))
	switch c.Mode {
	case modeAuto, modeManual, modeOff:
	default:
		return c, nil, badSetting(st("cluster"), v["cluster"], "must be auto, manual or off")
	}
	// CLUSTER_ENABLED=false is the reference's way to say "off"; a --cluster
	// flag given explicitly still wins over it.
	// --workers on the command line implies manual, over a mode from the
	// environment or .env; an explicit --cluster flag still wins.
	workersFlag := flagSet(fs, "workers") && !flagSet(fs, "cluster")
	if en, ok := lookupEnvOrDotenv("CLUSTER_ENABLED", lookupEnv, dotenv); ok && !flagSet(fs, "cluster") && !workersFlag {
		b, err := parseBool(setting{env: "CLUSTER_ENABLED", flag: "cluster"}, en)
		if err != nil {
			return c, nil, &configError{fmt.Sprintf("invalid CLUSTER_ENABLED %q: must be true or false", en)}
		}
		if !b {
			c.Mode = modeOff
		}
	}
	if w := strings.TrimSpace(v["workers"]); w != "" {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > maxWorkers {
			return c, nil, badSetting(st("workers"), v["workers"], fmt.Sprintf("must be a whole number from 1 to %d", maxWorkers))
		}
		if c.Mode != modeOff || workersFlag {
			c.Mode, c.Workers = modeManual, n
		}
	} else if c.Mode == modeManual {
		return c, nil, &configError{"--cluster manual needs --workers N (or CLUSTER_WORKERS)"}
	}

	c.AppEnv = strings.ToLower(strings.TrimSpace(v["app-env"]))
	if c.AppEnv != "production" && c.AppEnv != "development" {
		return c, nil, badSetting(st("app-env"), v["app-env"], "must be production or development")
	}
	if c.ShutdownTimeout, err = time.ParseDuration(strings.TrimSpace(v["shutdown-timeout"])); err != nil || c.ShutdownTimeout <= 0 {
		return c, nil, badSetting(st("shutdown-timeout"), v["shutdown-timeout"], "must be a positive duration such as 30s or 1m")
	}
	c.LogFormat = strings.ToLower(strings.TrimSpace(v["log-format"]))
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, nil, badSetting(st("log-format"), v["log-format"], "must be text or json")
	}
	if c.EnableCrash, err = parseBool(st("enable-crash-endpoint"), v["enable-crash-endpoint"]); err != nil {
		return c, nil, err
	}
	c.StateFile = strings.TrimSpace(v["state-file"])
	c.RedisURL = strings.TrimSpace(v["redis-url"])
	if c.StateFile != "" && c.RedisURL != "" {
		return c, nil, &configError{"--state-file and --redis-url both set: the shared store is either embedded (optionally persisted) or Redis, not both"}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"ready-timeout", &c.ReadyTimeout}, {"worker-timeout", &c.WorkerTimeout}} {
		if *d.dst, err = time.ParseDuration(strings.TrimSpace(v[d.name])); err != nil || *d.dst <= 0 {
			return c, nil, badSetting(st(d.name), v[d.name], "must be a positive duration such as 30s or 1m")
		}
	}
	if c.MaxRequests, err = strconv.ParseUint(strings.TrimSpace(v["max-requests"]), 10, 64); err != nil {
		return c, nil, badSetting(st("max-requests"), v["max-requests"], "must be a whole number, 0 for never")
	}
	if m := strings.TrimSpace(v["max-memory"]); m != "" {
		if c.MaxMemory, err = parseSize(m); err != nil || c.MaxMemory < 1<<20 {
			return c, nil, badSetting(st("max-memory"), v["max-memory"], "must be a size of at least 1MB, such as 512MB or 1GB")
		}
	}
	if wp := strings.TrimSpace(v["worker-gomaxprocs"]); wp != "" {
		if c.WorkerProcs, err = strconv.Atoi(wp); err != nil || c.WorkerProcs < 1 || c.WorkerProcs > 1024 {
			return c, nil, badSetting(st("worker-gomaxprocs"), v["worker-gomaxprocs"], "must be a whole number from 1 to 1024")
		}
	}
	c.PIDFile = strings.TrimSpace(v["pid-file"])
	c.ControlSocket = strings.TrimSpace(v["control-socket"])
	if c.DrainDelay, err = parseDrainDelay(st("drain-delay"), v["drain-delay"]); err != nil {
		return c, nil, err
	}
	return c, rest, nil
}

// parseSize reads a byte size: a number with an optional unit B, KB, MB, GB
// (powers of 1024, as RSS is reported; KiB, MiB, GiB are accepted too).
func parseSize(s string) (uint64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := uint64(1)
	for _, unit := range []struct {
		suffix string
		mult   uint64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(u, unit.suffix) {
			u, mult = strings.TrimSpace(strings.TrimSuffix(u, unit.suffix)), unit.mult
			break
		}
	}
	n, err := strconv.ParseUint(u, 10, 64)
	if err != nil || n > (1<<64-1)/mult {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func lookupEnvOrDotenv(key string, lookupEnv func(string) (string, bool), dotenv map[string]string) (string, bool) {
	if v, ok := lookupEnv(key); ok {
		return v, true
	}
	v, ok := dotenv[key]
	return v, ok
}

// readDotenv parses a .env file: KEY=VALUE lines, blank lines and # comments,
// an optional "export " prefix, and values optionally in single or double
// quotes. A missing file is an empty map.
func readDotenv(path string) (map[string]string, error) {
	vals := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return vals, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, val, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s line %d: want KEY=VALUE, got %q", path, n, line)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		} else if i := strings.Index(val, " #"); i >= 0 {
			val = strings.TrimSpace(val[:i])
		}
		vals[k] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %v", path, err)
	}
	return vals, nil
}
