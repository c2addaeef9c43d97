package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/procstat"
)

// The control socket lives in a private directory: $XDG_RUNTIME_DIR/herd,
// made 0700, and is removed when the primary exits.
func TestControlSocketIsPrivateAndRemovedOnExit(t *testing.T) {
	run := t.TempDir()
	p := herdtest.Start(t, herdtest.Options{Env: []string{"XDG_RUNTIME_DIR=" + run}, DefaultControlSocket: true}, "serve", "--workers", "1")
	p.WaitReady(60 * time.Second)
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	sock := filepath.Join(run, "herd", "herd-"+port+".sock")
	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatalf("the control socket directory: %v", err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("the control socket directory has mode %04o, want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("no control socket at %s: %v", sock, err)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "herd-"+port+".sock")); err == nil {
		t.Errorf("a control socket was created in the shared temp dir")
	}
	// The commands compute the same path from the same environment.
	cmd := exec.Command(herdtest.Binary(t), "status", "--port", port)
	cmd.Env = append(herdtest.CleanEnv(), "XDG_RUNTIME_DIR="+run)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ready") {
		t.Fatalf("herd status: %v\n%s", err, out)
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the control socket is still there after the primary exited (%v)", err)
	}
}

// No local user can stop herd from serving by taking the control socket's
// directory first, nor does a missing temp dir (a FROM scratch image): one
// warning, and the server serves.
func TestUnusableControlSocketDirectoryDoesNotStopTheServer(t *testing.T) {
	uid := os.Getuid()
	cases := []struct {
		name  string
		setup func(tmp string)
	}{
		{"world-writable", func(tmp string) {
			d := filepath.Join(tmp, fmt.Sprintf("herd-%d", uid))
			must(t, os.Mkdir(d, 0o777))
			must(t, os.Chmod(d, 0o777))
		}},
		{"symlink elsewhere", func(tmp string) {
			other := filepath.Join(tmp, "elsewhere")
			must(t, os.Mkdir(other, 0o700))
			must(t, os.Symlink(other, filepath.Join(tmp, fmt.Sprintf("herd-%d", uid))))
		}},
		{"a file in the way", func(tmp string) {
			must(t, os.WriteFile(filepath.Join(tmp, fmt.Sprintf("herd-%d", uid)), nil, 0o600))
		}},
		{"no temp dir", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := filepath.Join(t.TempDir(), "tmp")
			if c.setup != nil {
				must(t, os.Mkdir(tmp, 0o1777))
				c.setup(tmp)
			}
			p := herdtest.Start(t, herdtest.Options{Env: []string{"XDG_RUNTIME_DIR=", "TMPDIR=" + tmp}, DefaultControlSocket: true}, "serve", "--workers", "1")
			p.WaitReady(60 * time.Second)
			if code, _, _ := p.Do(http.MethodGet, "/healthz", ""); code != 200 {
				t.Fatalf("GET /healthz: %d, want 200", code)
			}
			w := p.WaitMsg(10*time.Second, "no control socket: herd status, reload, scale, upgrade and stop cannot reach this primary (signals still work)")
			t.Logf("warning: %v", w["err"])
			if n := len(p.Find(func(r herdtest.Record) bool { return r.Str("level") == "ERROR" })); n > 0 {
				t.Errorf("%d error lines for an unusable control socket, want one warning", n)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// herd status against a stopped primary answers within seconds, with exit
// code 1 and a message saying so, instead of waiting ten minutes.
func TestStatusOfAStoppedPrimaryTimesOutInSeconds(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1")
	p.WaitReady(60 * time.Second)
	p.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { _ = p.Cmd.Process.Signal(syscall.SIGCONT) })
	// Every thread: until then the primary may still answer.
	herdtest.WaitUntil(t, 10*time.Second, "the primary stopped", func() bool { return procstat.Stopped(p.Cmd.Process.Pid) })
	start := time.Now()
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out = herdCmd(t, p, "status")
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("herd status against a stopped primary did not return within 60s")
	}
	took := time.Since(start)
	t.Logf("chaos: SIGSTOP primary: herd status answered in %v, exit %d: %s", took.Round(time.Millisecond), code, strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, "did not answer within 5s") {
		t.Errorf("herd status: exit %d, %q; want exit 1 saying the primary did not answer within 5s", code, out)
	}
	if took > 30*time.Second {
		t.Errorf("herd status took %v, want seconds", took)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	if s := status(t, p); len(readyPIDs(s)) != 1 {
		t.Errorf("after SIGCONT: %+v, want the worker ready", s)
	}
}
