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
	{flag: "control-socket", env: "CONTROL_SOCKET", def: "", usage: "control socket path (default: herd-PORT.sock in $XDG_RUNTIME_DIR/herd, else in herd-UID in the temp dir)"},
	{flag: "balance", env: "BALANCE", def: "auto", usage: "how connections are spread: auto (least-conn, shared under connection churn), least-conn, shared (kernel queue) or sticky (by client address)"},
	{flag: "max-conns", env: "MAX_CONNS", def: "0", usage: "open connections per worker at most; more wait in the queue (0: no cap)"},
	{flag: "admin-addr", env: "ADMIN_ADDR", def: "auto", usage: "admin HTTP listener (metrics, dashboard): host:port, auto (127.0.0.1:PORT+6300) or off"},
	{flag: "admin-token", env: "ADMIN_TOKEN", def: "", usage: "token for the dashboard's actions (empty: generated into a file next to the control socket)"},
	{flag: "metrics", env: "METRICS", def: "true", usage: "count per-request figures in the workers and serve /metrics and the dashboard; false: neither (herd status still works)", bool: true},
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

// serveConfig is herd serve's validated configuration. The primary resolves
// it once and hands it to its workers over the IPC socket (as JSON), so that
// no worker reads argv, the environment's settings or .env.
type serveConfig struct {
	Port            int
	Host            string
	Mode            string
	Workers         int  // 0 in auto mode: cluster.DefaultWorkers(), capped in development
	WorkersDefault  bool // manual mode with no count: Workers is defaultManualWorkers
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
	Balance         string // a cluster.Balance
	MaxConns        int    // 0: no cap
	AdminAddr       string // "": off (admin.go)
	AdminToken      string
	DrainDelay      time.Duration
	Metrics         bool // false: no per-request figures, no admin listener (admin.go)

	// from says where each setting came from, for messages; the primary
	// keeps it (workers get no messages to write about settings).
	from resolved
}

// defaultManualWorkers is what --cluster manual runs when no count is
// given, as the reference's manual mode does.
const defaultManualWorkers = 4

// configError is a bad setting: the command prints it as one line and
// exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// Where a setting's value came from.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFlag
	fromEnv
	fromDotenv
)

// value is one setting's resolved value and where it came from.
type value struct {
	s    string
	kind sourceKind
	line int // of .env, for fromDotenv
}

// origin returns how a message names the setting the user gave, and a
// suffix saying where: ("--port", ""), ("PORT", " (from the environment)"),
// ("PORT", " (from .env line 3)"), ("--port/PORT", " (the default)").
func (v value) origin(s setting) (name, from string) {
	flagName, envName := "--"+s.flag, s.env
	if s.flag == "" {
		flagName = envName
	}
	if envName == "" {
		envName = flagName
	}
	switch v.kind {
	case fromFlag:
		return flagName, ""
	case fromEnv:
		return envName, " (from the environment)"
	case fromDotenv:
		return envName, fmt.Sprintf(" (from %s line %d)", dotenvName, v.line)
	}
	if flagName == envName {
		return flagName, " (the default)"
	}
	return flagName + "/" + envName, " (the default)"
}

// describe names the setting and its source in one phrase: "--port",
// "PORT (from the environment)".
func (v value) describe(s setting) string {
	name, from := v.origin(s)
	return name + from
}

// badSetting says that v, the value of s, is not allowed, naming the
// setting as the user gave it and where it came from.
func badSetting(s setting, v value, allowed string) error {
	return badSettingShown(s, v, v.s, allowed)
}

// badSettingShown is badSetting quoting shown in place of the value (a URL
// with its password redacted).
func badSettingShown(s setting, v value, shown, allowed string) error {
	name, from := v.origin(s)
	return &configError{fmt.Sprintf("invalid %s %q%s: %s", name, shown, from, allowed)}
}

// sources are where settings come from besides the command line: the
// environment and a .env file.
type sources struct {
	lookupEnv  func(string) (string, bool) // os.LookupEnv in the command
	dotenvPath string                      // missing is fine
}

// dotenvName is the .env file the commands read, in the working directory.
const dotenvName = ".env"

// osSources are the command's own environment and ./.env.
var osSources = sources{lookupEnv: os.LookupEnv, dotenvPath: dotenvName}

// resolved is each setting's value, by flag name, plus the sources for
// variables that are not settings of their own (CLUSTER_ENABLED).
type resolved struct {
	vals   map[string]value
	byName map[string]setting
	src    sources
	dotenv map[string]dotenvEntry
}

// get returns the value of the setting with this flag name.
func (r resolved) get(name string) value { return r.vals[name] }

// setting returns the setting with this flag name.
func (r resolved) setting(name string) setting { return r.byName[name] }

