package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// healthzFresh asks /healthz over a new connection and returns how long the
// answer took, or an error.
func healthzFresh(addr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %s", resp.Status)
	}
	return time.Since(start), nil
}

// Slowloris: many connections send their request headers one byte a second
// and never finish. They must not stop the cluster from answering /healthz
// on a fresh connection, promptly, the whole time they dribble.
func TestSlowlorisDoesNotStopHealthz(t *testing.T) {
	const conns, dribble = 300, 8 * time.Second
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	slow := make([]net.Conn, 0, conns)
	for i := range conns {
		c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i+1, err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: herd\r\nX-Slow: "); err != nil {
			t.Fatalf("slow connection %d: %v", i+1, err)
		}
		slow = append(slow, c)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes, broken atomic.Int64
	wg.Add(1)
	go func() { // one byte a second on every slow connection
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, c := range slow {
				if _, err := c.Write([]byte("x")); err != nil {
					broken.Add(1)
					continue
				}
				writes.Add(1)
			}
		}
	}()
	var worst time.Duration
	probes := 0
	end := time.Now().Add(dribble)
	for time.Now().Before(end) {
		took, err := healthzFresh(p.Addr, 10*time.Second)
		if err != nil {
			t.Errorf("/healthz on a fresh connection during the slowloris: %v", err)
			break
		}
		worst = max(worst, took)
		probes++
		time.Sleep(100 * time.Millisecond) // the probes' pace, not a wait for a condition
	}
	close(stop)
	wg.Wait()
	t.Logf("chaos: slowloris: %d connections sending headers 1 byte/s for %v (%d bytes sent, %d writes failed); /healthz on a fresh connection: %d answered, slowest %v",
		conns, dribble, writes.Load(), broken.Load(), probes, worst.Round(time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("/healthz took up to %v during the slowloris, want at most 5s", worst)
	}
	if n := len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker died" })); n > 0 {
		t.Errorf("%d workers died during the slowloris", n)
	}
}

// 5,000 idle keep-alive connections (each served once, then left open):
// the cluster still answers a fresh /healthz promptly and every worker
// stays ready.
func TestFiveThousandIdleConnections(t *testing.T) {
	const idle = 5000
	// This process holds 5,000 descriptors, and herd's workers as many
	// between them (Go raises the soft limit to the hard one in both).
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < 2*idle+100 {
		t.Skipf("the descriptor limit is %d, below the %d this test needs (raise ulimit -n)", rl.Cur, 2*idle+100)
	}
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	conns := make([]*rawConn, idle)
	var next atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < idle; i = int(next.Add(1)) - 1 {
				c, err := net.DialTimeout("tcp", p.Addr, 20*time.Second)
				if err == nil {
					rc := &rawConn{c: c, br: bufio.NewReader(c)}
					conns[i] = rc
					_, _, err = rc.get("/pid")
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, rc := range conns {
			if rc != nil {
				rc.c.Close()
			}
		}
	})
	opened := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections failed to open and be served once; first: %s", len(errs), idle, errs[0])
	}
	var worst time.Duration
	for range 20 {
		took, err := healthzFresh(p.Addr, 20*time.Second)
		if err != nil {
			t.Fatalf("/healthz on a fresh connection with %d idle ones open: %v", idle, err)
		}
		worst = max(worst, took)
	}
	s := controlStatus(t, p)
	var held int64
	for _, w := range s.Workers {
		held += w.Conns
	}
	t.Logf("chaos: 5,000 idle connections: opened and served once in %v; the workers hold %d; fresh /healthz: 20 answered, slowest %v; %d of %d workers ready",
		opened.Round(time.Millisecond), held, worst.Round(time.Millisecond), len(readyPIDs(s)), len(s.Workers))
	if got := len(readyPIDs(s)); got != 2 {
		t.Errorf("%d workers ready with %d idle connections open, want 2", got, idle)
	}
	if worst > 5*time.Second {
		t.Errorf("/healthz took up to %v with %d idle connections open, want at most 5s", worst, idle)
	}
}

