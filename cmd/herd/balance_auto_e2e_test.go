package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

const (
	msgDirect = "balance: new connections come fast; the workers accept them from the shared queue"
	msgPass   = "balance: new connections come slowly again; the primary passes them to the least busy worker"
)

// The default policy, auto, under connection churn: the workers take over
// accepting (the log says so), a reload and a scale while they do lose no
// request, the new workers accept too, and once the churn stops the
// primary passes connections again, counting right the ones the workers
// accepted themselves: a worker holding k directly accepted keep-alive
// connections gets none of the next k, which go to the empty one.
func TestAutoBalanceUnderChurn(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	admin := adminURL(t, p)
	passes := func(want float64) {
		t.Helper()
		mfs, _ := scrape(t, admin)
		if v, ok := mfs.value("herd_balance_primary_passes", map[string]string{"policy": "auto"}); !ok || v != want {
			t.Fatalf("herd_balance_primary_passes{policy=\"auto\"} = %v (present %v), want %v", v, ok, want)
		}
	}
	passes(1)
	l := startChurnLoad(t, p.URL+"/pid", 20)
	p.WaitMsg(30*time.Second, msgDirect)
	passes(0)

	code, out := herdCmd(t, p, "reload")
	if code != 0 || !strings.Contains(out, "every worker replaced") {
		t.Fatalf("herd reload exit %d: %s", code, out)
	}
	for _, n := range []string{"3", "2"} {
		if code, out := herdCmd(t, p, "scale", n); code != 0 {
			t.Fatalf("herd scale %s exit %d: %s", n, code, out)
		}
	}
	// The workers serving now started in direct mode: each must take
	// fresh connections itself.
	pids := readyPIDs(status(t, p))
	p.Eventually(30*time.Second, "both workers serving the churn after the reload and scale", func() bool {
		for pid := range pids {
			if l.servedBy(pid) < 20 {
				return false
			}
		}
		return len(pids) == 2
	})

	// Keep-alive connections accepted by the workers themselves; keep
	// those of the worker holding more, close the others'.
	passes(0)
	var held []*rawConn
	byID := map[int][]*rawConn{}
	for range 8 {
		rc := dialFrom(t, p.Addr, "")
		id, _, err := rc.get("/pid")
		if err != nil {
			t.Fatal(err)
		}
		byID[id] = append(byID[id], rc)
	}
	full, empty := 1, 2
	if len(byID[2]) > len(byID[1]) {
		full, empty = 2, 1
	}
	for _, rc := range byID[empty] {
		rc.c.Close()
	}
	held = byID[full]

	// The switch back, with requests still coming, slowly: a new
	// connection every 20 ms.
	var trickleOK, trickleFailed atomic.Int64
	stopTrickle := make(chan struct{})
	trickleDone := make(chan struct{})
	go func() {
		defer close(trickleDone)
		for {
			select {
			case <-stopTrickle:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c, err := net.DialTimeout("tcp", p.Addr, 20*time.Second)
			if err == nil {
				_, _, err = (&rawConn{c: c, br: bufio.NewReader(c)}).get("/pid")
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			if err != nil {
				trickleFailed.Add(1)
				continue
			}
			trickleOK.Add(1)
		}
	}()
	l.finish(t) // fails on any failed request
	p.WaitMsg(30*time.Second, msgPass)
	after := trickleOK.Load()
	p.Eventually(10*time.Second, "requests served after the switch back", func() bool { return trickleOK.Load() >= after+5 })
	close(stopTrickle)
	<-trickleDone
	if trickleFailed.Load() > 0 || trickleOK.Load() == 0 {
		t.Fatalf("requests across the switch back: %d ok, %d failed; want none failed", trickleOK.Load(), trickleFailed.Load())
	}
	passes(1)
	mfs, _ := scrape(t, admin)
	if v, _ := mfs.value("herd_balance_switches_total", map[string]string{"policy": "auto"}); v < 2 {
		t.Errorf("herd_balance_switches_total = %v, want at least 2 (to the workers and back)", v)
	}
	p.Eventually(20*time.Second, fmt.Sprintf("worker %d reporting no connection", empty), func() bool {
		for _, w := range status(t, p).Workers {
			if w.ID == empty && w.Conns != 0 {
				return false
			}
		}
		return true
	})
	for i := range held {
		rc := dialFrom(t, p.Addr, "")
		id, _, err := rc.get("/pid")
		if err != nil {
			t.Fatal(err)
		}
		if id != empty {
			t.Fatalf("new connection %d of %d went to worker %d, which holds %d connections it accepted itself; want worker %d, which holds none",
				i+1, len(held), id, len(held), empty)
		}
	}
	for _, rc := range held {
		if _, _, err := rc.get("/pid"); err != nil {
			t.Fatalf("a directly accepted keep-alive connection failed after the switch back: %v", err)
		}
	}
}
