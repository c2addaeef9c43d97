package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/herdenv"
	"github.com/herd-go/herd/internal/launch"
	"github.com/herd-go/herd/internal/procstat"
)

// contender is one server setup under test.
type contender struct {
	Name    string
	Herd    bool   // a herd binary (has the shared-state route wired, maybe)
	Workers int    // herd workers; 0 for a single process
	Procs   int    // --worker-gomaxprocs; 0 for herd's default
	Balance string // --balance; empty for herd's default
}

func (c contender) args(bin string) []string {
	if !c.Herd {
		return []string{filepath.Join(bin, "plain"), "-addr", "127.0.0.1:0"}
	}
	a := []string{filepath.Join(bin, "herd"), "serve", "--host", "127.0.0.1", "--port", "0",
		"--log-format", "json", "--shutdown-timeout", "10s"}
	if c.Workers == 0 {
		return append(a, "--cluster", "off")
	}
	a = append(a, "--workers", strconv.Itoa(c.Workers))
	if c.Procs > 0 {
		a = append(a, "--worker-gomaxprocs", strconv.Itoa(c.Procs))
	}
	if c.Balance != "" {
		a = append(a, "--balance", c.Balance)
	}
	return a
}

// server is one running contender. Every process it stands for was started
// by this driver: the primary (cmd) and the workers the primary spawned.
type server struct {
	c    contender
	exe  string // the binary, to recognise our workers once the primary is gone
	cmd  *exec.Cmd
	addr string
	herd *launch.Server // nil for plain

	waitC <-chan struct{} // closed when cmd has been waited for

	mu      sync.Mutex
	lines   []string // the last lines of output, for error messages
	workers map[int]bool
	procs   int         // GOMAXPROCS of each worker, as the primary logs it
	addrC   chan string // plain's announced address
}