// Descriptor exhaustion: herd runs with ulimit -n 256 and --max-conns 100
// on each of its 2 workers, and clients open 600 connections, more than any
// one process may hold: 200 served and left idle (every worker at its cap),
// then 400 more with a request sent (Connection: close, so that once
// served they free their slot). Those wait in the queue (no error, no
// reset), the workers stay ready, the primary warns once that the limit is
// low and the log is not flooded with accept errors; once the idle
// connections close, every waiting request, and a fresh /healthz, is
// answered.
func TestDescriptorExhaustionKeepsConnectionsWaiting(t *testing.T) {
	for _, b := range []string{"least-conn", "shared"} {
		t.Run(b, func(t *testing.T) {
			const perWorker, served, waiting = 100, 200, 400
			dir := t.TempDir()
			wrapper := filepath.Join(dir, "herd-ulimit")
			script := fmt.Sprintf("#!/bin/sh\nulimit -n 256 || exit 9\nexec %q \"$@\"\n", herdtest.Binary(t))
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			p := herdtest.Start(t, herdtest.Options{Binary: wrapper, Dir: dir},
				"serve", "--workers", "2", "--balance", b, "--max-conns", fmt.Sprint(perWorker))
			p.WaitReady(30 * time.Second)
			warn := p.WaitLog(10*time.Second, "the warning that the descriptor limit is low", func(r herdtest.Record) bool {
				return strings.HasPrefix(r.Msg(), "file descriptor limit is low")
			})
			if warn.Int("limit") != 256 {
				t.Fatalf("the low-limit warning says limit=%d, want 256: %v", warn.Int("limit"), warn)
			}
			idle := make([]*rawConn, served)
			for i := range idle {
				idle[i] = dialFrom(t, p.Addr, "")
				if _, _, err := idle[i].get("/pid"); err != nil {
					t.Fatalf("idle connection %d: %v", i+1, err)
				}
			}
			queued := make([]*rawConn, waiting)
			for i := range queued {
				queued[i] = dialFrom(t, p.Addr, "")
				if _, err := fmt.Fprintf(queued[i].c, "GET /pid HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n"); err != nil {
					t.Fatalf("queued connection %d: %v", i+1, err)
				}
			}
			// Nothing may fail while the workers are full: every queued
			// request is still waiting after a second.
			deadline := time.Now().Add(time.Second)
			for i, rc := range queued {
				_ = rc.c.SetReadDeadline(deadline)
				if _, err := rc.br.Peek(1); err == nil {
					t.Fatalf("queued connection %d was answered while every worker held --max-conns %d", i+1, perWorker)
				} else if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("queued connection %d failed instead of waiting: %v", i+1, err)
				}
			}
			s := controlStatus(t, p)
			if got := len(readyPIDs(s)); got != 2 {
				t.Errorf("%d workers ready while at their cap, want 2: %+v", got, s.Workers)
			}
			for _, rc := range idle {
				rc.c.Close()
			}
			start := time.Now()
			for i, rc := range queued {
				_ = rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(rc.br, nil)
				if err != nil {
					t.Fatalf("queued connection %d not served once the idle ones closed: %v", i+1, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("queued connection %d: status %s", i+1, resp.Status)
				}
			}
			drained := time.Since(start)
			took, err := healthzFresh(p.Addr, 30*time.Second)
			if err != nil {
				t.Fatalf("/healthz on a fresh connection after the storm: %v", err)
			}
			accept := p.Find(func(r herdtest.Record) bool {
				return strings.Contains(r.Str("err"), "too many open files") || strings.Contains(r.Msg(), "too many open files") ||
					strings.Contains(r.Msg(), "cannot accept")
			})
			t.Logf("chaos: descriptor exhaustion (%s): ulimit -n 256, --max-conns %d × 2 workers, %d connections open (%d idle, %d queued): the queued ones waited, then all served in %v; fresh /healthz %v; %d accept-error log lines of %d",
				b, perWorker, served+waiting, served, waiting, drained.Round(time.Millisecond), took.Round(time.Millisecond), len(accept), len(p.Records()))
			if len(accept) > 5 {
				t.Errorf("%d log lines about failed accepts, want at most 5 (rate-limited); first: %v", len(accept), accept[0])
			}
		})
	}
}
