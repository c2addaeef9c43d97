package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
)

// prober asks /healthz over a new connection every few milliseconds and
// keeps the longest time between two answers: how long no worker served.
type prober struct {
	mu      sync.Mutex
	last    time.Time
	worst   time.Duration
	answers int
	stop    chan struct{}
	done    chan struct{}
}

func startProber(url string) *prober {
	pr := &prober{last: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(pr.done)
		for {
			select {
			case <-pr.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := client.Get(url + "/healthz")
			if err != nil {
				continue
			}
			resp.Body.Close()
			now := time.Now()
			pr.mu.Lock()
			pr.worst = max(pr.worst, now.Sub(pr.last))
			pr.last = now
			pr.answers++
			pr.mu.Unlock()
		}
	}()
	return pr
}

func (pr *prober) halt() (worst time.Duration, answers int) {
	close(pr.stop)
	<-pr.done
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.worst, pr.answers
}

// controlStatus asks the primary over its control socket, in this process.
func controlStatus(t *testing.T, p *herdtest.Proc) cluster.Status {
	t.Helper()
	port := p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cluster.Control(ctx, filepath.Join(herdtest.RuntimeDir(), "herd", "herd-"+port+".sock"), cluster.ControlRequest{Cmd: "status"})
	if err != nil || r.Status == nil {
		t.Fatalf("status over the control socket: %v %+v", err, r)
	}
	return *r.Status
}

// Issue 13's kill storm: 20 SIGKILLs of a random serving worker, one every
// 500 ms, under load. Some worker answers throughout (the longest time
// without an answer stays short), and the cluster is back to every worker
// ready soon after the last kill. Before the fix, each kill of a worker
// younger than 10 s lengthened a backoff, and no worker served for about
// half the storm.
func TestKillStormKeepsServing(t *testing.T) {
	const workers = 2
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(60 * time.Second)
	l := startLoad(t, p.URL+"/", 4)
	pr := startProber(p.URL)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills := 0
	for range 20 {
		var pids []int
		for pid := range readyPIDs(controlStatus(t, p)) {
			pids = append(pids, pid)
		}
		if len(pids) > 0 {
			_ = syscall.Kill(pids[rnd.IntN(len(pids))], syscall.SIGKILL)
			kills++
		}
		time.Sleep(500 * time.Millisecond) // the storm's own pace, not a wait for a condition
	}
	last := time.Now()
	var back time.Duration
	herdtest.WaitUntil(t, 5*time.Second, "every worker ready again after the storm", func() bool {
		if len(readyPIDs(controlStatus(t, p))) == workers {
			back = time.Since(last)
			return true
		}
		return false
	})
	worst, answers := pr.halt()
	l.halt()
	t.Logf("kill storm: %d SIGKILLs; longest time without an answer %v (%d answers); back to %d ready %v after the last kill; load: %d ok, %d failed",
		kills, worst.Round(time.Millisecond), answers, workers, back.Round(time.Millisecond), l.ok.Load(), l.failed.Load())
	if kills < 15 {
		t.Fatalf("only %d of 20 kills found a ready worker to kill", kills)
	}
	if worst > 3*time.Second {
		t.Errorf("no worker answered for %v during the storm, want a worker serving throughout", worst)
	}
	if n := len(p.Find(func(r herdtest.Record) bool { return strings.Contains(r.Msg(), "backing off") })); n > 0 {
		t.Errorf("%d backoffs logged for workers killed from outside, want none", n)
	}
}