// start runs c from the binaries in bin, in a scratch working directory
// dir (herd reads a .env file from its working directory), and returns once
// it answers GET / with 200. A herd contender is started through
// internal/launch, which learns its address and readiness from its control
// socket (or, for --cluster off, from its /healthz); plain announces its
// address on stdout.
func start(ctx context.Context, c contender, bin, dir string) (*server, error) {
	argv := c.args(bin)
	s := &server{c: c, exe: argv[0], workers: map[int]bool{}, addrC: make(chan string, 1)}
	env := herdenv.Clean(os.Environ()) // a developer's shell does not change what is measured
	// Own process group: a Ctrl-C reaches the driver, which stops the
	// server itself. Pdeathsig: if the driver dies, so does the primary, and
	// its workers follow (EOF on their IPC socket).
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if c.Herd {
		srv, err := launch.Start(launch.Options{Binary: argv[0], Args: argv[1:], Dir: dir, Env: env, SysProcAttr: attr,
			Line: func(b []byte) { s.line(string(b)) }})
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
		s.herd, s.cmd, s.waitC = srv, srv.Cmd, srv.Done()
		r, err := srv.Ready(ctx)
		if err != nil {
			_ = s.stop()
			return nil, fmt.Errorf("%s: %w: %s", c.Name, err, s.tail())
		}
		s.addr = r.Addr
	} else {
		if err := s.startPlain(argv, dir, env, attr); err != nil {
			return nil, err
		}
		select {
		case s.addr = <-s.addrC:
		case <-s.waitC:
			return nil, fmt.Errorf("%s exited before listening: %s", c.Name, s.tail())
		case <-ctx.Done():
			_ = s.stop()
			return nil, fmt.Errorf("%s did not say where it listens: %w: %s", c.Name, ctx.Err(), s.tail())
		}
	}
	for {
		if code, _, err := get(ctx, s.url("/")); err == nil && code == http.StatusOK {
			return s, nil
		}
		select {
		case <-s.waitC:
			return nil, fmt.Errorf("%s exited: %s", c.Name, s.tail())
		case <-ctx.Done():
			_ = s.stop()
			return nil, fmt.Errorf("%s never answered GET / with 200: %w: %s", c.Name, ctx.Err(), s.tail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startPlain starts the plain server, following its output.
func (s *server) startPlain(argv []string, dir string, env []string, attr *syscall.SysProcAttr) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = dir, env, attr
	// An *os.File pipe, not an io.Pipe: with an io.Pipe, Wait would also
	// wait for children that inherit the output to close it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("start %s: %w", s.c.Name, err)
	}
	waitC := make(chan struct{})
	s.cmd, s.waitC = cmd, waitC
	go func() {
		_ = cmd.Wait()
		close(waitC)
	}()
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if addr, ok := parseListening(line); ok && !sent {
				s.addrC <- addr
				sent = true
			}
			s.line(line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return nil
}

// line takes one line of the server's output, noting the workers' pids
// (to leave none behind) and their GOMAXPROCS (for the report).
func (s *server) line(line string) {
	var l struct {
		Msg   string `json:"msg"`
		PID   int    `json:"pid"`
		Procs int    `json:"gomaxprocs_per_worker"`
	}
	_ = json.Unmarshal([]byte(line), &l)
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.Procs > 0 {
		s.procs = l.Procs
	}
	if l.Msg == "worker started" && l.PID > 0 {
		s.workers[l.PID] = true
	}
	s.lines = append(s.lines, line)
	if len(s.lines) > 20 {
		s.lines = s.lines[1:]
	}
}

func (s *server) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// pids returns the primary (or single process) and the current workers.
func (s *server) pids(ctx context.Context) []int {
	pids := []int{s.cmd.Process.Pid}
	if s.c.Workers == 0 {
		return pids
	}
	_, body, err := get(ctx, s.url("/cluster/workers"))
	var w struct {
		Workers []struct {
			PID int `json:"pid"`
		} `json:"workers"`
	}
	if err == nil && json.Unmarshal(body, &w) == nil && len(w.Workers) > 0 {
		for _, x := range w.Workers {
			pids = append(pids, x.PID)
		}
		return pids
	}
	// Fall back to the workers the log announced that are still ours.
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid := range s.workers {
		if s.ours(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ours reports whether pid is alive and runs our binary: pids are reused,
// and the driver only ever signals processes it started.
func (s *server) ours(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == s.exe
}

// rss returns the resident set size of each process of the server.
func (s *server) rss(ctx context.Context) (map[int]int64, error) {
	out := map[int]int64{}
	for _, pid := range s.pids(ctx) {
		n, err := procstat.VmRSS(pid)
		if err != nil {
			return nil, fmt.Errorf("rss: %w", err)
		}
		out[pid] = n
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpu returns the CPU time every process of the server has used so far.
func (s *server) cpu(ctx context.Context) map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, pid := range s.pids(ctx) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if t, err := parseStatCPU(string(b)); err == nil {
			out[pid] = time.Duration(t) * time.Second / clockTicks
		}
	}
	return out
}

// cpuSince is the CPU time the processes of now used since then.
func cpuSince(then, now map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range now {
		d += t - then[pid] // a process new since then counts from its start
	}
	return d
}

// stop ends the server gracefully (SIGTERM), then by force (SIGKILL) after
// 15 s, and makes sure none of its workers outlives it. Safe to call twice.
func (s *server) stop() error {
	select {
	case <-s.waitC:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.waitC:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.waitC
		}
	}
	s.mu.Lock()
	workers := make([]int, 0, len(s.workers))
	for pid := range s.workers {
		workers = append(workers, pid)
	}
	s.mu.Unlock()
	// Workers exit on EOF of their IPC socket within about 2 s.
	deadline := time.Now().Add(5 * time.Second)
	var left []int
	for {
		left = left[:0]
		for _, pid := range workers {
			if s.ours(pid) && procstat.Alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if s.herd != nil {
		s.herd.Close()
	}
	if len(left) > 0 {
		return fmt.Errorf("%s: workers %v outlived the primary by 5 s; killed", s.c.Name, left)
	}
	// plain has no signal handler: SIGTERM's default action is its stop.
	if st := s.cmd.ProcessState; st != nil && !st.Success() && !(!s.c.Herd && termed(st)) { //nolint:staticcheck // QF1001: reads as "not the plain server's own TERM"
		return fmt.Errorf("%s: exit after SIGTERM: %v", s.c.Name, st)
	}
	return nil
}

func termed(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func post(ctx context.Context, url, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
