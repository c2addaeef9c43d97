package admin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/procstat"
)

// The test binary doubles as a real primary and its workers: a test starts
// it with ADMIN_TEST_PRIMARY set to the control socket's path, and
// TestMain runs cluster.Run with admin.ServeControl on it. A worker
// started while the file ADMIN_TEST_FAIL names exists fails at start.
const (
	envPrimary = "ADMIN_TEST_PRIMARY"
	envFail    = "ADMIN_TEST_FAIL"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envPrimary); path != "" || cluster.IsWorker() {
		os.Exit(runTestPrimary(path))
	}
	os.Exit(m.Run())
}

func runTestPrimary(sock string) int {
	opts := cluster.Options{
		Addr:            "127.0.0.1:0",
		Workers:         2,
		ControlSocket:   sock,
		ServeControl:    admin.ServeControl,
		ReadyTimeout:    10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	}
	err := cluster.Run(context.Background(), opts, func(ctx context.Context, w *cluster.Worker) error {
		if _, err := os.Stat(os.Getenv(envFail)); err == nil {
			return errors.New("cannot start: the test says so")
		}
		return w.Serve(ctx, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "worker %d", w.ID)
		}))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, cluster.ErrStartFailed) {
			return cluster.ExitStartFailed
		}
		return 1
	}
	return 0
}

// primaryProc is a test primary in its own process.
type primaryProc struct {
	cmd   *exec.Cmd
	sock  string
	fail  string // touch it to make new workers fail at start
	doneC chan struct{}

	mu      sync.Mutex
	out     strings.Builder
	workers []int
}

func startPrimary(t *testing.T) *primaryProc {
	t.Helper()
	dir := t.TempDir()
	p := &primaryProc{sock: filepath.Join(dir, "herd.sock"), fail: filepath.Join(dir, "fail"), doneC: make(chan struct{})}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(os.Environ(), envPrimary+"="+p.sock, envFail+"="+p.fail, "GORACE=atexit_sleep_ms=0")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go p.read(r)
	go func() { _ = p.cmd.Wait(); close(p.doneC) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.doneC
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pid := range p.workers {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("primary output:\n%s", p.out.String())
		}
	})
	return p
}

// read keeps the output for failures and notes the worker pids, only so
// that the cleanup can kill them.
func (p *primaryProc) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.out.WriteString(line + "\n")
		if strings.Contains(line, `"msg":"worker started"`) {
			if i := strings.Index(line, `"pid":`); i >= 0 {
				if pid, err := strconv.Atoi(strings.TrimRight(strings.SplitN(line[i+6:], ",", 2)[0], "}")); err == nil {
					p.workers = append(p.workers, pid)
				}
			}
		}
		p.mu.Unlock()
	}
}

// client waits for the control socket to answer and returns a client.
func (p *primaryProc) client(t *testing.T) *admin.Client {
	t.Helper()
	c := admin.NewClient(p.sock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Status(context.Background())
		if err == nil {
			return c
		}
		if !errors.Is(err, admin.ErrNoPrimary) || time.Now().After(deadline) {
			t.Fatalf("the primary's control socket never answered: %v", err)
		}
		select {
		case <-p.doneC:
			t.Fatal("the primary exited before its control socket answered")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func readyCount(s cluster.Status) int {
	n := 0
	for _, w := range s.Workers {
		if w.State == cluster.StateReady {
			n++
		}
	}
	return n
}

func TestClientNoPrimary(t *testing.T) {
	dir := t.TempDir()
	// No socket file at all.
	_, err := admin.NewClient(filepath.Join(dir, "none.sock")).Status(context.Background())
	if !errors.Is(err, admin.ErrNoPrimary) {
		t.Errorf("no socket: got %v, want ErrNoPrimary", err)
	}
	// A stale socket file: a dead primary's, nothing listens on it.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	_, err = admin.NewClient(stale).Reload(context.Background())
	if !errors.Is(err, admin.ErrNoPrimary) {
		t.Errorf("stale socket: got %v, want ErrNoPrimary", err)
	}
}

// The client against a real primary: wait-ready returns the address, the
// commands act, a failed reload carries the primary's reason, a stopped
// primary is a timeout within seconds, and stop ends the primary.
func TestClientAgainstARealPrimary(t *testing.T) {
	p := startPrimary(t)
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	st, err := c.WaitReady(ctx)
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if got := readyCount(st); got != 2 || st.Want != 2 {
		t.Fatalf("after WaitReady: %d ready of %d wanted, want 2 of 2: %+v", got, st.Want, st)
	}
	if st.PrimaryPID != p.cmd.Process.Pid {
		t.Errorf("status says primary %d, want %d", st.PrimaryPID, p.cmd.Process.Pid)
	}
	resp, err := http.Get("http://" + st.Addr + "/")
	if err != nil {
		t.Fatalf("GET the address from the status (%q): %v", st.Addr, err)
	}
	resp.Body.Close()

	st, err = c.Scale(ctx, 3)
	if err != nil || readyCount(st) != 3 {
		t.Fatalf("Scale(3): %v, %d ready", err, readyCount(st))
	}
	_, err = c.Scale(ctx, 0)
	var ce *admin.CommandError
	if !errors.As(err, &ce) || !ce.Invalid {
		t.Errorf("Scale(0): got %v, want an invalid *CommandError", err)
	}

	// A reload whose new workers cannot start fails with the reason.
	if err := os.WriteFile(p.fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = c.Reload(ctx)
	if !errors.As(err, &ce) || ce.Cmd != admin.CmdReload || ce.Invalid || !strings.Contains(ce.Reason, "before it was ready") {
		t.Fatalf("Reload with workers that cannot start: got %v, want a *CommandError saying a replacement exited before it was ready", err)
	}
	t.Logf("reload failure: %v", err)
	if err := os.Remove(p.fail); err != nil {
		t.Fatal(err)
	}
	if st, err := c.WaitReady(ctx); err != nil || readyCount(st) < 3 {
		t.Fatalf("after the failed reload: %v, %d ready; want the old workers serving", err, readyCount(st))
	}

	// A stopped primary: a timeout within seconds, not a hang.
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, p.cmd.Process.Pid)
	stopped := &admin.Client{Path: p.sock, QueryTimeout: time.Second}
	start := time.Now()
	_, err = stopped.Status(ctx)
	took := time.Since(start)
	if !errors.Is(err, admin.ErrTimeout) {
		t.Errorf("Status of a stopped primary: got %v, want ErrTimeout", err)
	}
	if took > 20*time.Second {
		t.Errorf("Status of a stopped primary took %v, want about its 1s timeout", took)
	}
	// The caller's own deadline is its error, not ErrTimeout.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Status(short)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, admin.ErrTimeout) {
		t.Errorf("Status past the caller's deadline: got %v, want context.DeadlineExceeded", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-p.doneC:
	case <-time.After(30 * time.Second):
		t.Fatal("the primary did not exit after Stop")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after Stop, want 0", code)
	}
	if _, err := c.Status(ctx); !errors.Is(err, admin.ErrNoPrimary) {
		t.Errorf("Status after Stop: got %v, want ErrNoPrimary", err)
	}
}

// waitStopped waits until every thread of pid is stopped: SIGSTOP takes
// effect on each thread a moment after kill returns.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !procstat.Stopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped 10s after SIGSTOP", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
