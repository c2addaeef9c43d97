package herdtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/procstat"
)

// ParallelCPU proves that two workers compute at the same time, whatever
// else the machine runs: it sends CPU-bound requests (POST
// /cluster/cpu-intensive) to url, two at a time, while sampling the CPU
// time of the worker processes pids from /proc, until within one window
// of 300 ms or more at least two of them each used a tenth of the window
// or more. A cluster that serialises CPU work (one process, or every
// request on one worker) cannot do that, however idle the machine; a
// cluster that spreads it does, however busy the machine, because CPU
// time measures what a process ran, not what it waited. It fails only if
// that never happens within budget. It returns the evidence, with how
// many cores the workers used together in that window (above 1.0 only
// when the machine had two cores free at once).
func ParallelCPU(ctx context.Context, url string, pids []int, budget time.Duration) (string, error) {
	if len(pids) < 2 {
		return "", fmt.Errorf("herdtest: want 2 or more worker pids, got %v", pids)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	type sample struct {
		at  time.Time
		cpu []time.Duration
	}
	read := func() (sample, error) {
		s := sample{at: time.Now()}
		for _, pid := range pids {
			c, err := procstat.CPUTime(pid)
			if err != nil {
				return s, fmt.Errorf("herdtest: worker %d: %w", pid, err)
			}
			s.cpu = append(s.cpu, c)
		}
		return s, nil
	}
	// Load: two clients sending fib requests back to back on their own
	// connections, which the workers spread between them.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/cluster/cpu-intensive", bytes.NewReader([]byte(`{"n":36}`)))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	var samples []sample
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	best := 0.0
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("herdtest: in %s the workers %v never computed in the same window (at best %.2f cores together)", budget, pids, best)
		case <-tick.C:
		}
		s, err := read()
		if err != nil {
			return "", err
		}
		samples = append(samples, s)
		for _, old := range samples {
			wall := s.at.Sub(old.at)
			if wall < 300*time.Millisecond {
				break
			}
			var total time.Duration
			busy := 0
			for i := range pids {
				d := s.cpu[i] - old.cpu[i]
				total += d
				if d >= wall/10 {
					busy++
				}
			}
			cores := float64(total) / float64(wall)
			best = max(best, cores)
			if busy >= 2 {
				return fmt.Sprintf("workers %v computed in the same %s window, %.2f cores together", pids, wall.Round(time.Millisecond), cores), nil
			}
		}
		if len(samples) > 100 { // windows of up to 2 s are enough
			samples = samples[1:]
		}
	}
}

// ProveParallel starts herd with two workers and fails the test unless
// ParallelCPU proves they compute at the same time. Tests of a wall-clock
// verdict on parallelism call it when that verdict failed on a busy
// machine, instead of ignoring the failure.
func ProveParallel(t testing.TB) string {
	t.Helper()
	p := Start(t, Options{}, "serve", "--workers", "2")
	p.WaitReady(60 * time.Second)
	proof, err := ParallelCPU(context.Background(), p.URL, p.WorkerPIDs(), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return proof
}
