package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
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
	// failed reports a write to the worker that did not go through; it
	// sends an event into the loop, so it must not be called from the loop.
	failed func(err error)
}

// drain writes the drain request from a goroutine of its own: a stopped
// worker with a full socket buffer holds that goroutine for up to
// ipc.WriteTimeout, never the supervisor loop. A failed write comes back
// to the loop as evDrainFailed.
func (h *procHandle) drain(timeout time.Duration) error {
	go func() {
		if err := h.conn.Notify(msgDrain, drainMsg{TimeoutMS: timeout.Milliseconds()}); err != nil {
			h.failed(err)
		}
	}()
	return nil
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

	files := []listen.Named{{Name: fdHTTP, File: p.lnF}, {Name: fdIPC, File: child}}
	var connsUC *net.UnixConn // the primary's end of the worker's connection socket
	if p.disp != nil {
		uc, cf, err := connPair()
		if err != nil {
			nc.Close()
			return 0, nil, err
		}
		defer cf.Close()
		connsUC = uc
		files = append(files, listen.Named{Name: fdConns, File: cf})
	}
	cmd := exec.Command(exe, args...) //nolint:gosec // G204: re-executes this program's own binary
	base := p.opts.Environ
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = workerEnv(base, p.opts.Env, id, p.workerProcs())
	cmd.Env = append(cmd.Env, p.opts.workerOptionsEnv())
	cmd.Env = append(cmd.Env, listen.Env(files)...)
	for _, f := range files {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f.File)
	}
	cmd.Stdout = os.Stdout
	cmd.Stderr = logW
	// Own process group: Ctrl-C in a terminal reaches the primary only,
	// which then drains the workers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		nc.Close()
		logR.Close()
		if connsUC != nil {
			connsUC.Close()
		}
		return 0, nil, fmt.Errorf("cluster: starting worker %d: %w", id, err)
	}
	pid := cmd.Process.Pid
	if connsUC != nil {
		p.disp.add(id, pid, connsUC)
	}
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
		ev := exitEvent(pid, err)
		p.send(ev)
	}()
	return pid, &procHandle{cmd: cmd, conn: conn, failed: func(err error) { p.send(evDrainFailed{pid, err}) }}, nil
}

// workerEnv is the primary's environment without its own cluster and
// descriptor markers, plus extra, plus the worker's.
func workerEnv(base, extra []string, id, procs int) []string {
	env := make([]string, 0, len(base)+len(extra)+4)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case EnvWorkerID, envWorkerOptions, listen.EnvFDs, listen.EnvFDNames, "LISTEN_PID", "GOMAXPROCS":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, extra...)
	return append(env, EnvWorkerID+"="+strconv.Itoa(id), "GOMAXPROCS="+strconv.Itoa(procs))
}

// relayLogs re-emits a worker's stderr through the primary's logger: JSON
// log lines at their own level with worker and pid attached (numbers kept
// as written: 123456789, not 1.23456789e+08), anything else (a panic's
// stack trace, net/http's own log) line by line as "worker output".
// Repeated lines are rate-limited (see repeats).
func relayLogs(log *slog.Logger, id, pid int, r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	rep := repeats{log: log, id: id, pid: pid, now: time.Now}
	for sc.Scan() {
		line := sc.Bytes()
		var rec map[string]any
		if len(line) > 0 && line[0] == '{' && decodeJSON(line, &rec) == nil {
			if msg, ok := rec["msg"].(string); ok {
				level := slog.LevelInfo
				if s, ok := rec["level"].(string); ok {
					_ = level.UnmarshalText([]byte(s))
				}
				keys := make([]string, 0, len(rec))
				for k := range rec {
					if k != "msg" && k != "level" && k != "time" {
						keys = append(keys, k)
					}
				}
				sort.Strings(keys)
				attrs := []any{"worker", id, "pid", pid}
				for _, k := range keys {
					attrs = append(attrs, k, rec[k])
				}
				key := fmt.Sprint(level, msg, attrs)
				if rep.seen(key, level, msg) {
					continue
				}
				log.Log(context.Background(), level, msg, attrs...) //nolint:sloglint // re-emits a worker's own message
				continue
			}
		}
		text := string(line)
		if rep.seen(rawKey(text), slog.LevelWarn, text) {
			continue
		}
		log.Warn("worker output", "worker", id, "pid", pid, "line", text)
	}
	rep.flush()
}

func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// repeatEvery is how often a run of identical lines from one worker is
// summarised while it lasts.
const repeatEvery = 5 * time.Second

// repeats rate-limits a worker's identical log lines (net/http's
// "accept4: too many open files" comes hundreds of times a second): the
// first line of a run is relayed, the rest are counted, and the count is
// logged as "worker log line repeated" (repeated=N) when a different line
// comes, every repeatEvery while the run lasts, and at the end.
type repeats struct {
	log      *slog.Logger
	id, pid  int
	now      func() time.Time
	key      string
	level    slog.Level
	msg      string
	n        int       // lines counted and not relayed since since
	since    time.Time // when the summary period began
	last     time.Time // when the previous line came
	havePrev bool
}

// seen reports whether the line with key is a repeat to count rather than
// relay; it logs a pending summary first when the run ends or is due. A
// line that comes back after repeatEvery of quiet starts a new run (a
// periodic line is relayed, not counted).
func (r *repeats) seen(key string, level slog.Level, msg string) bool {
	now := r.now()
	prev := r.last
	r.last = now
	if r.havePrev && key == r.key && now.Sub(prev) < repeatEvery {
		r.n++
		if now.Sub(r.since) >= repeatEvery {
			r.flush()
			r.since = now
		}
		return true
	}
	r.flush()
	r.key, r.level, r.msg, r.since, r.havePrev = key, level, msg, now, true
	return false
}

func (r *repeats) flush() {
	if r.n == 0 {
		return
	}
	r.log.Log(context.Background(), r.level, "worker log line repeated",
		"worker", r.id, "pid", r.pid, "repeated", r.n, "line", r.msg)
	r.n = 0
}

// rawKey is what makes two plain-text lines "the same": the line without
// the standard log package's date and time and with every run of digits
// alike, so that "2026/12/01 20:00:00 http: Accept error: accept4: too
// many open files; retrying in 5ms" repeats whatever its time and delay.
func rawKey(line string) string {
	var b strings.Builder
	digits := false
	for _, c := range line {
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	return b.String()
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
	start := time.Now()
	v, err := h.p.opts.Calls(ctx, method, body)
	h.p.mx.observeCall(method, time.Since(start), err)
	return v, err
}

// HandleDataRequest answers a worker's CallData with Options.DataCalls.
func (h *primaryIPC) HandleDataRequest(ctx context.Context, method string, body, data []byte) (any, []byte, error) {
	h.p.calls.Add(1)
	if strings.HasPrefix(method, "cluster.") || h.p.opts.DataCalls == nil {
		return nil, nil, fmt.Errorf("cluster: unknown call %q", method)
	}
	start := time.Now()
	v, out, err := h.p.opts.DataCalls(ctx, method, body, data)
	h.p.mx.observeCall(method, time.Since(start), err)
	return v, out, err
}

// workerProcs is the GOMAXPROCS a new worker gets.
func (p *primary) workerProcs() int {
	if p.opts.WorkerGOMAXPROCS > 0 {
		return p.opts.WorkerGOMAXPROCS
	}
	return WorkerProcs(p.want)
}

// exitEvent describes how a worker process ended, from exec.Cmd.Wait's
// error: its exit code, or the signal that killed it (code -1).
func exitEvent(pid int, err error) evExited {
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
	return ev
}