// bad is badSetting for the setting with this flag name.
func (r resolved) bad(name, allowed string) error {
	return badSetting(r.byName[name], r.vals[name], allowed)
}

// lookupVar returns a variable from the environment, else from .env.
func (r resolved) lookupVar(key string) (value, bool) {
	if v, ok := r.src.lookupEnv(key); ok {
		return value{s: v, kind: fromEnv}, true
	}
	if e, ok := r.dotenv[key]; ok {
		return value{s: e.val, kind: fromDotenv, line: e.line}, true
	}
	return value{}, false
}

// loadSettings is how every herd command reads its settings, so that they
// all agree with serve: it defines settings' flags on fs (besides any the
// command defined itself), parses args, reads the .env file and resolves
// each setting by precedence: flags > environment > .env > default. It
// returns the positional arguments. Errors are *configError.
func loadSettings(fs *flag.FlagSet, settings []setting, args []string, src sources) (resolved, []string, error) {
	r := resolved{byName: make(map[string]setting, len(settings)), src: src}
	defineFlags(fs, settings)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return r, nil, &configError{err.Error()}
	}
	if r.dotenv, err = readDotenv(src.dotenvPath); err != nil {
		return r, nil, &configError{err.Error()}
	}
	for _, s := range settings {
		r.byName[s.flag] = s
	}
	r.vals = resolve(fs, settings, src.lookupEnv, r.dotenv)
	return r, rest, nil
}

// pick returns the settings of serve with these flag names, for commands
// that read some of serve's settings.
func pick(names ...string) []setting {
	out := make([]setting, len(names))
	for i, n := range names {
		out[i] = find(serveSettings, n)
	}
	return out
}

