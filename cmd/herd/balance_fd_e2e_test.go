package main

import (
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/internal/herdtest"
)

// A worker out of descriptors cannot receive a passed connection (the
// kernel truncates SCM_RIGHTS). It says so to the primary at once, which
// passes the connection to the other worker and passes that worker none
// until it has room: with one worker's descriptor limit lowered (prlimit)
// to a few above what it holds, many connections opened at once are all
// served, by the other worker, none waiting more than two seconds. (Before
// the nack stopped the primary choosing it, the starved worker was passed
// every other connection and refused them one by one behind a growing
// back-off: the last waited seconds.)
func TestWorkerOutOfDescriptorsPassesConnectionsOn(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--balance", "least-conn")
	p.WaitReady(30 * time.Second)
	pids := p.WorkerPIDs()
	if len(pids) != 2 {
		t.Fatalf("worker pids %v, want 2", pids)
	}
	starved := pids[0]
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(starved) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(len(ents) + 4) //nolint:gosec // G115: a count of open descriptors
	if err := unix.Prlimit(starved, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("prlimit on worker %d: %v", starved, err)
	}

	const n = 60
	type result struct {
		pid  int
		took time.Duration
		err  error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			rc := dialFrom(t, p.Addr, "")
			_, pid, err := rc.get("/pid")
			res[i] = result{pid: pid, took: time.Since(start), err: err}
		}()
	}
	wg.Wait()
	perPID := map[int]int{}
	var slowest time.Duration
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("connection %d: %v", i+1, r.err)
		}
		perPID[r.pid]++
		slowest = max(slowest, r.took)
	}
	t.Logf("%d keep-alive connections at once, worker %d limited to %d descriptors: served by %v, the slowest in %v", n, starved, limit, perPID, slowest)
	if perPID[starved] > 4 {
		t.Errorf("the starved worker holds %d connections with %d descriptors", perPID[starved], limit)
	}
	if slowest > 2*time.Second {
		t.Errorf("a connection waited %v for a worker with room, want under 2s", slowest)
	}
}
