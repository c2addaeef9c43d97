package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/ipc"
	"github.com/herd-go/herd/internal/listen"
)

// procHandle is a real worker process and its IPC connection.
type procHandle struct {
	cmd  *exec.Cmd
	conn *ipc.Conn
}

func (h *procHandle) drain(timeout time.Duration) error {
	return h.conn.Notify(msgDrain, drainMsg{TimeoutMS: timeout.Milliseconds()})
}

func (h *procHandle) kill() error { return h.cmd.Process.Kill() }

// spawnProcess starts worker id by re-executing this binary with the
// listener and one end of a socketpair as inherited descriptors.
func spawnProcess(p *primary, id int) (int, handle, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: finding this executable: %w", err)
	}
	args := p.opts.Args
	if args == nil {
		args = os.Args[1:]
	}
	nc, child, err := ipc.Pair()
	if err != nil {
		return 0, nil, err
	}
	defer child.Close() // the child has its own copy once started
	logR, logW, err := os.Pipe()
	if err != nil {
		nc.Close()
		return 0, nil, fmt.Errorf("cluster: %w", err)
	}
	defer logW.Close()

	cmd := exec.Command(exe, args...)
	cmd.Env = workerEnv(os.Environ(), p.opts.Env, id, p.workerProcs())
	cmd.Env = append(cmd.Env, listen.Env([]listen.Named{{Name: fdHTTP, File: p.lnF}, {Name: fdIPC, File: child}})...)
	cmd.ExtraFiles = []*os.File{p.lnF, child}
	cmd.Stdout = os.Stdout
	cmd.Stderr = logW
	// Own process group: Ctrl-C in a terminal reaches the primary only,
	// which then drains the workers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		nc.Close()
		logR.Close()
		return 0, nil, fmt.Errorf("cluster: starting worker %d: %w", id, err)
	}
	pid := cmd.Process.Pid
	conn := ipc.NewConn(nc, &primaryIPC{p: p, pid: pid})
	go func() { _ = conn.Serve() }()
	relayed := make(chan struct{})
	go func() {
		relayLogs(p.log, id, pid, logR)
		close(relayed)
	}()
	go func() {
		err := cmd.Wait()
		conn.Close()
		// Let the worker's last log lines out before its exit is reported.
		select {
		case <-relayed:
		case <-time.After(time.Second):
		}
		ev := evExited{pid: pid, code: -1}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				ev.signal = ws.Signal().String()
			} else {
				ev.code = ee.ExitCode()
			}
		} else if err == nil {
			ev.code = 0
		}
		p.send(ev)
	}()
	return pid, &procHandle{cmd: cmd, conn: conn}, nil
}

// workerEnv is the primary's environment without its own cluster and
// descriptor markers, plus extra, plus the worker's.
func workerEnv(base, extra []string, id, procs int) []string {
	env := make([]string, 0, len(base)+len(extra)+4)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case EnvWorkerID, listen.EnvFDs, listen.EnvFDNames, "LISTEN_PID", "GOMAXPROCS":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, extra...)
	return append(env, EnvWorkerID+"="+strconv.Itoa(id), "GOMAXPROCS="+strconv.Itoa(procs))
}

// relayLogs re-emits a worker's stderr through the primary's logger: JSON
// log lines at their own level with worker and pid attached, anything else
// (a panic's stack trace) line by line as "worker output".
func relayLogs(log *slog.Logger, id, pid int, r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var rec map[string]any
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &rec) == nil {
			if msg, ok := rec["msg"].(string); ok {
				level := slog.LevelInfo
				if s, ok := rec["level"].(string); ok {
					_ = level.UnmarshalText([]byte(s))
				}
				attrs := []any{"worker", id, "pid", pid}
				for k, v := range rec {
					if k != "msg" && k != "level" && k != "time" {
						attrs = append(attrs, k, v)
					}
				}
				log.Log(context.Background(), level, msg, attrs...)
				continue
			}
		}
		log.Warn("worker output", "worker", id, "pid", pid, "line", string(line))
	}
}

// primaryIPC handles what one worker sends the primary.
type primaryIPC struct {
	p   *primary
	pid int
}

func (h *primaryIPC) HandleNotify(method string, body []byte) {
	switch method {
	case msgReady:
		h.p.send(evReady{h.pid})
	case msgHeartbeat:
		var hb Heartbeat
		if json.Unmarshal(body, &hb) == nil {
			h.p.send(evBeat{pid: h.pid, hb: hb})
		}
	}
}

func (h *primaryIPC) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	h.p.calls.Add(1)
	if method == callWorkers {
		var s Status
		if !h.p.do(func() { s = h.p.status() }) {
			return nil, errors.New("cluster: primary is shutting down")
		}
		return s, nil
	}
	if strings.HasPrefix(method, "cluster.") || h.p.opts.Calls == nil {
		return nil, fmt.Errorf("cluster: unknown call %q", method)
	}
	return h.p.opts.Calls(ctx, method, body)
}

// workerProcs is the GOMAXPROCS a new worker gets.
func (p *primary) workerProcs() int {
	if p.opts.WorkerGOMAXPROCS > 0 {
		return p.opts.WorkerGOMAXPROCS
	}
	return WorkerProcs(p.want)
}
