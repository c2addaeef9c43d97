package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/herdenv"
	"github.com/herd-go/herd/internal/launch"
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
	// ReadyTimeout bounds the wait for every worker to be ready (default
	// DefaultReadyTimeout).
	ReadyTimeout time.Duration
	// ShutdownTimeout is herd's --shutdown-timeout (default
	// DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}

// Cluster is a "herd serve" that StartCluster started. Its methods are safe
// for concurrent use.
type Cluster struct {
	srv   *launch.Server
	cmd   *exec.Cmd
	dir   string // the working directory, removed at the end
	url   string
	doneC <-chan struct{} // closed when the primary has exited and been waited for

	mu      sync.Mutex
	workers map[int]bool // every pid logged as a started worker, to clean up after a kill
	tail    []string     // the last lines of output

	cleanOnce sync.Once
}

// StartCluster runs "<Binary> serve" on a free loopback port with
// opts.Workers workers, the crash endpoint enabled and JSON logs, in a
// fresh temporary directory with none of herd's environment settings, and
// waits until every worker is ready, as its control socket (in a private
// directory, see internal/launch) reports; the URL is the listening
// address from the primary's status. On any error, nothing it started is
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
	c := &Cluster{dir: dir, workers: map[int]bool{}}
	srv, err := launch.Start(launch.Options{
		Binary: opts.Binary,
		Args:   ClusterArgs(opts),
		Dir:    dir,
		// It runs on its flags and defaults alone, whatever the caller's
		// environment says.
		Env:         herdenv.Clean(os.Environ()),
		SysProcAttr: sysProcAttr(),
		Line:        c.read,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("verify: starting herd serve: %w", err)
	}
	c.srv, c.cmd, c.doneC = srv, srv.Cmd, srv.Done()
	rctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	r, err := srv.Ready(rctx)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		c.Kill()
		return nil, fmt.Errorf("verify: starting herd serve: %w", ctx.Err())
	case rctx.Err() != nil:
		c.Kill()
		return nil, fmt.Errorf("verify: herd serve's workers were not ready within %s:\n%s", opts.ReadyTimeout, c.Output())
	default:
		c.Kill()
		return nil, fmt.Errorf("verify: herd serve: %w:\n%s", err, c.Output())
	}
	c.url = "http://" + r.Addr
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

// read takes one line of the primary's output (workers' lines included):
// kept for error messages, and the pids of started workers noted so that
// a kill leaves none behind.
func (c *Cluster) read(line []byte) {
	var rec struct {
		Msg string `json:"msg"`
		PID int    `json:"pid"`
	}
	_ = json.Unmarshal(line, &rec) // other lines are kept as text
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tail = append(c.tail, string(line))
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	if rec.Msg == "worker started" && rec.PID > 0 {
		c.workers[rec.PID] = true
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
		c.srv.Close()
		_ = os.RemoveAll(c.dir)
	})
}
