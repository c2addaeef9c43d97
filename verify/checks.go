package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// spreadConcurrency is how many distribution requests are in flight at
	// once: a few, as real clients send them, so that idle workers compete
	// for connections.
	spreadConcurrency = 4
	// localRequests is how many sequential requests the local-state check
	// sends.
	localRequests = 40
	// findOtherWorker and findOtherTries bound the search for a second
	// worker (shared state, a replacement serving): with two workers or
	// more, a few new connections find one.
	findOtherWorker = 5 * time.Second
	findOtherTries  = 100
	// cpuTarget is how long one CPU-bound request should take alone: long
	// enough that scheduling noise is small next to it, short enough to
	// keep verify quick.
	cpuTarget = 450 * time.Millisecond
	// cpuMinN and cpuMaxN bound the calibrated Fibonacci number (the app
	// accepts up to 45, which takes many seconds).
	cpuMinN, cpuMaxN = 30, 42
	// cpuAttempts and cpuBudget bound the attempts that absorb scheduling
	// noise on a busy machine.
	cpuAttempts = 4
	cpuBudget   = 10 * time.Second
	// cpuStagger spaces the simultaneous requests. Connections arriving
	// within the same microseconds tend to be accepted by whichever worker
	// wakes first, all of them (check 2 is about how connections spread);
	// a few milliseconds apart, an idle worker takes the next one, and the
	// check measures whether the workers compute in parallel.
	cpuStagger = 5 * time.Millisecond
	// slowSumN is the slow request of the shutdown check: /api/{n} clamps
	// n here, a loop of seconds on any current CPU.
	slowSumN = 5_000_000_000
	// slowSum is 0+1+…+slowSumN.
	slowSum = "12500000002500000000"
	// writtenToSignal is how long the shutdown check waits between the slow
	// request leaving and SIGTERM, time enough for a worker to accept and
	// read it: the request is then in flight, not racing the signal to the
	// worker's accept (a connection still in the backlog at shutdown is
	// not one herd promises to serve).
	writtenToSignal = 300 * time.Millisecond
)

func (r *runner) answers(ctx context.Context) Check {
	resp, err := r.c.do(ctx, http.MethodGet, "/", nil, 0, nil)
	if err != nil {
		r.unreachable = err.Error()
		return fail("%v", err)
	}
	if resp.status != http.StatusOK || string(resp.body) != "Hello World!" {
		return fail("GET / → %s from %s, want 200 \"Hello World!\"", resp.summary(), resp.who())
	}
	return pass("GET / → 200 \"Hello World!\" from %s", resp.who())
}

