package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/internal/listen"
	"github.com/herd-go/herd/internal/procstat"
)

// external runs Options.Exec's program as the workers: the spawner of
// "herd run". It owns a private directory (notify sockets, the Node preload
// module) and the reaper process that ends the programs' process groups if
// the primary dies.
type external struct {
	p   *primary
	x   Exec
	dir string // private, 0700: notify sockets and the preload module

	reaper  *exec.Cmd
	reaperW *os.File // one "+pgid" or "-pgid" line per program; EOF ends them all
	reapMu  sync.Mutex
	seq     atomic.Uint64
}

// startExternal prepares the private directory and starts the reaper.
func startExternal(p *primary) (*external, error) {
	x := p.opts.Exec.withDefaults()
	if err := x.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-run-")
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	e := &external{p: p, x: x, dir: dir}
	if err := os.WriteFile(filepath.Join(dir, nodePreloadName), nodePreload, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cluster: writing the node preload module: %w", err)
	}
	if err := e.startReaper(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// startReaper starts this binary as the reaper (see runReaper), in its own
// process group so that a Ctrl-C meant for the primary does not reach it.
func (e *external) startReaper() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cluster: finding this executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, e.p.opts.Args...) //nolint:gosec // G204: re-executes this program's own binary as the reaper
	cmd.Env = append(os.Environ(), envHelper+"="+helperReaper)
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("cluster: starting the reaper: %w", err)
	}
	e.reaper, e.reaperW = cmd, w
	go func() {
		_ = cmd.Wait()
		e.reapMu.Lock()
		closed := e.reaperW == nil
		e.reapMu.Unlock()
		if !closed {
			e.p.log.Error("the reaper exited: if the primary dies now, the programs' own children may outlive it", "pid", cmd.Process.Pid)
		}
	}()
	return nil
}

// tellReaper sends the reaper one line; it never blocks for long (the
// reaper reads all the time, and a line is far below a pipe's buffer).
func (e *external) tellReaper(line string) {
	e.reapMu.Lock()
	defer e.reapMu.Unlock()
	if e.reaperW != nil {
		_, _ = e.reaperW.WriteString(line + "\n")
	}
}

