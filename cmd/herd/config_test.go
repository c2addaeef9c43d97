package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdenv"
)

// envMap is an injected environment.
func envMap(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

// writeDotenv writes a .env file into a fresh directory and returns its path.
func writeDotenv(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// noDotenv is a .env path that does not exist.
func noDotenv(t *testing.T) string { return filepath.Join(t.TempDir(), ".env") }

func mustLoad(t *testing.T, args []string, env map[string]string, dotenvPath string) serveConfig {
	t.Helper()
	c, rest, err := loadServeConfig(args, sources{envMap(env), dotenvPath})
	if err != nil {
		t.Fatalf("loadServeConfig(%q): %v", args, err)
	}
	if len(rest) > 0 {
		t.Fatalf("loadServeConfig(%q): unexpected positional %q", args, rest)
	}
	return c
}

func TestServeConfigDefaults(t *testing.T) {
	c := mustLoad(t, nil, nil, noDotenv(t))
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"port", c.Port, 3000},
		{"host", c.Host, ""},
		{"cluster", c.Mode, modeAuto},
		{"workers", c.Workers, 0},
		{"app-env", c.AppEnv, "production"},
		{"shutdown-timeout", c.ShutdownTimeout, 30 * time.Second},
		{"log-format", c.LogFormat, "text"},
		{"enable-crash-endpoint", c.EnableCrash, false},
		{"balance", c.Balance, "auto"},
		{"max-conns", c.MaxConns, 0},
		{"metrics", c.Metrics, true},
		{"admin-addr", c.AdminAddr, cluster.AdminAuto},
	} {
		if f.got != f.want {
			t.Errorf("default %s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

// TestServeConfigPrecedence: for each setting, a .env value beats the
// default, the environment beats .env, and a flag beats the environment.
func TestServeConfigPrecedence(t *testing.T) {
	for _, tc := range []struct {
		env, flag             string
		dotenv, envVal, flagV string
		field                 func(serveConfig) any
		wantDot, wantEnv      any
		wantFlag              any
	}{
		{"PORT", "--port", "4000", "5000", "6000",
			func(c serveConfig) any { return c.Port }, 4000, 5000, 6000},
		{"HOST", "--host", "10.0.0.1", "127.0.0.2", "::1",
			func(c serveConfig) any { return c.Host }, "10.0.0.1", "127.0.0.2", "::1"},
		{"CLUSTER_WORKERS", "--workers", "2", "3", "4",
			func(c serveConfig) any { return c.Workers }, 2, 3, 4},
		{"CLUSTER_MODE", "--cluster", "off", "auto", "off",
			func(c serveConfig) any { return c.Mode }, modeOff, modeAuto, modeOff},
		{"APP_ENV", "--app-env", "development", "production", "development",
			func(c serveConfig) any { return c.AppEnv }, "development", "production", "development"},
		{"SHUTDOWN_TIMEOUT", "--shutdown-timeout", "5s", "1m", "250ms",
			func(c serveConfig) any { return c.ShutdownTimeout }, 5 * time.Second, time.Minute, 250 * time.Millisecond},
		{"LOG_FORMAT", "--log-format", "json", "text", "json",
			func(c serveConfig) any { return c.LogFormat }, "json", "text", "json"},
		{"ENABLE_CRASH_ENDPOINT", "--enable-crash-endpoint=true", "true", "false", "",
			func(c serveConfig) any { return c.EnableCrash }, true, false, true},
		{"METRICS", "--metrics=false", "false", "true", "",
			func(c serveConfig) any { return c.Metrics }, false, true, false},
	} {
		t.Run(tc.env, func(t *testing.T) {
			dot := writeDotenv(t, tc.env+"="+tc.dotenv+"\n")
			if got := tc.field(mustLoad(t, nil, nil, dot)); got != tc.wantDot {
				t.Errorf(".env %s=%s: got %v, want %v", tc.env, tc.dotenv, got, tc.wantDot)
			}
			env := map[string]string{tc.env: tc.envVal}
			if got := tc.field(mustLoad(t, nil, env, dot)); got != tc.wantEnv {
				t.Errorf("env %s=%s over .env: got %v, want %v", tc.env, tc.envVal, got, tc.wantEnv)
			}
			args := []string{tc.flag}
			if tc.flagV != "" {
				args = append(args, tc.flagV)
			}
			if got := tc.field(mustLoad(t, args, env, dot)); got != tc.wantFlag {
				t.Errorf("flag %q over env: got %v, want %v", args, got, tc.wantFlag)
			}
		})
	}
}

func TestServeConfigModes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		env, dotenv map[string]string
		mode        string
		workers     int
	}{
		{"auto by default", nil, nil, nil, modeAuto, 0},
		{"--workers implies manual", []string{"--workers", "3"}, nil, nil, modeManual, 3},
		{"CLUSTER_WORKERS implies manual", nil, map[string]string{"CLUSTER_WORKERS": "5"}, nil, modeManual, 5},
		{"explicit manual", []string{"--cluster", "manual", "--workers", "2"}, nil, nil, modeManual, 2},
		{"manual without a count runs 4", []string{"--cluster", "manual"}, nil, nil, modeManual, 4},
		{"CLUSTER_MODE=manual without a count runs 4", nil, nil, map[string]string{"CLUSTER_MODE": "manual"}, modeManual, 4},
		{"--workers beats auto", []string{"--cluster", "auto", "--workers", "2"}, nil, nil, modeManual, 2},
		{"off ignores workers", []string{"--cluster", "off", "--workers", "3"}, nil, nil, modeOff, 0},
		{"mode is case-insensitive", []string{"--cluster", " OFF "}, nil, nil, modeOff, 0},
		{"CLUSTER_ENABLED=false", nil, map[string]string{"CLUSTER_ENABLED": "false"}, nil, modeOff, 0},
		{"CLUSTER_ENABLED=0 in .env", nil, nil, map[string]string{"CLUSTER_ENABLED": "0"}, modeOff, 0},
		{"CLUSTER_ENABLED=true keeps auto", nil, map[string]string{"CLUSTER_ENABLED": "true"}, nil, modeAuto, 0},
		{"CLUSTER_ENABLED=false beats CLUSTER_MODE", nil, map[string]string{"CLUSTER_ENABLED": "false", "CLUSTER_MODE": "auto"}, nil, modeOff, 0},
		{"--cluster beats CLUSTER_ENABLED=false", []string{"--cluster", "auto"}, map[string]string{"CLUSTER_ENABLED": "false"}, nil, modeAuto, 0},
		{"--workers beats CLUSTER_ENABLED=false", []string{"--workers", "2"}, map[string]string{"CLUSTER_ENABLED": "false"}, nil, modeManual, 2},
		{"--workers beats CLUSTER_MODE=off", []string{"--workers", "2"}, map[string]string{"CLUSTER_MODE": "off"}, nil, modeManual, 2},
		{"--workers beats .env CLUSTER_MODE=off", []string{"--workers", "2"}, nil, map[string]string{"CLUSTER_MODE": "off"}, modeManual, 2},
		{"CLUSTER_ENABLED=false beats CLUSTER_WORKERS", nil, map[string]string{"CLUSTER_ENABLED": "false", "CLUSTER_WORKERS": "2"}, nil, modeOff, 0},
		{"CLUSTER_MODE=off beats CLUSTER_WORKERS", nil, map[string]string{"CLUSTER_MODE": "off", "CLUSTER_WORKERS": "2"}, nil, modeOff, 0},
		{"--enable-crash-endpoint alone", []string{"--enable-crash-endpoint"}, nil, nil, modeAuto, 0},
		{"env CLUSTER_ENABLED beats .env", nil, map[string]string{"CLUSTER_ENABLED": "true"}, map[string]string{"CLUSTER_ENABLED": "false"}, modeAuto, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			for k, v := range tc.dotenv {
				b.WriteString(k + "=" + v + "\n")
			}
			c := mustLoad(t, tc.args, tc.env, writeDotenv(t, b.String()))
			if c.Mode != tc.mode || c.Workers != tc.workers {
				t.Errorf("mode %q workers %d, want %q %d", c.Mode, c.Workers, tc.mode, tc.workers)
			}
		})
	}
}

// TestWorkerCount pretends to have 8 usable cores: auto runs 8 in
// production, 2 in development; manual runs what was asked; off runs one.
func TestWorkerCount(t *testing.T) {
	cores := 8
	defaultWorkers = func() int { return cores }
	defer func() { defaultWorkers = cluster.DefaultWorkers }()
	for _, tc := range []struct {
		cfg  serveConfig
		want int
	}{
		{serveConfig{Mode: modeAuto, AppEnv: "production"}, 8},
		{serveConfig{Mode: modeAuto, AppEnv: "development"}, 2},
		{serveConfig{Mode: modeManual, Workers: 5, AppEnv: "development"}, 5},
		{serveConfig{Mode: modeManual, Workers: 3, AppEnv: "production"}, 3},
		{serveConfig{Mode: modeOff, AppEnv: "production"}, 1},
	} {
		if got := workerCount(tc.cfg); got != tc.want {
			t.Errorf("workerCount(%+v) = %d, want %d", tc.cfg, got, tc.want)
		}
	}
	cores = 1
	if got := workerCount(serveConfig{Mode: modeAuto, AppEnv: "development"}); got != 1 {
		t.Errorf("one core in development: %d workers, want 1", got)
	}
	// And through the configuration, as a user sets it.
	cores = 8
	c := mustLoad(t, nil, map[string]string{"APP_ENV": "development"}, noDotenv(t))
	if got := workerCount(c); got != 2 {
		t.Errorf("APP_ENV=development on 8 cores: %d workers, want 2", got)
	}
}

func TestServeConfigFlagsAnywhere(t *testing.T) {
	for _, args := range [][]string{
		{"--port", "4100", "--workers", "2", "extra"},
		{"extra", "--port", "4100", "--workers", "2"},
		{"--port", "4100", "extra", "--workers", "2"},
		{"-port=4100", "extra", "-workers=2"},
		{"--port=4100", "--workers=2", "extra"},
	} {
		c, rest, err := loadServeConfig(args, sources{envMap(nil), noDotenv(t)})
		if err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		if c.Port != 4100 || c.Workers != 2 || !reflect.DeepEqual(rest, []string{"extra"}) {
			t.Errorf("%q: port %d workers %d rest %q; want 4100 2 [extra]", args, c.Port, c.Workers, rest)
		}
	}
}

func TestServeConfigCrashFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"--enable-crash-endpoint"}, nil, true},
		{[]string{"-enable-crash-endpoint"}, nil, true},
		{[]string{"--enable-crash-endpoint=false"}, map[string]string{"ENABLE_CRASH_ENDPOINT": "true"}, false},
		{nil, map[string]string{"ENABLE_CRASH_ENDPOINT": "1"}, true},
		{nil, map[string]string{"ENABLE_CRASH_ENDPOINT": " TRUE "}, true},
	} {
		if got := mustLoad(t, tc.args, tc.env, noDotenv(t)).EnableCrash; got != tc.want {
			t.Errorf("args %q env %v: EnableCrash = %v, want %v", tc.args, tc.env, got, tc.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		positional []string
		port, host string
		crash      bool
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, "", "", false},
		{[]string{"--port", "1", "a", "--host", "h", "b"}, []string{"a", "b"}, "1", "h", false},
		{[]string{"a", "--enable-crash-endpoint", "b"}, []string{"a", "b"}, "", "", true},
		{[]string{"a", "--", "--port", "2"}, []string{"a", "--port", "2"}, "", "", false},
		{[]string{"--port", "3", "--", "-x"}, []string{"-x"}, "3", "", false},
		{nil, nil, "", "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		port := fs.String("port", "", "")
		host := fs.String("host", "", "")
		crash := fs.Bool("enable-crash-endpoint", false, "")
		got, err := parseArgs(fs, tc.args)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.positional) || *port != tc.port || *host != tc.host || *crash != tc.crash {
			t.Errorf("parseArgs(%q) = %q port=%q host=%q crash=%v; want %q %q %q %v",
				tc.args, got, *port, *host, *crash, tc.positional, tc.port, tc.host, tc.crash)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if _, err := parseArgs(fs, []string{"a", "--bogus"}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("an unknown flag after a positional: err = %v, want one naming it", err)
	}
}

// TestServeConfigBadValues: every bad value is a *configError, one line,
// naming the setting as the user gave it (flag or variable), where it came
// from, and what is allowed.
func TestServeConfigBadValues(t *testing.T) {
	const (
		workersA = "from 1 to 1024"
		clusterA = "auto, manual or off"
		portA    = "from 0 to 65535"
		timeoutA = "positive duration"
		logfA    = "text or json"
		appEnvA  = "production or development"
		boolA    = "true or false"
		fromEnv  = "(from the environment)"
	)
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		dotenv string
		want   []string // substrings of the message
		not    []string // and what it must not say
	}{
		{"workers 0", []string{"--workers", "0"}, nil, "", []string{`invalid --workers "0":`, workersA}, []string{"CLUSTER_WORKERS"}},
		{"workers -3", []string{"--workers", "-3"}, nil, "", []string{`--workers "-3"`, workersA}, nil},
		{"workers abc", []string{"--workers", "abc"}, nil, "", []string{`--workers "abc"`, workersA}, nil},
		{"workers 5000", []string{"--workers", "5000"}, nil, "", []string{`--workers "5000"`, workersA}, nil},
		{"workers 2.5", []string{"--workers=2.5"}, nil, "", []string{"--workers", workersA}, nil},
		{"CLUSTER_WORKERS abc", nil, map[string]string{"CLUSTER_WORKERS": "abc"}, "", []string{`CLUSTER_WORKERS "abc" ` + fromEnv, workersA}, []string{"--workers"}},
		{".env CLUSTER_WORKERS 0", nil, nil, "# workers\nCLUSTER_WORKERS=0\n", []string{`CLUSTER_WORKERS "0" (from .env line 2)`, workersA}, []string{"--workers"}},
		{"cluster bogus", []string{"--cluster", "bogus"}, nil, "", []string{`--cluster "bogus"`, clusterA}, nil},
		{"CLUSTER_MODE bogus", nil, map[string]string{"CLUSTER_MODE": "bogus"}, "", []string{`CLUSTER_MODE "bogus" ` + fromEnv, clusterA}, nil},
		{"port -1", []string{"--port", "-1"}, nil, "", []string{`--port "-1"`, portA}, nil},
		{"port 70000", []string{"--port", "70000"}, nil, "", []string{`--port "70000"`, portA}, nil},
		{"port x", []string{"--port", "x"}, nil, "", []string{`--port "x"`, portA}, nil},
		{"PORT x", nil, map[string]string{"PORT": "x"}, "", []string{`PORT "x" ` + fromEnv, portA}, []string{"--port"}},
		{".env PORT x", nil, nil, "PORT=x\n", []string{`PORT "x" (from .env line 1)`, portA}, []string{"--port"}},
		{"PORT x under a good flag", []string{"--port", "0"}, map[string]string{"PORT": "x"}, "", nil, nil},
		{"shutdown-timeout 0", []string{"--shutdown-timeout", "0"}, nil, "", []string{"--shutdown-timeout", timeoutA}, nil},
		{"shutdown-timeout -1s", []string{"--shutdown-timeout", "-1s"}, nil, "", []string{"--shutdown-timeout", timeoutA}, nil},
		{"shutdown-timeout abc", []string{"--shutdown-timeout", "abc"}, nil, "", []string{`--shutdown-timeout "abc"`, timeoutA}, nil},
		{"shutdown-timeout 30 (no unit)", []string{"--shutdown-timeout", "30"}, nil, "", []string{"--shutdown-timeout", timeoutA}, nil},
		{".env SHUTDOWN_TIMEOUT 30", nil, nil, "PORT=1\nSHUTDOWN_TIMEOUT=30\n", []string{`SHUTDOWN_TIMEOUT "30" (from .env line 2)`, timeoutA}, nil},
		{"log-format xml", []string{"--log-format", "xml"}, nil, "", []string{`--log-format "xml"`, logfA}, nil},
		{"app-env staging", []string{"--app-env", "staging"}, nil, "", []string{`--app-env "staging"`, appEnvA}, nil},
		{"APP_ENV staging", nil, map[string]string{"APP_ENV": "staging"}, "", []string{`APP_ENV "staging" ` + fromEnv, appEnvA}, nil},
		{"ENABLE_CRASH_ENDPOINT maybe", nil, map[string]string{"ENABLE_CRASH_ENDPOINT": "maybe"}, "", []string{`ENABLE_CRASH_ENDPOINT "maybe" ` + fromEnv, boolA}, nil},
		{"--enable-crash-endpoint=maybe", []string{"--enable-crash-endpoint=maybe"}, nil, "", []string{`--enable-crash-endpoint "maybe"`, boolA}, nil},
		{"CLUSTER_ENABLED maybe", nil, map[string]string{"CLUSTER_ENABLED": "maybe"}, "", []string{`CLUSTER_ENABLED "maybe" ` + fromEnv, boolA}, nil},
		{".env CLUSTER_ENABLED maybe", nil, nil, "CLUSTER_ENABLED=maybe", []string{`CLUSTER_ENABLED "maybe" (from .env line 1)`, boolA}, nil},
		{"MAX_MEMORY 1KB", nil, map[string]string{"MAX_MEMORY": "1KB"}, "", []string{`MAX_MEMORY "1KB" ` + fromEnv, "at least 1MB"}, nil},
		{"READY_TIMEOUT in .env", nil, nil, "READY_TIMEOUT=soon", []string{`READY_TIMEOUT "soon" (from .env line 1)`, timeoutA}, nil},
		{"malformed .env line", nil, nil, "# ok\nPORT=3100\nthis is not a setting\n", []string{".env line 3", "KEY=VALUE"}, nil},
		{"unknown flag", []string{"--bogus"}, nil, "", []string{"bogus"}, nil},
		{"flag without value", []string{"--port"}, nil, "", []string{"port"}, nil},
		{"state file and redis", []string{"--state-file", "s.db", "--redis-url", "redis://x"}, nil, "", []string{"--state-file and --redis-url both set"}, nil},
		{"state file in .env and redis in env", nil, map[string]string{"REDIS_URL": "redis://x"}, "STATE_FILE=s.db", []string{"STATE_FILE (from .env line 1) and REDIS_URL (from the environment) both set"}, nil},
		{"balance round-robin", []string{"--balance", "round-robin"}, nil, "", []string{`--balance "round-robin"`, "auto, least-conn, shared or sticky"}, nil},
		{"BALANCE empty", nil, map[string]string{"BALANCE": ""}, "", []string{`BALANCE "" ` + fromEnv, "auto, least-conn, shared or sticky"}, nil},
		{"max-conns -1", []string{"--max-conns", "-1"}, nil, "", []string{`--max-conns "-1"`, "whole number"}, nil},
		{"METRICS maybe", nil, map[string]string{"METRICS": "maybe"}, "", []string{`METRICS "maybe" ` + fromEnv, boolA}, nil},
		{"metrics off with an admin address", []string{"--metrics=false", "--admin-addr", "127.0.0.1:9300"}, nil, "",
			[]string{`invalid --admin-addr "127.0.0.1:9300"`, `--metrics "false" turns off`}, nil},
		{"METRICS=false in .env with ADMIN_ADDR auto", nil, map[string]string{"ADMIN_ADDR": "auto"}, "METRICS=false\n",
			[]string{`ADMIN_ADDR "auto" ` + fromEnv, `METRICS "false" (from .env line 1) turns off`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadServeConfig(tc.args, sources{envMap(tc.env), writeDotenv(t, tc.dotenv)})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want none: the flag wins over the bad variable", err)
				}
				return
			}
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *configError", err, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(msg, w) {
					t.Errorf("message %q names %q, which the user did not set", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is more than one line", msg)
			}
		})
	}
}

