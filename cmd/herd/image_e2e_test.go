package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// docker runs the docker CLI and returns its trimmed combined output.
func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// buildImage builds deploy/Dockerfile as make image does: a static binary
// (CGO_ENABLED=0) in a context holding only it, so nothing is pulled.
func buildImage(t *testing.T) string {
	t.Helper()
	if out, err := docker(t, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("this test needs a running Docker engine (make test installs docker.io and starts dockerd): docker info: %v: %s", err, out)
	}
	ctxDir := t.TempDir()
	bin := filepath.Join(ctxDir, "bin", "herd-static")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/herd")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	df, err := os.ReadFile(filepath.Join("..", "..", "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("herd-test:%d", os.Getpid())
	if out, err := docker(t, "build", "-q", "-t", tag, ctxDir); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := docker(t, "rmi", "-f", tag); err != nil {
			t.Logf("docker rmi: %v\n%s", err, out)
		}
	})
	return tag
}

// TestImageRunsFromScratch builds the FROM scratch image and runs it as a
// user would, with --network host on a free loopback port: read-only root
// (a tmpfs /tmp for the control socket), --cpus 1 gives one worker, herd
// status works inside, a killed worker is replaced and reaped by herd as
// PID 1, the health check turns healthy, and docker stop drains an
// in-flight slow request and exits 0.
func TestImageRunsFromScratch(t *testing.T) {
	image := buildImage(t)
	port := freePort(t)
	name := fmt.Sprintf("herd-test-%d", os.Getpid())
	id, err := docker(t, "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
		"--cpus", "1", "-e", "PORT="+strconv.Itoa(port), "-e", "HOST=127.0.0.1", image)
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, id)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := docker(t, "logs", name)
			t.Logf("container log:\n%s", logs)
		}
		if out, err := docker(t, "rm", "-f", name); err != nil {
			t.Logf("docker rm: %v\n%s", err, out)
		}
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	herdtest.WaitUntil(t, 60*time.Second, "GET / from the container", func() bool {
		code, err := freshGet(url + "/")
		return err == nil && code == 200
	})

	// --cpus 1: one worker, where Go's own GOMAXPROCS would give two.
	logs, _ := docker(t, "logs", name)
	if !strings.Contains(logs, `"msg":"primary running","pid":1,`) || !strings.Contains(logs, `"workers":1,`) {
		t.Fatalf("want the primary as PID 1 running 1 worker under --cpus 1; log:\n%s", logs)
	}

	// herd status inside the container (control socket in the tmpfs /tmp).
	status := func() statusJSON {
		t.Helper()
		out, err := docker(t, "exec", name, "/herd", "status", "--json", "--port", strconv.Itoa(port))
		if err != nil {
			t.Fatalf("herd status in the container: %v\n%s", err, out)
		}
		var st statusJSON // the status document itself
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("herd status --json: %v\n%s", err, out)
		}
		return st
	}
	s := status()
	if len(s.Workers) != 1 {
		t.Fatalf("herd status: %d workers, want 1", len(s.Workers))
	}

	// Kill the worker from the host: herd (PID 1) replaces and reaps it.
	hostPrimary, _ := docker(t, "inspect", "-f", "{{.State.Pid}}", name)
	// A child is listed under the thread that started it: read every thread's.
	var kids string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%s/task/*/children", hostPrimary))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		kids += string(b) + " "
	}
	fields := strings.Fields(kids)
	if len(fields) != 1 {
		t.Fatalf("PID 1 has children %q, want its one worker", kids)
	}
	worker, _ := strconv.Atoi(fields[0])
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	herdtest.WaitUntil(t, 30*time.Second, "the killed worker reaped (no zombie) and replaced", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", worker))
		if !errors.Is(err, os.ErrNotExist) {
			return false
		}
		s := status()
		return len(s.Workers) == 1 && s.Workers[0].State == "ready" && s.Workers[0].Restarts == 1
	})

	// The image's HEALTHCHECK (herd healthcheck) reports healthy.
	herdtest.WaitUntil(t, 90*time.Second, "docker health status healthy", func() bool {
		h, _ := docker(t, "inspect", "-f", "{{.State.Health.Status}}", name)
		return h == "healthy"
	})

	// docker stop while a slow request is in flight: it completes, exit 0.
	before := status().Workers[0].Requests
	slow := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 2 * time.Minute}
		resp, err := c.Get(url + "/api/5000000000")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		slow <- err
	}()
	herdtest.WaitUntil(t, 30*time.Second, "the slow request in the worker", func() bool {
		return status().Workers[0].Requests > before // counted as it starts; herd status is not an HTTP request
	})
	if out, err := docker(t, "stop", "--time", "60", name); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	select {
	case err := <-slow:
		if err != nil {
			t.Fatalf("slow request during docker stop: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("slow request never finished")
	}
	if code, _ := docker(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		t.Fatalf("exit code %s after docker stop, want 0", code)
	}
}

// statusJSON is what herd status --json prints (the parts used here).
type statusJSON struct {
	Workers []struct {
		ID       int    `json:"id"`
		PID      int    `json:"pid"`
		State    string `json:"state"`
		Restarts int    `json:"restarts"`
		Requests uint64 `json:"requests"`
	} `json:"workers"`
}

func TestHealthcheckDefaultsFollowTheServersSettings(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		port int
		host string
	}{
		{map[string]string{}, 3000, "127.0.0.1"},
		{map[string]string{"PORT": "8080"}, 8080, "127.0.0.1"},
		{map[string]string{"PORT": "nope", "HOST": "0.0.0.0"}, 0, ""}, // a bad PORT is an error, as for serve
		{map[string]string{"HOST": "::"}, 3000, "127.0.0.1"},
		{map[string]string{"HOST": "10.1.2.3", "PORT": "99999"}, 0, ""},
		{map[string]string{"HOST": "10.1.2.3"}, 3000, "10.1.2.3"},
	} {
		src := sources{lookupEnv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }, dotenvPath: filepath.Join(t.TempDir(), ".env")}
		r, _, err := loadSettings(flag.NewFlagSet("healthcheck", flag.ContinueOnError), pick("port", "host"), nil, src)
		if err == nil {
			var addr string
			if addr, err = localAddr(r); err == nil {
				want := net.JoinHostPort(c.host, strconv.Itoa(c.port))
				if addr != want {
					t.Errorf("env %v: checks %s, want %s", c.env, addr, want)
				}
				continue
			}
		}
		if c.port != 0 {
			t.Errorf("env %v: %v", c.env, err)
		}
	}
}