// close ends the reaper (it kills any program group still known) and
// removes the private directory.
func (e *external) close() {
	e.reapMu.Lock()
	w := e.reaperW
	e.reaperW = nil
	e.reapMu.Unlock()
	if w != nil {
		w.Close()
		done := make(chan struct{})
		go func() {
			for procstat.Alive(e.reaper.Process.Pid) {
				time.Sleep(10 * time.Millisecond)
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	os.RemoveAll(e.dir)
}

// extHandle is one running program.
type extHandle struct {
	pid     int
	stopSig syscall.Signal
	exited  atomic.Bool // set before the group is reaped: no signal after it
}

// quiet: a program sends no heartbeats unless it speaks sd_notify's
// WATCHDOG=1, so no heartbeat timeout applies until it does.
func (h *extHandle) quiet() bool { return true }

// drain sends the stop signal to the program; its whole process group is
// killed once timeout has passed.
func (h *extHandle) drain(timeout time.Duration) error {
	if h.exited.Load() {
		return nil
	}
	if err := syscall.Kill(h.pid, h.stopSig); err != nil {
		return fmt.Errorf("cluster: signalling pid %d: %w", h.pid, err)
	}
	time.AfterFunc(timeout, func() { _ = h.kill() })
	return nil
}

// kill sends SIGKILL to the program's whole process group.
func (h *extHandle) kill() error {
	if h.exited.Load() {
		return nil
	}
	return syscall.Kill(-h.pid, syscall.SIGKILL)
}

// spawn starts worker id: this binary in exec-step mode, in a new process
// group, with the parent-death signal set, which sets LISTEN_PID to its own
// pid and replaces itself with the program (see execStep).
func (e *external) spawn(p *primary, id int) (int, handle, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: finding this executable: %w", err)
	}
	n := e.seq.Add(1)
	notifyPath := filepath.Join(e.dir, fmt.Sprintf("notify-%d.sock", n))
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: notify socket for worker %d: %w", id, err)
	}
	cleanup := []func(){func() { notify.Close(); os.Remove(notifyPath) }}
	fail := func(err error) (int, handle, error) {
		for _, f := range cleanup {
			f()
		}
		return 0, nil, err
	}
	files := []listen.Named{{Name: fdHTTP, File: p.lnF}}
	var probeAddr string
	var probeF *os.File // the primary's copy of the probe socket, open until the program exits
	if strings.HasPrefix(e.x.ReadyProbe, "http:") || e.x.ReadyProbe == readyProbeTCP {
		pl, err := listen.TCP("127.0.0.1:0")
		if err != nil {
			return fail(fmt.Errorf("cluster: probe socket for worker %d: %w", id, err))
		}
		pf, err := listen.Passable(pl)
		pl.Close()
		if err != nil {
			return fail(fmt.Errorf("cluster: probe socket for worker %d: %w", id, err))
		}
		cleanup = append(cleanup, func() { pf.Close() })
		probeAddr, probeF = pl.Addr().String(), pf
		files = append(files, listen.Named{Name: fdProbe, File: pf})
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("cluster: %w", err))
	}
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		return fail(fmt.Errorf("cluster: %w", err))
	}
	defer errW.Close()

	cmd := exec.Command(exe, p.opts.Args...) //nolint:gosec // G204: re-executes this program's own binary as the exec step
	cmd.Env = e.env(id, notifyPath, files)
	for _, f := range files {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f.File)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	// Its own group: Ctrl-C reaches the primary only, and the group can be
	// killed whole. The parent-death signal survives the exec of the
	// program: a dead primary takes it along; the reaper takes its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		outR.Close()
		errR.Close()
		return fail(fmt.Errorf("cluster: starting worker %d: %w", id, err))
	}
	pid := cmd.Process.Pid
	e.tellReaper("+" + strconv.Itoa(pid))
	h := &extHandle{pid: pid, stopSig: e.x.StopSignal}

	tail := newTail(tailLines)
	var relays sync.WaitGroup
	relays.Add(2)
	go func() { defer relays.Done(); relayOutput(p.log, id, pid, "stdout", outR, nil) }()
	go func() { defer relays.Done(); relayOutput(p.log, id, pid, "stderr", errR, tail) }()

	stopC := make(chan struct{}) // closed once the program has exited
	go e.readNotify(notify, pid, stopC)
	switch {
	case e.x.ReadyProbe == readyProbeTCP:
		go e.probeTCP(probeAddr, probeF, pid, stopC)
	case probeAddr != "":
		go e.probeHTTP(probeAddr, strings.TrimPrefix(e.x.ReadyProbe, "http:"), pid, stopC)
	case e.x.ReadyProbe == "":
		t := time.AfterFunc(e.x.ReadyAfter, func() { p.send(evReady{pid}) })
		cleanup = append(cleanup, func() { t.Stop() })
	}
	go e.sampleRSS(pid, stopC)

	go func() {
		err := cmd.Wait()
		h.exited.Store(true)
		// Whatever the program left behind in its group goes with it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		e.tellReaper("-" + strconv.Itoa(pid))
		close(stopC)
		for _, f := range cleanup {
			f()
		}
		// Let its last lines out before its exit is reported (a child
		// holding the pipes open does not hold the report up for long).
		done := make(chan struct{})
		go func() { relays.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		ev := exitEvent(pid, err)
		ev.output = tail.String()
		p.send(ev)
	}()
	return pid, h, nil
}

