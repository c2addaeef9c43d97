package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/herdenv"
)

// Defaults of ClusterOptions.
const (
	DefaultWorkers         = 2
	DefaultReadyTimeout    = 30 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	// workersExit bounds how long Kill waits for the workers of a killed
	// primary to exit by themselves (herd promises 2 s) before killing them.
	workersExit = 3 * time.Second
	tailLines   = 20
)

// ClusterOptions configure StartCluster. The zero value is valid.
type ClusterOptions struct {
	// Binary is the herd executable (default: os.Executable(), for the
	// herd command verifying itself).
	Binary string
	// Workers is the number of workers (default DefaultWorkers).
	Workers int
	// ReadyTimeout bounds the wait for "all workers ready" (default
	// DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// ShutdownTimeout is herd's --shutdown-timeout (default
	// DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}

// Cluster is a "herd serve" that StartCluster started. Its methods are safe
// for concurrent use.
type Cluster struct {
	cmd   *exec.Cmd
	dir   string // the working directory, removed at the end
	url   string
	doneC chan struct{} // closed when the primary has exited and been waited for

	readyC    chan struct{} // closed on "all workers ready"
	readyOnce sync.Once

	mu      sync.Mutex
	addr    string       // from the "listening" line
	workers map[int]bool // every pid logged as a started worker
	tail    []string     // the last lines of output
	waitErr error

	cleanOnce sync.Once
}

// StartCluster runs "<Binary> serve" on a free loopback port with
// opts.Workers workers, the crash endpoint enabled and JSON logs, in a
// fresh temporary directory with none of herd's environment settings, and
// waits until every worker is ready. On any error, nothing it started is
// left running. The caller must Stop (or Kill) the cluster.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-verify-")
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	cmd := exec.Command(opts.Binary, ClusterArgs(opts)...) //nolint:gosec // G204: the herd binary the caller asked to verify
	cmd.Dir = dir
	// It runs on its flags and defaults alone, whatever the caller's
	// environment says.
	cmd.Env = herdenv.Clean(os.Environ())
	// Its control socket goes in dir too, removed with it even after a kill.
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+dir)
	cmd.SysProcAttr = sysProcAttr()
	// An *os.File, so that Wait does not wait for the workers, which
	// inherit it as their stdout, to close it too.
	r, w, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("verify: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("verify: starting %s: %w", opts.Binary, err)
	}
	w.Close()
	c := &Cluster{cmd: cmd, dir: dir, doneC: make(chan struct{}), readyC: make(chan struct{}), workers: map[int]bool{}}
	go c.read(r)
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.doneC)
	}()

	timer := time.NewTimer(opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-c.readyC:
	case <-c.doneC:
		c.Kill()
		return nil, fmt.Errorf("verify: herd serve exited (%v) before its workers were ready:\n%s", c.exitErr(), c.Output()) //nolint:errorlint // may be nil (exit 0, or a wrong value): printed, not wrapped
	case <-timer.C:
		c.Kill()
		return nil, fmt.Errorf("verify: herd serve's workers were not ready within %s:\n%s", opts.ReadyTimeout, c.Output())
	case <-ctx.Done():
		c.Kill()
		return nil, fmt.Errorf("verify: starting herd serve: %w", ctx.Err())
	}
	c.mu.Lock()
	addr := c.addr
	c.mu.Unlock()
	if addr == "" {
		c.Kill()
		return nil, fmt.Errorf("verify: herd serve was ready but logged no address:\n%s", c.Output())
	}
	c.url = "http://" + addr
	return c, nil
}

func (o ClusterOptions) withDefaults() (ClusterOptions, error) {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("verify: finding the herd executable: %w", err)
		}
		o.Binary = exe
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	return o, nil
}

// ClusterArgs returns the arguments StartCluster gives the herd binary.
func ClusterArgs(opts ClusterOptions) []string {
	opts, _ = opts.withDefaults()
	return []string{"serve", "--port", "0", "--host", "127.0.0.1",
		"--cluster", "manual", "--workers", strconv.Itoa(opts.Workers),
		"--enable-crash-endpoint", "--log-format", "json",
		"--shutdown-timeout", opts.ShutdownTimeout.String()}
}

// read follows the primary's JSON log (workers' lines included).
func (c *Cluster) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
			PID  int    `json:"pid"`
		}
		_ = json.Unmarshal([]byte(line), &rec) // other lines are kept as text
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > tailLines {
			c.tail = c.tail[len(c.tail)-tailLines:]
		}
		switch rec.Msg {
		case "listening":
			if c.addr == "" {
				c.addr = rec.Addr
			}
		case "worker started":
			if rec.PID > 0 {
				c.workers[rec.PID] = true
			}
		}
		c.mu.Unlock()
		if rec.Msg == "all workers ready" {
			c.readyOnce.Do(func() { close(c.readyC) })
		}
	}
}

// URL is the cluster's base URL, such as http://127.0.0.1:41234.
func (c *Cluster) URL() string { return c.url }

// PID is the primary's process id.
func (c *Cluster) PID() int { return c.cmd.Process.Pid }

// WorkerPIDs returns the pid of every worker the primary logged as started,
// replacements included.
func (c *Cluster) WorkerPIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, 0, len(c.workers))
	for pid := range c.workers {
		pids = append(pids, pid)
	}
	return pids
}

// Output returns the last lines the cluster logged.
func (c *Cluster) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// Signal sends sig to the primary. It fails once the primary has exited.
func (c *Cluster) Signal(sig os.Signal) error {
	select {
	case <-c.doneC:
		return os.ErrProcessDone
	default:
	}
	return c.cmd.Process.Signal(sig)
}

// Done is closed when the primary has exited.
func (c *Cluster) Done() <-chan struct{} { return c.doneC }

// Wait blocks until the primary exits and returns its exit code (-1 when a
// signal ended it), or ctx's error first.
func (c *Cluster) Wait(ctx context.Context) (int, error) {
	select {
	case <-c.doneC:
		return c.cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *Cluster) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitErr
}

// Stop stops the cluster gracefully: SIGTERM to the primary (unless it has
// exited already), then waits for it. When ctx ends first, it kills
// everything and returns ctx's error. It returns an error when the primary
// exited other than with 0. Safe to call more than once, and after Kill.
func (c *Cluster) Stop(ctx context.Context) error {
	_ = c.Signal(syscall.SIGTERM)
	code, err := c.Wait(ctx)
	if err != nil {
		c.Kill()
		return fmt.Errorf("verify: herd serve did not stop: %w", err)
	}
	c.cleanup()
	if code != 0 {
		return fmt.Errorf("verify: herd serve exited with code %d:\n%s", code, c.Output())
	}
	return nil
}

// Kill ends the primary with SIGKILL, then any worker it logged that has
// not exited by itself shortly after, and removes the working directory.
// It blocks until then. Safe to call more than once.
func (c *Cluster) Kill() {
	_ = c.Signal(syscall.SIGKILL)
	<-c.doneC
	c.cleanup()
}

// cleanup waits for the workers to follow their exited primary (they exit
// on EOF of their IPC socket), kills those that do not, and removes the
// working directory.
func (c *Cluster) cleanup() {
	c.cleanOnce.Do(func() {
		pids := c.WorkerPIDs()
		deadline := time.Now().Add(workersExit)
		for _, pid := range pids {
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = os.RemoveAll(c.dir)
	})
}