func TestReadDotenv(t *testing.T) {
	path := writeDotenv(t, strings.Join([]string{
		"# a comment",
		"",
		"PORT=3100",
		"  HOST = 127.0.0.1  ",
		"export APP_ENV=development",
		`LOG_FORMAT="json"`,
		`SHUTDOWN_TIMEOUT='5s'`,
		"CLUSTER_WORKERS=2 # two on a laptop",
		`QUOTED="a # not a comment"`,
		"URL=redis://h:1/0?a=b",
		"EMPTY=",
		"SPACED=\"  kept  \"",
	}, "\n"))
	entries, err := readDotenv(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, e := range entries {
		got[k] = e.val
	}
	if e := entries["PORT"]; e.line != 3 {
		t.Errorf("PORT is on line 3, readDotenv says %d", e.line)
	}
	want := map[string]string{
		"PORT": "3100", "HOST": "127.0.0.1", "APP_ENV": "development", "LOG_FORMAT": "json",
		"SHUTDOWN_TIMEOUT": "5s", "CLUSTER_WORKERS": "2", "QUOTED": "a # not a comment",
		"URL": "redis://h:1/0?a=b", "EMPTY": "", "SPACED": "  kept  ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("readDotenv:\n got %q\nwant %q", got, want)
	}

	if got, err := readDotenv(noDotenv(t)); err != nil || len(got) != 0 {
		t.Errorf("missing .env: %v, %v; want empty and no error", got, err)
	}

	for _, bad := range []string{"NOEQUALS", "=value", "TWO WORDS=1", "PORT=1\n\tjunk line"} {
		p := writeDotenv(t, bad+"\n")
		if _, err := readDotenv(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line") {
			t.Errorf("readDotenv(%q): err = %v, want one naming the file and line", bad, err)
		}
	}

	dir := filepath.Join(t.TempDir(), ".env")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readDotenv(dir); err == nil {
		t.Error("a .env that is a directory: no error")
	}
}

// Tests, herd verify and make bench start herd without the settings of the
// caller's shell: the list they strip must name every setting serve reads.
func TestTestsStripEverySetting(t *testing.T) {
	for _, s := range serveSettings {
		if !slices.Contains(herdenv.Names, s.env) {
			t.Errorf("herdenv.Names lacks %s (--%s): a developer's %s would leak into the tests, herd verify and make bench", s.env, s.flag, s.env)
		}
	}
}

// TestCommandsResolveSettingsLikeServe: the control commands, healthcheck
// and loadtest find the server serve would run with the same flags,
// environment and .env: the port from any source, and the control socket
// setting over the port, as serve takes it.
func TestCommandsResolveSettingsLikeServe(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		dotenv string
		sock   string // want this control socket rather than the port's
		addr   string // want healthcheck and loadtest to go here
	}{
		{"defaults", nil, nil, "", "", "127.0.0.1:3000"},
		{".env PORT", nil, nil, "PORT=3102\n", "", "127.0.0.1:3102"},
		{"env PORT over .env", nil, map[string]string{"PORT": "3103"}, "PORT=3102\n", "", "127.0.0.1:3103"},
		{"flag over env", []string{"--port", "3104"}, map[string]string{"PORT": "3103"}, "PORT=3102\n", "", "127.0.0.1:3104"},
		{".env HOST", nil, nil, "HOST=127.0.0.2\nPORT=3105", "", "127.0.0.2:3105"},
		{"HOST every interface", nil, map[string]string{"HOST": "0.0.0.0"}, "", "", "127.0.0.1:3000"},
		{"HOST ::", nil, map[string]string{"HOST": "::"}, "", "", "127.0.0.1:3000"},
		{"HOST ::1", nil, map[string]string{"HOST": "::1"}, "", "", "[::1]:3000"},
		{".env CONTROL_SOCKET", nil, nil, "CONTROL_SOCKET=/run/herd/ctl.sock\nPORT=3106\n", "/run/herd/ctl.sock", "127.0.0.1:3106"},
		{"CONTROL_SOCKET over --port", []string{"--port", "3107"}, map[string]string{"CONTROL_SOCKET": "/run/x.sock"}, "", "/run/x.sock", "127.0.0.1:3107"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := sources{envMap(tc.env), writeDotenv(t, tc.dotenv)}
			var serveArgs []string // serve's own flags where the commands share them
			for i := 0; i < len(tc.args); i += 2 {
				serveArgs = append(serveArgs, tc.args[i], tc.args[i+1])
			}
			serve, _, err := loadServeConfig(serveArgs, src)
			if err != nil {
				t.Fatal(err)
			}
			fs := flag.NewFlagSet("status", flag.ContinueOnError)
			r, _, err := loadSettings(fs, pick("port", "control-socket"), tc.args, src)
			if err != nil {
				t.Fatal(err)
			}
			sock, err := controlSocketFor(r)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.sock
			if want == "" {
				want = cluster.ControlSocketPath(serve.Port)
			}
			if sock != want || (tc.sock != "" && serve.ControlSocket != tc.sock) {
				t.Errorf("control commands use %q, serve listens on %q (port %d, control socket %q)", sock, want, serve.Port, serve.ControlSocket)
			}
			r, _, err = loadSettings(flag.NewFlagSet("healthcheck", flag.ContinueOnError), pick("port", "host"), tc.args, src)
			if err != nil {
				t.Fatal(err)
			}
			if addr, err := localAddr(r); err != nil || addr != tc.addr {
				t.Errorf("healthcheck and loadtest go to %q (%v), want %q", addr, err, tc.addr)
			}
		})
	}
}

