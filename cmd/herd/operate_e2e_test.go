package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
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
}

// startLoad runs conns clients, each sending GET url back to back on its
// own keep-alive connection, until stopLoad.
func startLoad(t *testing.T, url string, conns int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for range conns {
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
				conns := 0
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
					conns++
					reused, wasIdle, idleFor = ci.Reused, ci.WasIdle, ci.IdleTime
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
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
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
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
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	cmd := exec.Command(bin, append(args, "--port", port)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
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
	var r cluster.ControlReply
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Status == nil {
		t.Fatalf("herd status --json: %v: %s", err, out)
	}
	return *r.Status
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
}

func TestScaleUnderLoadDropsNothing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "4")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
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

func TestUpgradesUnderLoadDropNothingAndPIDFileFollows(t *testing.T) {
	dir := t.TempDir()
	bin := herdtest.CopyBinary(t, dir)
	pidFile := filepath.Join(dir, "herd.pid")
	p := herdtest.Start(t, herdtest.Options{Binary: bin, Dir: dir}, "serve", "--workers", "2", "--pid-file", pidFile)
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/pid", 50)
	l.waitRequests(t, p, 200)
	primary := p.Cmd.Process.Pid
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

	os.WriteFile(bin+".new", []byte(brokenBuild), 0o755)
	os.Rename(bin+".new", bin)
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

func TestHungWorkerIsReplaced(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--worker-timeout", "2s")
	p.WaitReady(30 * time.Second)
	var victim cluster.WorkerStatus
	for _, w := range status(t, p).Workers {
		if w.ID == 1 {
			victim = w
		}
	}
	if err := syscall.Kill(victim.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(victim.PID, syscall.SIGKILL) })
	p.WaitLog(30*time.Second, "the hung worker killed", func(r herdtest.Record) bool {
		return r.Msg() == "worker stopped responding; killing it" && r.Int("pid") == victim.PID
	})
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
