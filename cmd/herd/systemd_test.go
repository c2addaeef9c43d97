package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// unitKeys reads a systemd unit's Key=Value lines (later lines append).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not Key=Value: %q", path, l)
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// TestSystemdUnitsVerify runs systemd-analyze verify on deploy/systemd's
// units (with ExecStart pointing at the built binary, as verify checks
// that it exists) and requires no complaint at all: verify exits 0 even
// for a misspelled key or value, which it only prints.
func TestSystemdUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("this test needs systemd-analyze (Debian package systemd; make test installs it): %v", err)
	}
	dir := t.TempDir()
	bin := herdtest.Binary(t)
	for _, name := range []string{"herd.service", "herd.socket"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/herd", bin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "verify", "./herd.socket", "./herd.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitsMatchHerd checks the units against herd itself: the
// exit code that must not be restarted is herd's bad-configuration code,
// the environment names herd's settings, the stop timeout covers the
// drain, and the socket's name is the one herd serves.
func TestSystemdUnitsMatchHerd(t *testing.T) {
	svc := unitKeys(t, filepath.Join("..", "..", "deploy", "systemd", "herd.service"))
	sock := unitKeys(t, filepath.Join("..", "..", "deploy", "systemd", "herd.socket"))
	if got := svc["RestartPreventExitStatus"]; len(got) != 1 || got[0] != strconv.Itoa(exitUsage) {
		t.Errorf("RestartPreventExitStatus=%v, want herd's bad-configuration exit code %d", got, exitUsage)
	}
	if got := svc["Type"]; len(got) != 1 || got[0] != "notify" {
		t.Errorf("Type=%v, want notify", got)
	}
	known := map[string]bool{}
	for _, s := range serveSettings {
		known[s.env] = true
	}
	for _, e := range svc["Environment"] {
		k, _, _ := strings.Cut(e, "=")
		if !known[k] {
			t.Errorf("Environment=%s: herd serve has no setting %s", e, k)
		}
	}
	stop, err := time.ParseDuration(svc["TimeoutStopSec"][0])
	if err != nil {
		t.Fatal(err)
	}
	shutdown, _ := time.ParseDuration(find(serveSettings, "shutdown-timeout").def)
	if stop <= shutdown+2*time.Second {
		t.Errorf("TimeoutStopSec=%s does not cover herd's default shutdown timeout %s + 2s", stop, shutdown)
	}
	if got := sock["FileDescriptorName"]; len(got) != 1 || got[0] != "http" {
		t.Errorf("FileDescriptorName=%v, want http (the name herd serves)", got)
	}
}
