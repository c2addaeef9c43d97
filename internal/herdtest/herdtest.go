// Package herdtest runs the real herd binary in end-to-end tests, the way a
// user does: built once per test binary, started on an ephemeral loopback
// port with JSON logs, talked to over HTTP, sent signals. Every process a
// test starts is killed in t.Cleanup, workers included, even when the test
// fails.
package herdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdenv"
	"github.com/herd-go/herd/internal/launch"
	"github.com/herd-go/herd/internal/procstat"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error //nolint:errname // the result of the one build, not a sentinel
)

// Binary builds ./cmd/herd once per test binary (with -race when the tests
// run with it) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "herdtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "herd")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/herd")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/herd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("herdtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Record is one JSON log line of the primary (workers' lines included,
// re-emitted with "worker" and "pid").
type Record map[string]any

// Msg returns the record's message.
func (r Record) Msg() string { s, _ := r["msg"].(string); return s }

// Int returns a numeric attribute as an int (0 when absent).
func (r Record) Int(key string) int { f, _ := r[key].(float64); return int(f) }

// Str returns a string attribute ("" when absent).
func (r Record) Str(key string) string { s, _ := r[key].(string); return s }

// Proc is a running herd command.
type Proc struct {
	t    testing.TB
	Cmd  *exec.Cmd
	Addr string // host:port it listens on, once WaitReady returned
	URL  string // "http://" + Addr
	// ControlSocket is the primary's control socket: one in a private
	// directory of this Proc's, unless the test chose it (--control-socket,
	// Options.DefaultControlSocket). Pass it to herd's commands.
	ControlSocket string
	// Status is the primary's status document when WaitReady returned
	// (zero for the single process of --cluster off).
	Status cluster.Status

	srv *launch.Server

	mu      sync.Mutex
	out     bytes.Buffer // everything on stderr and stdout
	records []Record
	pids    map[int]bool // every worker and primary pid ever logged, for cleanup
	workers map[int]bool // every worker pid ever logged
	exited  <-chan struct{}
}

// EnvBalance, when set in the test's environment, is the BALANCE that Start
// gives herd: tests that run under each balancing policy set it.
const EnvBalance = "HERDTEST_BALANCE"

// Options for Start.
type Options struct {
	Env []string // extra environment entries
	Dir string   // working directory (default: a fresh temp dir, so no .env is read)
	// NoDefaults leaves out --port 0 --host 127.0.0.1 --log-format json,
	// for tests of the configuration itself.
	NoDefaults bool
	// Binary runs this executable instead of the one Binary builds (see
	// CopyBinary, for tests that deploy a new binary over a running one).
	Binary string
	// DefaultControlSocket lets herd put its control socket where it does
	// by default, for tests of that place; WaitReady then learns the
	// address from the log and readiness from /healthz (see package
	// launch), so such a test should run one worker.
	DefaultControlSocket bool
	// ControlSocket, if set, is the control socket's path, for a test that
	// starts herd through a wrapper that must be told it (see
	// launch.Options.ControlSocket).
	ControlSocket string
}

// CopyBinary copies the built herd binary into dir and returns its path.
func CopyBinary(t testing.TB, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "herd")
	Deploy(t, Binary(t), dst)
	return dst
}