// resolve returns each setting's value by precedence. lookupEnv is
// os.LookupEnv in the command; dotenv is the parsed .env file.
func resolve(fs *flag.FlagSet, settings []setting, lookupEnv func(string) (string, bool), dotenv map[string]dotenvEntry) map[string]value {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	vals := make(map[string]value, len(settings))
	for _, s := range settings {
		v := value{s: s.def}
		if e, ok := dotenv[s.env]; ok && s.env != "" {
			v = value{s: e.val, kind: fromDotenv, line: e.line}
		}
		if ev, ok := lookupEnv(s.env); ok && s.env != "" {
			v = value{s: ev, kind: fromEnv}
		}
		if set[s.flag] {
			v = value{s: fs.Lookup(s.flag).Value.String(), kind: fromFlag}
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

func parseBool(s setting, v value) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v.s))
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

// parsePort reads the port setting. min is 0 for serve (0 picks a free
// port) and 1 for the commands that connect to a server.
func parsePort(r resolved, min int) (int, error) {
	v := r.get("port")
	n, err := strconv.Atoi(strings.TrimSpace(v.s))
	if err != nil || n < min || n > 65535 {
		allowed := "must be a port number from 1 to 65535"
		if min == 0 {
			allowed = "must be a port number from 0 to 65535 (0 picks a free port)"
		}
		return 0, r.bad("port", allowed)
	}
	return n, nil
}

// loadServeConfig parses herd serve's flags and merges them with the
// environment and the .env file.
func loadServeConfig(args []string, src sources) (serveConfig, []string, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	r, rest, err := loadSettings(fs, serveSettings, args, src)
	if err != nil {
		return c, nil, err
	}
	c.from = r
	v := func(name string) string { return r.get(name).s }

	if c.Port, err = parsePort(r, 0); err != nil {
		return c, nil, err
	}
	c.Host = strings.TrimSpace(v("host"))

	c.Mode = strings.ToLower(strings.TrimSpace(v("cluster")))
	switch c.Mode {
	case modeAuto, modeManual, modeOff:
	default:
		return c, nil, r.bad("cluster", "must be auto, manual or off")
	}
	// CLUSTER_ENABLED=false is the reference's way to say "off"; a --cluster
	// flag given explicitly still wins over it.
	// --workers on the command line implies manual, over a mode from the
	// environment or .env; an explicit --cluster flag still wins.
	workersFlag := flagSet(fs, "workers") && !flagSet(fs, "cluster")
	if en, ok := r.lookupVar("CLUSTER_ENABLED"); ok && !flagSet(fs, "cluster") && !workersFlag {
		b, err := parseBool(setting{env: "CLUSTER_ENABLED"}, en)
		if err != nil {
			return c, nil, err
		}
		if !b {
			c.Mode = modeOff
		}
	}
	if w := strings.TrimSpace(v("workers")); w != "" {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > maxWorkers {
			return c, nil, r.bad("workers", fmt.Sprintf("must be a whole number from 1 to %d", maxWorkers))
		}
		if c.Mode != modeOff || workersFlag {
			c.Mode, c.Workers = modeManual, n
		}
	} else if c.Mode == modeManual {
		c.Workers, c.WorkersDefault = defaultManualWorkers, true
	}

	c.AppEnv = strings.ToLower(strings.TrimSpace(v("app-env")))
	if c.AppEnv != "production" && c.AppEnv != "development" {
		return c, nil, r.bad("app-env", "must be production or development")
	}
	if c.ShutdownTimeout, err = time.ParseDuration(strings.TrimSpace(v("shutdown-timeout"))); err != nil || c.ShutdownTimeout <= 0 {
		return c, nil, r.bad("shutdown-timeout", "must be a positive duration such as 30s or 1m")
	}
	c.LogFormat = strings.ToLower(strings.TrimSpace(v("log-format")))
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, nil, r.bad("log-format", "must be text or json")
	}
	if c.EnableCrash, err = parseBool(r.setting("enable-crash-endpoint"), r.get("enable-crash-endpoint")); err != nil {
		return c, nil, err
	}
	c.StateFile = strings.TrimSpace(v("state-file"))
	c.RedisURL = strings.TrimSpace(v("redis-url"))
	if c.StateFile != "" && c.RedisURL != "" {
		return c, nil, &configError{fmt.Sprintf("%s and %s both set: the shared store is either embedded (optionally persisted) or Redis, not both",
			r.get("state-file").describe(r.setting("state-file")), r.get("redis-url").describe(r.setting("redis-url")))}
	}
	for _, name := range []string{"ready-timeout", "worker-timeout"} {
		d, err := time.ParseDuration(strings.TrimSpace(v(name)))
		if err != nil || d <= 0 {
			return c, nil, r.bad(name, "must be a positive duration such as 30s or 1m")
		}
		if name == "ready-timeout" {
			c.ReadyTimeout = d
		} else {
			c.WorkerTimeout = d
		}
	}
	if c.MaxRequests, err = strconv.ParseUint(strings.TrimSpace(v("max-requests")), 10, 64); err != nil {
		return c, nil, r.bad("max-requests", "must be a whole number, 0 for never")
	}
	if m := strings.TrimSpace(v("max-memory")); m != "" {
		if c.MaxMemory, err = parseSize(m); err != nil || c.MaxMemory < 1<<20 {
			return c, nil, r.bad("max-memory", "must be a size of at least 1MB, such as 512MB or 1GB")
		}
	}
	if wp := strings.TrimSpace(v("worker-gomaxprocs")); wp != "" {
		if c.WorkerProcs, err = strconv.Atoi(wp); err != nil || c.WorkerProcs < 1 || c.WorkerProcs > 1024 {
			return c, nil, r.bad("worker-gomaxprocs", "must be a whole number from 1 to 1024")
		}
	}
	c.PIDFile = strings.TrimSpace(v("pid-file"))
	c.ControlSocket = strings.TrimSpace(v("control-socket"))
	switch c.Balance = strings.ToLower(strings.TrimSpace(v("balance"))); c.Balance {
	case "auto", "least-conn", "shared", "sticky":
	default:
		return c, nil, r.bad("balance", "must be auto, least-conn, shared or sticky")
	}
	if c.MaxConns, err = strconv.Atoi(strings.TrimSpace(v("max-conns"))); err != nil || c.MaxConns < 0 || c.MaxConns > 1<<24 {
		return c, nil, r.bad("max-conns", "must be a whole number of connections, 0 for no cap")
	}
	if c.AdminAddr, err = parseAdminAddr(r, v("admin-addr")); err != nil {
		return c, nil, err
	}
	c.AdminToken = strings.TrimSpace(v("admin-token"))
	if c.Metrics, err = parseMetrics(r, c.AdminAddr); err != nil {
		return c, nil, err
	}
	if !c.Metrics {
		c.AdminAddr = ""
	}
	if c.DrainDelay, err = parseDrainDelay(r, v("drain-delay")); err != nil {
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

// dotenvEntry is one KEY=VALUE line of a .env file.
type dotenvEntry struct {
	val  string
	line int
}

// readDotenv parses a .env file: KEY=VALUE lines, blank lines and # comments,
// an optional "export " prefix, and values optionally in single or double
// quotes. A missing file is an empty map. A key given twice keeps its last
// value.
func readDotenv(path string) (map[string]dotenvEntry, error) {
	vals := map[string]dotenvEntry{}
	f, err := os.Open(path) //nolint:gosec // G304: the .env file the user points at
	if errors.Is(err, os.ErrNotExist) {
		return vals, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
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
		vals[k] = dotenvEntry{val: val, line: n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return vals, nil
}
