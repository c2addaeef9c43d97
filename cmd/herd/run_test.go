package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdenv"
)

// Every bad herd run setting: exit 2 and one line naming it, before
// anything starts.
func TestRunBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"run", "--workers", "2"}, "herd run needs a program to run"},
		{"nothing after --", []string{"run", "--"}, "herd run needs a program to run"},
		{"argument before --", []string{"run", "node", "--", "x"}, `unexpected argument "node" before "--"`},
		{"unknown flag", []string{"run", "--enable-crash-endpoint", "--", "true"}, "flag provided but not defined: -enable-crash-endpoint"},
		{"bad workers", []string{"run", "--workers", "0", "--", "true"}, "invalid --workers \"0\""},
		{"bad stop signal", []string{"run", "--stop-signal", "SIGFOO", "--", "true"}, "invalid --stop-signal \"SIGFOO\""},
		{"bad probe", []string{"run", "--ready-probe", "tcp:80", "--", "true"}, "invalid --ready-probe \"tcp:80\""},
		{"bad ready-after", []string{"run", "--ready-after", "-1s", "--", "true"}, "invalid --ready-after"},
		{"bad max-age", []string{"run", "--max-age", "10ms", "--", "true"}, "invalid --max-age"},
		{"bad max-memory", []string{"run", "--max-memory", "lots", "--", "true"}, "invalid --max-memory"},
		{"missing program", []string{"run", "--", "no-such-program-herd-test"}, `invalid COMMAND "no-such-program-herd-test"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no .env
			var out, errb bytes.Buffer
			code := run(context.Background(), c.args, &out, &errb)
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("herd %q: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, errb.String(), c.want)
			}
		})
	}
}

func TestRunConfigResolution(t *testing.T) {
	env := map[string]string{"STOP_SIGNAL": "quit", "READY_AFTER": "3s", "MAX_AGE": "1h"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := loadRunConfig([]string{"--ready-after", "2s", "--ready-probe", "http:/healthz", "--", "node", "server.js", "--port", "{port}"}, lookup, "/nonexistent/.env")
	if err != nil {
		t.Fatal(err)
	}
	if c.StopSignal != syscall.SIGQUIT || c.ReadyAfter != 2*time.Second || c.MaxAge != time.Hour || c.ReadyProbe != "http:/healthz" {
		t.Errorf("config %+v: want SIGQUIT from the environment, ready-after 2s from the flag, max-age 1h, probe http:/healthz", c)
	}
	if !slices.Equal(c.Command, []string{"node", "server.js", "--port", "{port}"}) {
		t.Errorf("command %q: want everything after -- untouched", c.Command)
	}
	if c.Port != 3000 || c.ShutdownTimeout != 30*time.Second || c.Workers != 0 {
		t.Errorf("defaults: port %d, shutdown-timeout %s, workers %d; want serve's defaults (3000, 30s, auto)", c.Port, c.ShutdownTimeout, c.Workers)
	}
}

// A developer's STOP_SIGNAL or READY_PROBE must not leak into the tests.
func TestRunSettingsAreInHerdenv(t *testing.T) {
	for _, s := range runSettings {
		if s.env != "" && !slices.Contains(herdenv.Names, s.env) {
			t.Errorf("herdenv.Names lacks %s (--%s)", s.env, s.flag)
		}
	}
}
