package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/procstat"
)

// load is a steady closed-loop load over keep-alive connections, counting
// every failed request: what a user of a zero-downtime reload would notice.
// A request the client had to resend on a new connection counts as failed.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup

	byPID    sync.Map       // worker pid → *atomic.Int64, successes it served
	connPID  sync.Map       // a connection's local address → the pid that last answered on it
	inflight []atomic.Int64 // per client: when its current request started (UnixNano), 0 between requests
}

// startLoad runs conns clients, each sending GET url back to back, over a
// pool of at most conns keep-alive connections (one each, at steady state,
// though not always the same one), until halt.
func startLoad(t *testing.T, url string, conns int) *load {
	t.Helper()
	return startLoadOver(t, url, conns, &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true})
}

// startChurnLoad is startLoad with a new connection per request, closed by
// the client with a reset after the answer (no TIME_WAIT left to run the
// machine out of ports).
func startChurnLoad(t *testing.T, url string, clients int) *load {
	t.Helper()
	d := &net.Dialer{Timeout: 20 * time.Second}
	return startLoadOver(t, url, clients, &http.Transport{
		DisableKeepAlives: true, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			return c, err
		},
	})
}

func startLoadOver(t *testing.T, url string, conns int, tr *http.Transport) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), inflight: make([]atomic.Int64, conns)}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				var reused, wasIdle bool
				var idleFor time.Duration
				var local string
				conns := 0
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
					conns++
					reused, wasIdle, idleFor = ci.Reused, ci.WasIdle, ci.IdleTime
					local = ci.Conn.LocalAddr().String()
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
				l.inflight[i].Store(time.Now().UnixNano())
				resp, err := client.Do(req)
				if err != nil {
					err = fmt.Errorf("%w (connection reused=%v idle=%v for %v)", err, reused, wasIdle, idleFor)
				} else if conns > 1 {
					// net/http resends a GET that failed on a reused
					// connection, silently. wrk and most proxies do not: a
					// request the server dropped counts as failed here too.
					resp.Body.Close()
					err = fmt.Errorf("dropped on a reused connection and resent by the client (%d connections for one request)", conns)
				}
				pid := 0
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
					pid, _ = strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
				}
				l.inflight[i].Store(0)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.connPID.Store(local, pid)
				n, _ := l.byPID.LoadOrStore(pid, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				l.ok.Add(1)
			}
		}()
	}
	t.Cleanup(func() { l.halt(); tr.CloseIdleConnections() })
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// finish stops the load and fails the test on any failed request.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.halt()
	t.Logf("load: %d requests succeeded, %d failed", l.ok.Load(), l.failed.Load())
	if l.ok.Load() == 0 {
		t.Fatal("the load sent no successful request at all")
	}
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d requests failed under load, want 0; first errors: %q", n, l.errs)
	}
}

