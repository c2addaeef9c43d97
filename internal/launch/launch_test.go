package launch_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/launch"
)

// start runs the real herd binary with args and stops it at the end.
func start(t *testing.T, args ...string) *launch.Server {
	t.Helper()
	s, err := launch.Start(launch.Options{
		Binary: herdtest.Binary(t),
		Args:   append(args, "--port", "0", "--host", "127.0.0.1", "--log-format", "json"),
		Dir:    t.TempDir(),
		Env:    append(herdtest.CleanEnv(), "GORACE=atexit_sleep_ms=0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.Done():
		case <-time.After(30 * time.Second):
			_ = s.Cmd.Process.Kill()
			<-s.Done()
		}
		s.Close()
	})
	return s
}

func TestReadyFromTheControlSocket(t *testing.T) {
	s := start(t, "serve", "--workers", "2")
	if !strings.HasPrefix(s.ControlSocket, os.TempDir()) {
		t.Errorf("control socket %q, want one in a private temp dir", s.ControlSocket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := s.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, w := range r.Status.Workers {
		if w.State == cluster.StateReady {
			ready++
		}
	}
	if r.Fallback || ready != 2 || r.Status.PrimaryPID != s.Cmd.Process.Pid {
		t.Fatalf("Ready = %+v, want 2 ready workers of primary %d, from the control socket", r, s.Cmd.Process.Pid)
	}
	resp, err := http.Get("http://" + r.Addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz at the status's address %s: %v", r.Addr, err)
	}
	resp.Body.Close()
}

// --cluster off has no control socket: the documented fallback.
func TestReadySingleProcessFallback(t *testing.T) {
	s := start(t, "serve", "--cluster", "off")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := s.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Fallback || r.Addr == "" {
		t.Fatalf("Ready = %+v, want the fallback with an address", r)
	}
}

func TestReadyFailsWhenHerdExits(t *testing.T) {
	s := start(t, "serve", "--workers", "nope")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Ready of a herd that exits at once: %v, want an error saying it exited", err)
	}
}