func (r *runner) distribution(ctx context.Context) Check {
	n := r.opts.Requests
	var (
		mu       sync.Mutex
		ids      []string
		failed   int
		firstErr string
		wg       sync.WaitGroup
	)
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	for range min(spreadConcurrency, n) {
		wg.Go(func() {
			for range jobs {
				resp, err := r.c.do(ctx, http.MethodGet, "/pid", nil, 0, nil)
				mu.Lock()
				switch {
				case err != nil:
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
				case resp.status != http.StatusOK:
					failed++
					if firstErr == "" {
						firstErr = "GET /pid → " + resp.summary()
					}
				default:
					ids = append(ids, resp.workerID())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" {
			seen[id] = true
		}
	}
	r.workersSeen = len(seen)
	return JudgeDistribution(ids, failed, firstErr)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}

func (r *runner) sharedState(ctx context.Context) Check {
	key := "herd-verify-" + randomHex(6)
	value := map[string]any{"writtenBy": "herd verify", "token": randomHex(8), "n": 42}
	body, _ := json.Marshal(map[string]any{"key": key, "value": value})
	set, err := r.c.do(ctx, http.MethodPost, "/cluster/shared-state", body, 0, nil)
	if err != nil {
		return fail("%v", err)
	}
	if set.status != http.StatusOK {
		return fail("POST /cluster/shared-state → %s", set.summary())
	}
	c := r.readElsewhere(ctx, key, value, set)
	// Delete through any worker; a failed delete is a failed check too.
	path := "/cluster/shared-state/" + key
	del, err := r.c.do(ctx, http.MethodDelete, path, nil, 0, nil)
	switch {
	case c.Status != Pass:
	case err != nil:
		c = fail("%s, but deleting the key failed: %v", c.Evidence, err)
	case del.status != http.StatusNoContent:
		c = fail("%s, but DELETE %s → %s, want 204", c.Evidence, path, del.summary())
	}
	return c
}

// readElsewhere reads key until a worker other than the one that stored it
// answers, and compares the value.
func (r *runner) readElsewhere(ctx context.Context, key string, want any, set *response) Check {
	writer := set.workerPID()
	if writer == 0 {
		return fail("POST /cluster/shared-state answered 200 without X-Worker-Pid: cannot tell which worker stored it")
	}
	path := "/cluster/shared-state/" + key
	deadline := time.Now().Add(findOtherWorker)
	for tries := 1; ; tries++ {
		get, err := r.c.do(ctx, http.MethodGet, path, nil, 0, nil)
		if err != nil {
			return fail("stored through %s; then %v", set.who(), err)
		}
		if get.status != http.StatusOK {
			return fail("stored through %s; then GET %s through %s → %s", set.who(), path, get.who(), get.summary())
		}
		var got struct {
			Value any `json:"value"`
		}
		if err := get.decode(&got); err != nil {
			return fail("stored through %s; GET %s through %s: %v", set.who(), path, get.who(), err)
		}
		if !sameJSON(got.Value, want) {
			g, _ := json.Marshal(got.Value)
			w, _ := json.Marshal(want)
			return fail("stored %s through %s, but %s read %s", w, set.who(), get.who(), g)
		}
		if pid := get.workerPID(); pid != 0 && pid != writer {
			return pass("stored through %s, read back equal through %s in %s", set.who(), get.who(), plural(tries, "read"))
		}
		if tries >= findOtherTries || time.Now().After(deadline) || ctx.Err() != nil {
			return fail("stored through %s, but only that worker answered %d reads: no other worker to read it", set.who(), tries)
		}
	}
}

// sameJSON compares two values as JSON documents.
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func (r *runner) localState(ctx context.Context) Check {
	var samples []LocalSample
	for range localRequests {
		resp, err := r.c.do(ctx, http.MethodGet, "/cluster/local-state", nil, 0, nil)
		if err != nil {
			return fail("%v", err)
		}
		if resp.status != http.StatusOK {
			return fail("GET /cluster/local-state → %s", resp.summary())
		}
		var body struct {
			RequestCount *int64 `json:"requestCount"`
		}
		if err := resp.decode(&body); err != nil {
			return fail("GET /cluster/local-state: %v", err)
		}
		if body.RequestCount == nil {
			return fail("GET /cluster/local-state: no requestCount in %s", snippet(resp.body))
		}
		if resp.workerID() == "" {
			return fail("GET /cluster/local-state answered without X-Worker-Id: cannot tell workers apart")
		}
		samples = append(samples, LocalSample{Worker: resp.workerID(), PID: resp.workerPID(), Count: *body.RequestCount})
	}
	return JudgeLocalState(samples)
}

// fibAnswer is what POST /cluster/cpu-intensive answers.
type fibAnswer struct {
	Calculation struct {
		Input  int    `json:"input"`
		Result uint64 `json:"result"`
	} `json:"calculation"`
}

// fibonacci returns the nth Fibonacci number, to check the server's.
func fibonacci(n int) uint64 {
	var a, b uint64 = 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}

// fib sends one POST /cluster/cpu-intensive and checks its answer.
func (r *runner) fib(ctx context.Context, n int) (*response, error) {
	body := []byte(fmt.Sprintf(`{"n":%d}`, n))
	// Generous: fib(cpuMaxN) takes seconds, and others may be queued.
	resp, err := r.c.do(ctx, http.MethodPost, "/cluster/cpu-intensive", body, 6*r.opts.Timeout, nil)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, fmt.Errorf("POST /cluster/cpu-intensive %s → %s", body, resp.summary())
	}
	var a fibAnswer
	if err := resp.decode(&a); err != nil {
		return nil, fmt.Errorf("POST /cluster/cpu-intensive %s: %w", body, err)
	}
	if a.Calculation.Input != n || a.Calculation.Result != fibonacci(n) {
		return nil, fmt.Errorf("POST /cluster/cpu-intensive %s → fib(%d) = %d, want fib(%d) = %d",
			body, a.Calculation.Input, a.Calculation.Result, n, fibonacci(n))
	}
	return resp, nil
}

// calibrate finds the Fibonacci number that takes about cpuTarget alone,
// and how long it took.
func (r *runner) calibrate(ctx context.Context) (int, time.Duration, error) {
	const phi = 1.618
	n := cpuMinN
	for {
		resp, err := r.fib(ctx, n)
		if err != nil {
			return 0, 0, err
		}
		if resp.took >= cpuTarget*2/3 || n >= cpuMaxN {
			return n, resp.took, nil
		}
		// Each step of n costs about phi times more.
		steps := int(math.Round(math.Log(float64(cpuTarget)/float64(max(resp.took, time.Millisecond))) / math.Log(phi)))
		n = min(n+max(steps, 1), cpuMaxN)
	}
}

func (r *runner) parallel(ctx context.Context) Check {
	n, took, err := r.calibrate(ctx)
	if err != nil {
		return fail("%v", err)
	}
	run := ParallelRun{N: n, Alone: took, Tries: 1}
	w := max(r.workersSeen, 2)
	attempts := 1
	if r.workersSeen >= 2 {
		attempts = cpuAttempts
	}
	deadline := time.Now().Add(cpuBudget)
	var c Check
	notSpread, tried := 0, 0
	for {
		if tried > 0 { // one more request alone, for a better estimate
			resp, err := r.fib(ctx, n)
			if err != nil {
				return fail("%v", err)
			}
			run.Alone = min(run.Alone, resp.took)
			run.Tries++
		}
		tried++
		if run.Wall, run.Workers, err = r.fibAtOnce(ctx, n, w); err != nil {
			return fail("%v", err)
		}
		c = JudgeParallel(run)
		if c.Status == Pass || tried >= attempts || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if len(distinct(run.Workers)) < 2 {
			notSpread++
		}
	}
	switch {
	case c.Status == Pass && notSpread > 0:
		c.Evidence += fmt.Sprintf(" (attempt %d: in %d before, all went to one worker)", tried, notSpread)
	case c.Status == Pass && tried > 1:
		c.Evidence += fmt.Sprintf(" (attempt %d)", tried)
	case c.Status == Fail && tried > 1:
		c.Evidence += fmt.Sprintf(" (the last of %d attempts)", tried)
	}
	return c
}

func distinct(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// fibAtOnce sends w requests at once, each on its own connection, and
// returns the time until the last answer and who served each.
func (r *runner) fibAtOnce(ctx context.Context, n, w int) (time.Duration, []string, error) {
	type result struct {
		resp *response
		err  error
	}
	results := make([]result, w)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range w {
		if i > 0 {
			sleep(ctx, cpuStagger)
		}
		wg.Go(func() {
			resp, err := r.fib(ctx, n)
			results[i] = result{resp, err}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	var ids []string
	for _, res := range results {
		if res.err != nil {
			return 0, nil, res.err
		}
		ids = append(ids, res.resp.workerID())
	}
	return wall, ids, nil
}

// workersList is what GET /cluster/workers answers.
type workersList struct {
	Workers []struct {
		ID    int    `json:"id"`
		PID   int    `json:"pid"`
		State string `json:"state"`
	} `json:"workers"`
}

func (r *runner) workers(ctx context.Context) (*workersList, error) {
	resp, err := r.c.do(ctx, http.MethodGet, "/cluster/workers", nil, 0, nil)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, fmt.Errorf("GET /cluster/workers → %s", resp.summary())
	}
	var l workersList
	if err := resp.decode(&l); err != nil {
		return nil, fmt.Errorf("GET /cluster/workers: %w", err)
	}
	return &l, nil
}

func (r *runner) crash(ctx context.Context) Check {
	before, _ := r.workers(ctx) // to find the crashed worker if its answer is lost
	resp, err := r.c.do(ctx, http.MethodPost, "/cluster/crash", nil, 0, nil)
	start := time.Now()
	var id, pid int
	switch {
	case err != nil && before == nil:
		return fail("%v", err)
	case err != nil:
		// The answer was lost; the worker whose pid changes is the one.
	case resp.status == http.StatusNotFound:
		return skip("crash endpoint disabled (start herd with --enable-crash-endpoint): POST /cluster/crash → %s", resp.summary())
	case resp.status != http.StatusOK:
		return fail("POST /cluster/crash → %s, want 200", resp.summary())
	default:
		id, _ = strconv.Atoi(resp.workerID())
		pid = resp.workerPID()
		var body struct {
			WorkerID int `json:"workerId"`
			PID      int `json:"pid"`
		}
		if resp.decode(&body) == nil && body.PID != 0 {
			id, pid = body.WorkerID, body.PID
		}
		if pid == 0 {
			return fail("POST /cluster/crash → %s without naming the worker (no X-Worker-Pid, no pid in the body)", resp.summary())
		}
	}
	crashed := fmt.Sprintf("worker %d (pid %d)", id, pid)

	// Wait until the primary lists the same id with a new pid, ready.
	crashErr := err
	deadline := start.Add(r.opts.CrashTimeout)
	var newPID int
	var lastErr error
	for {
		l, err := r.workers(ctx)
		if err != nil {
			lastErr = err // a request can meet the dying worker
		} else if newPID = replacement(l, before, &id, &pid); newPID != 0 {
			crashed = fmt.Sprintf("worker %d (pid %d)", id, pid)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			switch {
			case pid == 0:
				return fail("POST /cluster/crash got no answer (%v) and no worker was replaced within %s", crashErr, r.opts.CrashTimeout)
			case err != nil:
				return fail("%s crashed; no replacement seen within %s (last: %v)", crashed, r.opts.CrashTimeout, lastErr)
			}
			return fail("%s crashed; /cluster/workers showed no ready replacement for worker %d within %s", crashed, id, r.opts.CrashTimeout)
		}
		sleep(ctx, 50*time.Millisecond)
	}
	ready := time.Since(start)

	// And it serves: new connections until the new pid answers one.
	served := time.Now().Add(findOtherWorker)
	for tries := 1; ; tries++ {
		resp, err := r.c.do(ctx, http.MethodGet, "/pid", nil, 0, nil)
		if err == nil && resp.status == http.StatusOK && resp.workerPID() == newPID {
			return pass("%s crashed on request; worker %d came back as pid %d, ready after %s, and served a request after %s",
				crashed, id, newPID, secs(ready), secs(time.Since(start)))
		}
		if tries >= findOtherTries || time.Now().After(served) || ctx.Err() != nil {
			return fail("%s crashed; its replacement pid %d was ready after %s but served none of %d requests",
				crashed, newPID, secs(ready), tries)
		}
	}
}

// serving reports whether a /cluster/workers state means "serving": the
// reference's "online", which herd answers, or "ready", which herd answered
// before it followed the reference.
func serving(state string) bool { return state == "online" || state == "ready" }

// replacement returns the new pid of the crashed worker once l shows it
// ready, or 0. When the crash answer was lost (*pid == 0), it finds the
// crashed worker as the one whose pid differs from before, and sets *id
// and *pid.
func replacement(l, before *workersList, id, pid *int) int {
	if *pid == 0 && before != nil {
		for _, b := range before.Workers {
			for _, w := range l.Workers {
				if w.ID == b.ID && w.PID != b.PID && serving(w.State) {
					*id, *pid = b.ID, b.PID
					return w.PID
				}
			}
		}
		return 0
	}
	for _, w := range l.Workers {
		if w.ID == *id && w.PID != *pid && w.PID != 0 && serving(w.State) {
			return w.PID
		}
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (r *runner) shutdown(ctx context.Context) Check {
	cl := r.opts.Cluster
	if cl == nil {
		return skip("only for a cluster herd verify starts itself (run herd verify without a URL)")
	}
	wrote := make(chan struct{})
	var once sync.Once
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) }}
	type result struct {
		resp *response
		err  error
	}
	done := make(chan result, 1)
	path := "/api/" + strconv.Itoa(slowSumN)
	go func() {
		resp, err := r.c.do(ctx, http.MethodGet, path, nil, 6*r.opts.Timeout, trace)
		done <- result{resp, err}
	}()
	select {
	case <-wrote:
	case res := <-done:
		return fail("the slow request ended before it was written: %v", res.err)
	}
	sleep(ctx, writtenToSignal)
	select {
	case res := <-done:
		return fail("GET %s finished (%v) before SIGTERM could be sent: nothing was in flight", path, res.err)
	default:
	}
	signalled := time.Now()
	if err := cl.Signal(syscall.SIGTERM); err != nil {
		return fail("sending SIGTERM to the primary (pid %d): %v", cl.PID(), err)
	}
	res := <-done
	var c Check
	switch {
	case res.err != nil:
		c = fail("GET %s in flight at SIGTERM got no answer: %v", path, res.err)
	case res.resp.status != http.StatusOK:
		c = fail("GET %s in flight at SIGTERM → %s, want 200", path, res.resp.summary())
	case string(res.resp.body) != fmt.Sprintf("Final count is %s %d", slowSum, res.resp.workerPID()):
		c = fail("GET %s in flight at SIGTERM → 200 %s, want \"Final count is %s %d\"", path, snippet(res.resp.body), slowSum, res.resp.workerPID())
	}
	answered := time.Since(signalled)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	code, err := cl.Wait(wctx)
	exited := time.Since(signalled)
	switch {
	case err != nil:
		return fail("%s; the primary had not exited %s after SIGTERM", orOK(c, "the in-flight request completed"), secs(exited))
	case code != 0:
		return fail("%s; the primary exited with code %d, want 0", orOK(c, "the in-flight request completed"), code)
	case c.Status == Fail:
		return fail("%s; the primary exited 0 %s after SIGTERM", c.Evidence, secs(exited))
	}
	return pass("GET %s in flight at SIGTERM completed 200 with the right sum %s later (served by %s); the primary exited 0 after %s",
		path, secs(answered), res.resp.who(), secs(exited))
}

// orOK returns c's evidence when it failed, otherwise ok.
func orOK(c Check, ok string) string {
	if c.Status == Fail {
		return c.Evidence
	}
	return ok
}