// servedBy returns how many requests worker pid has answered successfully.
func (l *load) servedBy(pid int) int64 {
	n, ok := l.byPID.Load(pid)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// connsOn returns how many of the load's connections were last answered
// by worker pid.
func (l *load) connsOn(pid int) int {
	n := 0
	l.connPID.Range(func(_, v any) bool {
		if v.(int) == pid {
			n++
		}
		return true
	})
	return n
}

// startedBefore reports whether a request that started before t is still
// waiting for its answer.
func (l *load) startedBefore(t time.Time) bool {
	for i := range l.inflight {
		if s := l.inflight[i].Load(); s != 0 && s < t.UnixNano() {
			return true
		}
	}
	return false
}

// waitRequests waits until the load has made some progress, so that each
// operation really happens under load.
func (l *load) waitRequests(t *testing.T, _ *herdtest.Proc, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	herdtest.WaitUntil(t, 20*time.Second, fmt.Sprintf("%d more requests under load", n), func() bool { return l.ok.Load() >= target })
}

// herdCmd runs a herd subcommand against the cluster's control socket.
func herdCmd(t *testing.T, p *herdtest.Proc, args ...string) (int, string) {
	t.Helper()
	bin := herdtest.Binary(t) // not p's path: a test may have deployed a broken build there
	where := []string{"--control-socket", p.ControlSocket}
	if p.ControlSocket == "" { // herd's default socket, found from the port
		where = []string{"--port", p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]}
	}
	cmd := exec.Command(bin, append(args, where...)...)
	cmd.Env = herdtest.CleanEnv() // a CONTROL_SOCKET of the developer's would reach another primary
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
			t.Fatalf("herd %v: %v", args, err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// status asks the running primary for its workers.
func status(t *testing.T, p *herdtest.Proc) cluster.Status {
	t.Helper()
	code, out := herdCmd(t, p, "status", "--json")
	if code != 0 {
		t.Fatalf("herd status: exit %d: %s", code, out)
	}
	// The status document itself, not a reply envelope.
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var s cluster.Status
	if err := dec.Decode(&s); err != nil || s.PrimaryPID == 0 {
		t.Fatalf("herd status --json is not a status document: %v: %s", err, out)
	}
	return s
}

func readyPIDs(s cluster.Status) map[int]int {
	m := map[int]int{}
	for _, w := range s.Workers {
		if w.State == cluster.StateReady {
			m[w.PID] = w.ID
		}
	}
	return m
}

func TestReloadsUnderLoadDropNothing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
	storm := time.Now()
	for i := range 10 {
		before := readyPIDs(status(t, p))
		if i%2 == 0 {
			code, out := herdCmd(t, p, "reload")
			if code != 0 || !strings.Contains(out, "every worker replaced") {
				t.Fatalf("reload %d: herd reload exit %d: %s", i+1, code, out)
			}
		} else {
			n := len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "rolling reload complete" }))
			p.Signal(syscall.SIGHUP)
			p.Eventually(60*time.Second, "reload by SIGHUP", func() bool {
				return len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "rolling reload complete" })) > n
			})
		}
		after := readyPIDs(status(t, p))
		for pid := range before {
			if _, still := after[pid]; still {
				t.Fatalf("reload %d: worker pid %d was not replaced", i+1, pid)
			}
		}
		l.waitRequests(t, p, 100)
	}
	l.finish(t)
	t.Logf("chaos: reload storm: 10 rolling reloads (5 herd reload, 5 SIGHUP) of 2 workers under 50 keep-alive clients in %v; %d requests ok, %d failed",
		time.Since(storm).Round(time.Millisecond), l.ok.Load(), l.failed.Load())
}

func TestScaleUnderLoadDropsNothing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "4")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
	storm := time.Now()
	for _, n := range []int{1, 4} {
		code, out := herdCmd(t, p, "scale", strconv.Itoa(n))
		if code != 0 {
			t.Fatalf("herd scale %d: exit %d: %s", n, code, out)
		}
		if got := len(readyPIDs(status(t, p))); got != n {
			t.Fatalf("after herd scale %d: %d ready workers", n, got)
		}
		l.waitRequests(t, p, 200)
	}
	// The signals do the same, one worker at a time.
	p.Signal(syscall.SIGTTOU)
	p.Eventually(30*time.Second, "3 workers after SIGTTOU", func() bool {
		s := status(t, p)
		return s.Want == 3 && len(s.Workers) == 3
	})
	p.Signal(syscall.SIGTTIN)
	p.Eventually(30*time.Second, "4 ready workers after SIGTTIN", func() bool { return len(readyPIDs(status(t, p))) == 4 })
	l.waitRequests(t, p, 100)
	l.finish(t)
	t.Logf("chaos: scale storm: 4→1→4 workers (herd scale), then 4→3→4 (SIGTTOU, SIGTTIN), under 50 keep-alive clients in %v; %d requests ok, %d failed",
		time.Since(storm).Round(time.Millisecond), l.ok.Load(), l.failed.Load())
}

func TestRecyclingByMaxRequestsDropsNothing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--max-requests", "300")
	p.WaitReady(30 * time.Second)
	first := readyPIDs(status(t, p))
	l := startLoad(t, p.URL+"/pid", 50)
	p.Eventually(60*time.Second, "three recycles", func() bool {
		return len(p.Find(func(r herdtest.Record) bool {
			return r.Msg() == "replacing worker" && strings.HasPrefix(r.Str("reason"), "recycle: served")
		})) >= 3
	})
	l.waitRequests(t, p, 100)
	l.finish(t)
	for pid := range first {
		if _, ok := readyPIDs(status(t, p))[pid]; ok {
			t.Errorf("worker pid %d served past --max-requests without being recycled", pid)
		}
	}
}