// TestCommandsNameTheSourceOfABadPort: "PORT=0 herd status" names PORT and
// the environment, not a --port the user never gave.
func TestCommandsNameTheSourceOfABadPort(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		env    map[string]string
		dotenv string
		want   string
	}{
		{nil, map[string]string{"PORT": "0"}, "", `invalid PORT "0" (from the environment): must be a port number from 1 to 65535`},
		{nil, nil, "\nPORT=0\n", `invalid PORT "0" (from .env line 2): must be a port number from 1 to 65535`},
		{[]string{"--port", "0"}, map[string]string{"PORT": "3000"}, "", `invalid --port "0": must be a port number from 1 to 65535`},
		{nil, map[string]string{"PORT": "http"}, "", `invalid PORT "http" (from the environment)`},
	} {
		src := sources{envMap(tc.env), writeDotenv(t, tc.dotenv)}
		r, _, err := loadSettings(flag.NewFlagSet("status", flag.ContinueOnError), pick("port", "control-socket"), tc.args, src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = controlSocketFor(r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("args %q env %v .env %q: err = %v, want %q", tc.args, tc.env, tc.dotenv, err, tc.want)
		}
		_, err = localAddr(r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("healthcheck: args %q env %v .env %q: err = %v, want %q", tc.args, tc.env, tc.dotenv, err, tc.want)
		}
	}
}

// TestServeConfigMetricsOff: --metrics false turns the admin listener off
// with it, unless the user asked for one too (an error above), and
// --admin-addr off is no contradiction.
func TestServeConfigMetricsOff(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--metrics=false"}, nil},
		{nil, map[string]string{"METRICS": "0"}},
		{[]string{"--metrics=false", "--admin-addr", "off"}, nil},
		{nil, map[string]string{"METRICS": "false", "ADMIN_ADDR": "off"}},
	} {
		c := mustLoad(t, tc.args, tc.env, noDotenv(t))
		if c.Metrics || c.AdminAddr != "" {
			t.Errorf("args %q env %v: metrics %v, admin address %q; want off and none", tc.args, tc.env, c.Metrics, c.AdminAddr)
		}
	}
	if c := mustLoad(t, []string{"--metrics"}, map[string]string{"METRICS": "false"}, noDotenv(t)); !c.Metrics || c.AdminAddr != cluster.AdminAuto {
		t.Errorf("--metrics over METRICS=false: metrics %v, admin address %q; want on and auto", c.Metrics, c.AdminAddr)
	}
}