// env is the program's environment: the primary's own without its
// descriptor and notify variables, Options.Env, and what the program needs
// to find its sockets, whatever convention it follows.
func (e *external) env(id int, notifyPath string, files []listen.Named) []string {
	p := e.p
	base := os.Environ()
	env := make([]string, 0, len(base)+16)
	nodeOpts := ""
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case EnvWorkerID, EnvRunWorker, listen.EnvFDs, listen.EnvFDNames, "LISTEN_PID",
			"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
			"EINHORN_FD_COUNT", "EINHORN_FD_0", "SERVER_STARTER_PORT", envHelper, envExecArgv, "HERD_PORT", "PORT", envStopSignal:
			continue
		case "NODE_OPTIONS":
			nodeOpts = v
			continue
		}
		env = append(env, kv)
	}
	env = append(env, p.opts.Env...)
	port := strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port)
	preload := filepath.Join(e.dir, nodePreloadName)
	env = append(env, listen.Env(files)...)
	env = append(env,
		envHelper+"="+helperExec,
		envExecArgv+"="+encodeArgv(e.x.Path, e.x.args(port)),
		EnvRunWorker+"="+strconv.Itoa(id),
		"HERD_PORT="+port,
		"PORT="+port,
		"NOTIFY_SOCKET="+notifyPath,
		"WATCHDOG_USEC="+strconv.FormatInt(p.opts.WorkerTimeout.Microseconds(), 10),
		"EINHORN_FD_COUNT=1",
		"EINHORN_FD_0=3",
		"SERVER_STARTER_PORT="+p.ln.Addr().String()+"=3",
		"NODE_OPTIONS="+strings.TrimSpace(nodeOpts+" --require "+preload),
		envStopSignal+"="+unix.SignalName(e.x.StopSignal),
	)
	if os.Getenv("GOMAXPROCS") == "" {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(p.workerProcs()))
	}
	return env
}

// readNotify reads the program's sd_notify datagrams until it exits:
// READY=1 marks it ready, WATCHDOG=1 is a heartbeat.
func (e *external) readNotify(c *net.UnixConn, pid int, stopC <-chan struct{}) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			switch line {
			case "READY=1":
				e.p.send(evReady{pid})
			case "WATCHDOG=1":
				e.p.send(evBeat{pid: pid, hb: Heartbeat{RSS: treeRSS(pid)}})
			}
		}
		select {
		case <-stopC:
			return
		default:
		}
	}
}

// probeHTTP asks the worker's private probe socket for path until an answer
// below 500 comes, then marks the worker ready.
func (e *external) probeHTTP(addr, path string, pid int, stopC <-chan struct{}) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stopC:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		resp, err := client.Do(req)
		cancel()
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode < 500 {
			e.p.send(evReady{pid})
			return
		}
	}
}

// probeTCPSettle is how long after its connect returned the TCP probe
// takes an empty accept queue to mean that the program accepted: the
// handshake's last ACK crosses loopback in microseconds, and until it has,
// the connection is not yet in the queue.
const probeTCPSettle = 100 * time.Millisecond

// probeTCP marks the worker ready once the program has accepted a
// connection on its private probe socket. A connect alone proves nothing
// (the kernel completes it on the listening socket, which the primary holds
// too, before the program calls accept), so the probe connects once and
// then watches the socket's accept queue (TCP_INFO): while the connection
// waits there the program has not accepted; once the queue is empty again
// (having held the connection, or probeTCPSettle after the connect) it has.
// Nobody else connects to the probe socket: it listens on 127.0.0.1 on a
// port only the primary knows.
func (e *external) probeTCP(addr string, f *os.File, pid int, stopC <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var connected time.Time
	seen := false // the connection was seen waiting in the queue
	for {
		select {
		case <-stopC:
			return
		case <-t.C:
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				continue
			}
			conn, connected = c, time.Now()
		}
		q, ok := acceptQueue(f)
		if !ok {
			continue
		}
		if q > 0 {
			seen = true
			continue
		}
		if seen || time.Since(connected) >= probeTCPSettle {
			e.p.send(evReady{pid})
			return
		}
	}
}

// acceptQueue returns how many connections wait in listening socket f's
// accept queue (TCP_INFO's tcpi_unacked for a socket in the LISTEN state,
// as backlog reads it); ok is false if the kernel does not say.
func acceptQueue(f *os.File) (n uint32, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	_ = rc.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil && ti.State == unix.BPF_TCP_LISTEN {
			n, ok = ti.Unacked, true
		}
	})
	return n, ok
}

// sampleRSS reports the resident memory of the program's process tree
// every heartbeat interval, for herd status and Recycle.MaxRSS. The samples
// are not signs of life.
func (e *external) sampleRSS(pid int, stopC <-chan struct{}) {
	t := time.NewTicker(e.p.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stopC:
			return
		case <-t.C:
			e.p.send(evBeat{pid: pid, hb: Heartbeat{RSS: treeRSS(pid)}, sample: true})
		}
	}
}