// --max-memory 1MB is the smallest size the flag accepts, and below the RSS
// of any worker (about 10 MB, more under -race; the demo has no endpoint
// that makes a worker grow on demand). So every worker is recycled about one
// heartbeat after it becomes ready, for as long as the test runs: recycling
// at the fastest rate it can go, which is the harshest case for the load.
// The test is still meaningful: the flag must reach the supervisor, the
// reason must name the memory limit, each replacement must be listening
// before the worker it replaces drains, and no request may fail through
// back-to-back replacements of both workers. That a worker under the limit
// is left alone is tested against fake processes in cluster/recycle_test.go,
// where "under" does not depend on the machine.
func TestRecyclingByMaxMemoryDropsNothing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--max-memory", "1MB")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	isMemoryRecycle := func(r herdtest.Record) bool {
		return r.Msg() == "replacing worker" && strings.HasPrefix(r.Str("reason"), "recycle: RSS ") &&
			strings.HasSuffix(r.Str("reason"), " MB over the limit of 1.0 MB")
	}
	// Two recycles of each worker (the replacements are recycled in turn),
	// and four of them through to the old worker's drain.
	p.Eventually(60*time.Second, "two recycles for memory of each of the 2 workers, four of them complete", func() bool {
		per := map[int]int{}
		for _, r := range p.Find(isMemoryRecycle) {
			per[r.Int("worker")]++
		}
		drains := p.Find(func(r herdtest.Record) bool {
			return r.Msg() == "draining worker" && strings.HasPrefix(r.Str("reason"), "replaced by pid ")
		})
		return per[1] >= 2 && per[2] >= 2 && len(drains) >= 4
	})
	l.waitRequests(t, p, 100)
	l.finish(t)

	// Replacement first: a worker is recycled only once it is ready, and
	// drained only after its replacement is listening.
	listening := map[int]bool{} // pids logged "worker listening" so far
	drained := 0
	for _, r := range p.Records() {
		switch {
		case r.Msg() == "worker listening":
			listening[r.Int("pid")] = true
		case isMemoryRecycle(r):
			if !listening[r.Int("pid")] {
				t.Errorf("worker %d (pid %d) recycled before it was listening", r.Int("worker"), r.Int("pid"))
			}
		case r.Msg() == "draining worker":
			if r.Str("reason") == "shutdown" {
				continue
			}
			var by int
			if _, err := fmt.Sscanf(r.Str("reason"), "replaced by pid %d", &by); err != nil {
				t.Errorf("worker %d (pid %d) drained for %q, want only replacements", r.Int("worker"), r.Int("pid"), r.Str("reason"))
				continue
			}
			if !listening[by] {
				t.Errorf("worker %d (pid %d) drained before its replacement pid %d was listening", r.Int("worker"), r.Int("pid"), by)
			}
			drained++
		}
	}
	if drained < 4 {
		t.Errorf("%d workers drained after a replacement, want at least 4", drained)
	}
	t.Logf("%d recycles for memory, %d complete", len(p.Find(isMemoryRecycle)), drained)
	// A limit below a new worker's size is a mistake worth one warning.
	warned := p.Find(func(r herdtest.Record) bool {
		return strings.Contains(r.Msg(), "over the memory limit as soon as it starts")
	})
	if len(warned) != 1 {
		t.Errorf("%d warnings that the limit is below a new worker's RSS, want exactly 1", len(warned))
	}
}