// Deploy puts the file src at dst the way a deploy should, so that a
// running dst is not disturbed: written beside it, then renamed over it.
func Deploy(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// Start runs "herd <args...>" with --port 0 --host 127.0.0.1 --log-format
// json appended (unless opts.NoDefaults), through package launch (its own
// control socket), and returns at once; call WaitReady before sending
// requests.
func Start(t testing.TB, opts Options, args ...string) *Proc {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	if !opts.NoDefaults {
		args = append(args, "--port", "0", "--host", "127.0.0.1", "--log-format", "json")
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	// A -race binary sleeps a second at exit by default; tests time exits.
	env := append(append(CleanEnv(), "GORACE=atexit_sleep_ms=0"), opts.Env...)
	if b := os.Getenv(EnvBalance); b != "" {
		// A test run per balancing policy (herd's BALANCE is cleaned above).
		env = append(env, "BALANCE="+b)
	}
	p := &Proc{t: t, pids: map[int]bool{}, workers: map[int]bool{}}
	srv, err := launch.Start(launch.Options{
		Binary: bin, Args: args, Dir: dir, Env: env,
		Line: p.read, DefaultControlSocket: opts.DefaultControlSocket, ControlSocket: opts.ControlSocket,
	})
	if err != nil {
		t.Fatalf("starting herd: %v", err)
	}
	p.srv, p.Cmd, p.ControlSocket, p.exited = srv, srv.Cmd, srv.ControlSocket, srv.Done()
	t.Cleanup(p.kill)
	return p
}

// CleanEnv is this process's environment without herd's settings, so that
// a developer's shell does not leak into tests, and with XDG_RUNTIME_DIR
// set to a directory of this test binary's, so that the control sockets of
// the primaries it starts (and kills) stay out of the shared temp dir.
func CleanEnv() []string {
	return append(herdenv.Clean(os.Environ()), "XDG_RUNTIME_DIR="+RuntimeDir())
}

var (
	runtimeDirOnce sync.Once
	runtimeDir     string
)

// RuntimeDir is the XDG_RUNTIME_DIR that CleanEnv sets: a private
// directory made once per test binary.
func RuntimeDir() string {
	runtimeDirOnce.Do(func() {
		// On failure "": herd then falls back to its temp-dir default.
		runtimeDir, _ = os.MkdirTemp("", "herdtest-run-")
	})
	return runtimeDir
}

// read takes one line of output: kept, and parsed as a log record. The
// pids of started processes are noted only so that kill can end them.
func (p *Proc) read(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Write(line)
	p.out.WriteByte('\n')
	var rec Record
	if json.Unmarshal(line, &rec) == nil {
		p.records = append(p.records, rec)
		if pid := rec.Int("pid"); pid > 0 && (rec.Msg() == "worker started" || rec.Msg() == "primary running") {
			p.pids[pid] = true
			if rec.Msg() == "worker started" {
				p.workers[pid] = true
			}
		}
	}
}

// kill ends the primary and every process it logged as started (workers,
// and primaries it upgraded to), by pid.
func (p *Proc) kill() {
	if p.Cmd.Process != nil {
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
	p.srv.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid := range p.pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if p.t.Failed() {
		p.t.Logf("herd output:\n%s", p.out.String())
	}
}

// Output returns everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Records returns the JSON log lines so far.
func (p *Proc) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

// Find returns the log records for which match is true.
func (p *Proc) Find(match func(Record) bool) []Record {
	var out []Record
	for _, r := range p.Records() {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// WaitLog waits until a log record matches, and returns it.
func (p *Proc) WaitLog(timeout time.Duration, what string, match func(Record) bool) Record {
	p.t.Helper()
	var got Record
	p.Eventually(timeout, what, func() bool {
		rs := p.Find(match)
		if len(rs) > 0 {
			got = rs[0]
			return true
		}
		return false
	})
	return got
}

// WaitMsg waits for a log record with message msg.
func (p *Proc) WaitMsg(timeout time.Duration, msg string) Record {
	p.t.Helper()
	return p.WaitLog(timeout, "log "+msg, func(r Record) bool { return r.Msg() == msg })
}

// WaitReady waits until herd is ready, as package launch learns it: its
// control socket answers and every wanted worker is ready (or, with
// --cluster off, the single process answers /healthz), and sets Addr, URL
// and Status. It fails the test after timeout or if herd exits first.
func (p *Proc) WaitReady(timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := p.srv.Ready(ctx)
	if err != nil {
		p.t.Fatalf("herd not ready within %s: %v", timeout, err)
	}
	p.Addr, p.URL, p.Status = r.Addr, "http://"+r.Addr, r.Status
}

// Eventually polls cond every 20 ms until it is true or timeout passes, in
// which case the test fails saying what it waited for. It also fails early
// if the process exits while waiting.
func (p *Proc) Eventually(timeout time.Duration, what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-p.exited:
			if cond() {
				return
			}
			p.t.Fatalf("herd exited (%v) while waiting for %s", p.waitErrLocked(), what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *Proc) waitErrLocked() error { return p.srv.ExitErr() }

// Signal sends sig to the primary.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it); it fails the test after timeout.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("herd did not exit within %s", timeout)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// WorkerPIDs returns every worker pid the primary has logged as started.
func (p *Proc) WorkerPIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for pid := range p.workers {
		out = append(out, pid)
	}
	return out
}

// Client is an HTTP client with a generous timeout for tests.
var Client = &http.Client{Timeout: 30 * time.Second}

// Do sends a request to path and returns the status, headers and body.
func (p *Proc) Do(method, path, body string) (int, http.Header, []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := Client.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// Alive reports whether a process with this pid exists (and is not a zombie
// of ours).
func Alive(pid int) bool { return procstat.Alive(pid) }

// WaitUntil polls cond every 10 ms until it is true, failing the test after
// timeout. Unlike Proc.Eventually it does not care whether any process is
// alive: use it to wait for what follows an exit.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
