package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/admin"
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := admin.NewClient(p.ControlSocket).Status(ctx)
	if err != nil {
		t.Fatalf("status over the control socket: %v", err)
	}
	return s
}

// Issue 13's kill storm: 20 SIGKILLs of a random serving worker, at least
// 500 ms apart, under load. A killed worker is replaced at once, so the
// longest time without any answer, and the time back to every worker
// ready after the last kill, stay within a few times what one worker takes
// to start on this machine (measured first: the test holds on a loaded
// machine, where a start takes seconds). Before the fix each kill of a
// worker younger than 10 s lengthened a backoff (100 ms, 200 ms, ... 25 s),
// and no worker served for about half the storm.
func TestKillStormKeepsServing(t *testing.T) {
	const workers = 2
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(60 * time.Second)
	l := startLoad(t, p.URL+"/", 4)
	killed := map[int]bool{} // the primary may not have noticed yet
	ready := func() []int {
		var pids []int
		for pid := range readyPIDs(controlStatus(t, p)) {
			if !killed[pid] {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	kill := func(pid int) {
		killed[pid] = true
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// How long one worker takes to come back here and now.
	t0 := time.Now()
	kill(ready()[0])
	herdtest.WaitUntil(t, 60*time.Second, "the first killed worker replaced", func() bool { return len(ready()) == workers })
	startup := time.Since(t0)
	bound := max(5*time.Second, 5*startup)

	pr := startProber(p.URL)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	for range 20 {
		next := time.Now().Add(500 * time.Millisecond)
		var pids []int
		herdtest.WaitUntil(t, bound, "a ready worker to kill", func() bool { pids = ready(); return len(pids) > 0 })
		kill(pids[rnd.IntN(len(pids))])
		time.Sleep(time.Until(next)) // the storm's pace, not a wait for a condition
	}
	last := time.Now()
	var back time.Duration
	herdtest.WaitUntil(t, bound, "every worker ready again after the storm", func() bool {
		if len(ready()) == workers {
			back = time.Since(last)
			return true
		}
		return false
	})
	worst, answers := pr.halt()
	l.halt()
	t.Logf("chaos: kill storm: 20 SIGKILLs 500 ms apart; longest time without an answer %v (%d answers); back to %d ready %v after the last kill (one restart alone: %v); load: %d ok, %d failed",
		worst.Round(time.Millisecond), answers, workers, back.Round(time.Millisecond), startup.Round(time.Millisecond), l.ok.Load(), l.failed.Load())
	// A kill may hit the one ready worker while the other is still
	// starting: then nothing serves until that start completes, however
	// fast the supervisor. So the gap is judged against the slowest start
	// of the storm (from the log's timestamps: a measure, not a state).
	slowest := slowestStart(t, p)
	t.Logf("chaos: kill storm: slowest worker start during the storm %v", slowest.Round(time.Millisecond))
	if limit := max(bound, 2*slowest+time.Second); worst > limit {
		t.Errorf("no worker answered for %v during the storm, want at most %v (5 × one restart's %v, or twice the slowest start %v, + 1 s)", worst, limit, startup, slowest)
	}
	if n := len(p.Find(func(r herdtest.Record) bool { return strings.Contains(r.Msg(), "backing off") })); n > 0 {
		t.Errorf("%d backoffs logged for workers killed from outside, want none", n)
	}
}

// slowestStart is the longest time a worker of p took from "worker
// started" to "worker listening".
func slowestStart(t *testing.T, p *herdtest.Proc) time.Duration {
	t.Helper()
	started := map[int]time.Time{}
	var worst time.Duration
	for _, r := range p.Records() {
		ts, err := time.Parse(time.RFC3339Nano, r.Str("time"))
		if err != nil {
			continue
		}
		switch r.Msg() {
		case "worker started":
			started[r.Int("pid")] = ts
		case "worker listening":
			if s, ok := started[r.Int("pid")]; ok {
				worst = max(worst, ts.Sub(s))
			}
		}
	}
	return worst
}