func TestUpgradesUnderLoadDropNothingAndPIDFileFollows(t *testing.T) {
	dir := t.TempDir()
	bin := herdtest.CopyBinary(t, dir)
	pidFile := filepath.Join(dir, "herd.pid")
	p := herdtest.Start(t, herdtest.Options{Binary: bin, Dir: dir}, "serve", "--workers", "2", "--pid-file", pidFile)
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
	primary := p.Cmd.Process.Pid
	storm := time.Now()
	for i := range 2 {
		herdtest.Deploy(t, herdtest.Binary(t), bin) // a new build arrives on disk
		code, out := herdCmd(t, p, "upgrade")
		if code != 0 {
			t.Fatalf("upgrade %d: herd upgrade exit %d: %s", i+1, code, out)
		}
		s := status(t, p)
		if s.PrimaryPID == primary {
			t.Fatalf("upgrade %d: the control socket still reaches the old primary %d", i+1, primary)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(s.PrimaryPID) {
			t.Fatalf("upgrade %d: pid file holds %q (%v), want the new primary %d", i+1, b, err, s.PrimaryPID)
		}
		primary = s.PrimaryPID
		l.waitRequests(t, p, 200)
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Errorf("the first primary exited with %d after handing over, want 0", code)
	}
	l.finish(t)
	t.Logf("chaos: upgrade storm: 2 binary upgrades (new primary, new workers) under 50 keep-alive clients in %v; %d requests ok, %d failed",
		time.Since(storm).Round(time.Millisecond), l.ok.Load(), l.failed.Load())
	code, out := herdCmd(t, p, "stop")
	if code != 0 {
		t.Fatalf("herd stop after upgrades: exit %d: %s", code, out)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind after herd stop: %v", err)
	}
}

// brokenBuild is a deploy that never becomes ready: it hangs at start.
const brokenBuild = "#!/bin/sh\nexec sleep 600\n"

func TestReloadWithABrokenBuildKeepsTheOldWorkers(t *testing.T) {
	dir := t.TempDir()
	bin := herdtest.CopyBinary(t, dir)
	p := herdtest.Start(t, herdtest.Options{Binary: bin, Dir: dir}, "serve", "--workers", "2", "--ready-timeout", "2s")
	p.WaitReady(30 * time.Second)
	before := readyPIDs(status(t, p))
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 100)

	if err := os.WriteFile(bin+".new", []byte(brokenBuild), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	code, out := herdCmd(t, p, "reload")
	if code != 1 || !strings.Contains(out, "did not become ready within 2s") || !strings.Contains(out, "keeps serving") {
		t.Fatalf("herd reload with a broken build: exit %d, %q; want exit 1 saying the replacement never became ready and the old worker keeps serving", code, out)
	}
	after := readyPIDs(status(t, p))
	for pid := range before {
		if _, ok := after[pid]; !ok {
			t.Errorf("old worker %d stopped although its replacement never became ready", pid)
		}
	}
	l.waitRequests(t, p, 100)
	l.finish(t)

	// An upgrade to the broken build fails the same way: the old primary keeps serving.
	code, out = herdCmd(t, p, "upgrade", "--timeout", "60s")
	if code != 1 || !strings.Contains(out, "keeps serving") {
		t.Fatalf("herd upgrade to a broken build: exit %d, %q; want exit 1 saying this primary keeps serving", code, out)
	}
	if s := status(t, p); s.PrimaryPID != p.Cmd.Process.Pid {
		t.Fatalf("after a failed upgrade the primary is %d, want the original %d (%s)", s.PrimaryPID, p.Cmd.Process.Pid, out)
	}
}

// A hung worker (SIGSTOPped: alive, holding its connections, silent) under
// load. What clients see, and what the test holds the cluster to:
//
//   - The request in flight on each keep-alive connection the hung worker
//     holds cannot be answered by anyone: it waits until the primary kills
//     the worker after --worker-timeout, then fails (or is resent by
//     net/http on a new connection, which the load counts as failed too).
//     No supervisor can save those: it cannot tell a hung worker from a slow
//     one before the timeout, and a connection cannot move to another
//     process. So the test counts them and allows at most one failure per
//     connection the hung worker held, never more, and no HTTP error.
//   - Everything else must keep working: the other worker goes on serving
//     while this one is hung (new connections queue on the shared socket,
//     which a stopped process does not accept from), and once the hung
//     worker is replaced no request fails at all.
//
// --worker-timeout 5s leaves the other worker at least 4 s, a wide margin,
// to show it serves while the hung one is still stopped.
func TestHungWorkerIsReplaced(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--worker-timeout", "5s")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
	var victim, other cluster.WorkerStatus
	for _, w := range status(t, p).Workers {
		switch w.ID {
		case 1:
			victim = w
		case 2:
			other = w
		}
	}
	if victim.PID == 0 || other.PID == 0 {
		t.Fatalf("status lists no workers 1 and 2: %+v", status(t, p))
	}
	if n := l.failed.Load(); n != 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("%d requests failed before any worker hung, want 0; first errors: %q", n, l.errs)
	}
	// Worker 2 must hold some of the load's connections, or no client would
	// be free to send it anything while worker 1 is hung.
	p.Eventually(20*time.Second, "worker 2 serving some of the load's connections", func() bool { return l.connsOn(other.PID) > 0 })
	// herdtest kills every worker it saw start, this one too (SIGKILL ends a
	// stopped process), should the test fail before the primary does.
	if err := syscall.Kill(victim.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	herdtest.WaitUntil(t, 10*time.Second, "the victim stopped", func() bool { return procstat.State(victim.PID) == 'T' })

	// The other worker serves while the victim is hung.
	const during = 100
	served := l.servedBy(other.PID)
	p.Eventually(30*time.Second, fmt.Sprintf("%d requests served by worker 2 while worker 1 is hung", during), func() bool {
		// Read the count first: every success it includes happened while
		// the victim was still stopped if it still is now.
		got := l.servedBy(other.PID) - served
		if procstat.State(victim.PID) != 'T' {
			t.Fatalf("worker 1 (pid %d) was no longer stopped when worker 2 had served %d requests of %d since it hung; want worker 2 to carry the load meanwhile",
				victim.PID, got, during)
		}
		return got >= during
	})
	// Each connection to the hung worker holds at most one request that
	// cannot be answered (and all of them soon do: the clients take
	// whichever connection is idle).
	hung := l.connsOn(victim.PID)
	t.Logf("%d of the load's connections are on the hung worker", hung)

	p.WaitLog(30*time.Second, "the hung worker killed", func(r herdtest.Record) bool {
		return r.Msg() == "worker stopped responding; killing it" && r.Int("pid") == victim.PID
	})
	killed := time.Now()
	p.Eventually(30*time.Second, "a new ready worker 1", func() bool {
		for _, w := range status(t, p).Workers {
			if w.ID == 1 && w.PID != victim.PID && w.State == cluster.StateReady {
				return true
			}
		}
		return false
	})
	if herdtest.Alive(victim.PID) {
		t.Errorf("the hung worker %d is still alive", victim.PID)
	}
	p.Eventually(30*time.Second, "the requests sent before the hung worker was killed to end", func() bool {
		return !l.startedBefore(killed)
	})
	failed := l.failed.Load()
	l.mu.Lock()
	errs := append([]string(nil), l.errs...)
	l.mu.Unlock()
	if len(errs) > 0 {
		t.Logf("%d requests failed on the hung worker's connections; the first: %s", failed, errs[0])
	}
	if failed > int64(hung) {
		t.Errorf("%d requests failed while worker 1 hung, want at most one for each of the %d connections on it; first errors: %q", failed, hung, errs)
	}
	for _, e := range errs {
		if strings.HasPrefix(e, "status ") {
			t.Errorf("a request on the hung worker failed with an HTTP error %q, want only a lost connection", e)
		}
	}

	// Once the hung worker is replaced nothing fails any more.
	l.waitRequests(t, p, 200)
	l.halt()
	if got := l.failed.Load(); got != failed {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d more requests failed after the hung worker was replaced, want 0; first errors: %q", got-failed, l.errs)
	}
	t.Logf("load: %d requests succeeded, %d failed", l.ok.Load(), l.failed.Load())
	t.Logf("chaos: SIGSTOP worker: worker 2 served %d+ requests while worker 1 was stopped; the stopped one killed after --worker-timeout 5s and replaced; %d requests failed (at most 1 per connection it held: %d); load %d ok",
		during, failed, hung, l.ok.Load())
}

func TestControlCommandsWithoutAPrimary(t *testing.T) {
	for _, cmd := range []string{"status", "reload", "upgrade", "stop"} {
		c := exec.Command(herdtest.Binary(t), cmd, "--control-socket", filepath.Join(t.TempDir(), "none.sock"))
		out, _ := c.CombinedOutput()
		if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "no herd primary is running") {
			t.Errorf("herd %s with no primary: exit %d, %q; want exit 1 saying no primary runs", cmd, c.ProcessState.ExitCode(), out)
		}
	}
	c := exec.Command(herdtest.Binary(t), "scale", "0")
	out, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 2 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("herd scale 0: exit %d, %q; want exit 2 and one line", c.ProcessState.ExitCode(), out)
	}
}

// Spawning a worker once switched the shared socket to blocking mode, and
// a worker that lost an accept race then hung in accept4: with no traffic
// to wake it, its drain waited for the whole shutdown timeout.
func TestStopRightAfterIdleReloadsIsPrompt(t *testing.T) {
	for range 3 {
		p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
		p.WaitReady(30 * time.Second)
		for range 20 {
			p.Do("GET", "/pid", "")
		}
		for range 2 {
			if code, out := herdCmd(t, p, "reload"); code != 0 {
				t.Fatalf("herd reload: exit %d: %s", code, out)
			}
		}
		start := time.Now()
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(20 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("an idle cluster took %v to stop after reloads; a worker hung while draining", took)
		}
	}
}

// herd status prints one line per worker, as pm2 list does; a worker that
// has not sent a heartbeat yet has no memory figure rather than 0 MB.
func TestStatusTable(t *testing.T) {
	now := time.Now()
	s := cluster.Status{PrimaryPID: 100, Addr: "[::]:3000", Want: 2, Workers: []cluster.WorkerStatus{
		{ID: 1, PID: 101, State: cluster.StateReady, Started: now.Add(-90 * time.Second), Restarts: 2, Heartbeat: cluster.Heartbeat{Requests: 1234, RSS: 11 << 20}},
		{ID: 2, PID: 102, State: cluster.StateStarting, Started: now},
	}}
	var b bytes.Buffer
	printStatus(&b, s)
	want := [][]string{
		{"primary", "100", "on", "[::]:3000,", "2", "workers", "wanted"},
		{"ID", "PID", "STATE", "UPTIME", "RESTARTS", "REQUESTS", "MEMORY"},
		{"1", "101", "ready", "1m30s", "2", "1234", "11.0", "MB"},
		{"2", "102", cluster.StateStarting, "0s", "0", "0", "-"},
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("herd status printed %d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !slices.Equal(got, w) {
			t.Errorf("line %d = %q, want fields %q", i+1, lines[i], w)
		}
	}
}

// What a user does to check a deploy: herd loadtest against a running herd
// while it reloads. Nothing fails and nothing needs resending, and both
// workers (old and new processes under the same ids) served a share.
func TestLoadtestDuringReloadsReportsNothingLost(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	stopLoad := startLoadtest(t, p.URL+"/pid")
	served := func() (n uint64) { // by the ready workers, as of their last heartbeat
		for _, w := range status(t, p).Workers {
			if w.State == cluster.StateReady {
				n += w.Requests
			}
		}
		return n
	}
	p.Eventually(20*time.Second, "the load to reach the workers", func() bool { return served() > 500 })
	for i := range 3 {
		if code, msg := herdCmd(t, p, "reload"); code != 0 {
			t.Fatalf("reload %d: exit %d: %s", i+1, code, msg)
		}
		p.Eventually(20*time.Second, "the new workers to serve the load", func() bool { return served() > 500 })
	}
	var doc struct {
		Requests, Failed, Resent int64
		Workers                  struct{ Requests map[string]int64 }
	}
	stderr, err := stopLoad(&doc)
	if err != nil || doc.Failed != 0 || doc.Resent != 0 {
		t.Errorf("herd loadtest during 3 reloads: %v, %d of %d requests failed, %d resent; want exit 0, none failed or resent\nstderr %s",
			err, doc.Failed, doc.Requests, doc.Resent, stderr)
	}
	if doc.Requests < 1000 || doc.Workers.Requests["1"] == 0 || doc.Workers.Requests["2"] == 0 {
		t.Errorf("herd loadtest: %d requests, per worker %v; want a real load spread over workers 1 and 2", doc.Requests, doc.Workers.Requests)
	}
}

// startLoadtest starts herd loadtest --json with 50 clients against url, in
// the background, for at most 180 s (a bound for a test that fails on the
// way). The function it returns ends the run with SIGINT (herd loadtest
// then reports what it did so far), decodes the JSON report into doc, and
// returns the run's stderr and exit error.
func startLoadtest(t *testing.T, url string) func(doc any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	lt := exec.CommandContext(ctx, herdtest.Binary(t), "loadtest", url, "-c", "50", "-d", "180s", "--json")
	lt.Env = herdtest.CleanEnv()
	var out, errOut bytes.Buffer
	lt.Stdout, lt.Stderr = &out, &errOut
	if err := lt.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lt.Process.Kill(); cancel() })
	return func(doc any) (string, error) {
		t.Helper()
		_ = lt.Process.Signal(syscall.SIGINT)
		err := lt.Wait()
		if jerr := json.Unmarshal(out.Bytes(), doc); jerr != nil {
			t.Fatalf("herd loadtest (%v): not one JSON document: %v\nstdout %s\nstderr %s", err, jerr, out.String(), errOut.String())
		}
		return errOut.String(), err
	}
}
