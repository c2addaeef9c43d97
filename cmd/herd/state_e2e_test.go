package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/redistest"
)

// backends are the ways to run herd's shared state, as flags.
func backends(t *testing.T) map[string][]string {
	redisURL, _ := redistest.Start(t)
	return map[string][]string{
		"embedded-memory": nil,
		"embedded-bbolt":  {"--state-file", filepath.Join(t.TempDir(), "state.db")},
		"redis":           {"--redis-url", redisURL},
	}
}

func TestCounterIsExactAcrossWorkersOnEveryBackend(t *testing.T) {
	for name, flags := range backends(t) {
		t.Run(name, func(t *testing.T) {
			p := herdtest.Start(t, herdtest.Options{}, append([]string{"serve", "--workers", "3"}, flags...)...)
			p.WaitReady(30 * time.Second)
			const clients, perClient = 100, 10
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
			var mu sync.Mutex
			var values []int
			workers := map[string]bool{}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range perClient {
						counter, pid, err := postCounter(client, p.URL)
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						values = append(values, counter)
						workers[pid] = true
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			sort.Ints(values)
			for i, v := range values {
				if v != i+1 {
					t.Fatalf("counter values are not exactly 1..%d: position %d holds %d (duplicate or gap)", len(values), i, v)
				}
			}
			if len(workers) < 2 {
				t.Errorf("only %d worker answered; the test needs the increments spread over workers", len(workers))
			}
		})
	}
}

func TestStateWrittenThroughOneWorkerIsReadThroughAnother(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	code, h, body := p.Do("POST", "/cluster/shared-state", `{"key":"greeting","value":{"msg":"hello","n":42}}`)
	if code != 200 {
		t.Fatalf("POST: %d %s", code, body)
	}
	writer := h.Get("X-Worker-Pid")
	nc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	p.Eventually(20*time.Second, "a read through the other worker", func() bool {
		resp, err := nc.Get(p.URL + "/cluster/shared-state/greeting")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Worker-Pid") == writer {
			return false
		}
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"value":{"msg":"hello","n":42}`) {
			t.Fatalf("read through another worker: %d %s", resp.StatusCode, b)
		}
		return true
	})
}

// The embedded store lives in the primary: killing every worker loses
// nothing, and their replacements read what the dead ones wrote.
func TestEmbeddedStateSurvivesTheCrashOfEveryWorker(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	for i := range 10 {
		if code, _, body := p.Do("POST", "/cluster/counter", ""); code != 200 {
			t.Fatalf("counter %d: %d %s", i+1, code, body)
		}
	}
	if code, _, body := p.Do("POST", "/cluster/shared-state", `{"key":"survivor","value":[1,2,3]}`); code != 200 {
		t.Fatalf("POST: %d %s", code, body)
	}
	old := p.WorkerPIDs()
	for _, pid := range old {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	p.Eventually(30*time.Second, "two new workers started", func() bool { return len(p.WorkerPIDs()) >= len(old)+2 })
	// Only a new worker can answer (the old ones are dead); until one is
	// serving, the connection waits in the shared socket's backlog.
	if code, _, body := p.Do("GET", "/cluster/shared-state/survivor", ""); code != 200 || !strings.Contains(string(body), `"value":[1,2,3]`) {
		t.Fatalf("after every worker was killed: %d %s, want the value written before", code, body)
	}
	code, _, body := p.Do("POST", "/cluster/counter", "")
	if code != 200 || !strings.Contains(string(body), `"counter":11`) {
		t.Errorf("counter after every worker was killed: %d %s, want 11", code, body)
	}
}

func TestAcknowledgedWritesSurviveSIGKILLOfThePrimary(t *testing.T) {
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "state.db")
	p := herdtest.Start(t, herdtest.Options{Dir: dir}, "serve", "--workers", "2", "--state-file", stateFile)
	p.WaitReady(30 * time.Second)
	addr := p.Addr

	var mu sync.Mutex
	acked := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				resp, err := client.Post(p.URL+"/cluster/shared-state", "application/json",
					strings.NewReader(fmt.Sprintf(`{"key":%q,"value":%d}`, key, i)))
				if err != nil {
					return // the primary is gone: stop writing
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked[key] = i
					mu.Unlock()
				}
			}
		}()
	}
	p.Eventually(30*time.Second, "300 acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300
	})
	_ = p.Cmd.Process.Kill() // SIGKILL, in the middle of the stream
	killedAt := time.Now()
	p.Wait(10 * time.Second)
	// Workers notice their primary is gone and exit; the port comes free.
	herdtest.WaitUntil(t, 10*time.Second, "the port free again", func() bool {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	})
	close(stop)
	wg.Wait()

	p2 := herdtest.Start(t, herdtest.Options{Dir: dir}, "serve", "--workers", "2", "--state-file", stateFile)
	p2.WaitReady(30 * time.Second)
	back := time.Since(killedAt)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged before SIGKILL", len(acked))
	for key, want := range acked {
		code, _, body := p2.Do("GET", "/cluster/shared-state/"+key, "")
		if code != 200 || !strings.Contains(string(body), `"value":`+strconv.Itoa(want)+`,`) {
			t.Fatalf("acknowledged write %s=%d lost after SIGKILL and restart: %d %s", key, want, code, body)
		}
	}
	t.Logf("chaos: SIGKILL primary (--state-file) under 16 writers: %d acknowledged writes, every one read back after a restart (serving again %v after the kill)",
		len(acked), back.Round(time.Millisecond))
}

func TestRedisGoneAnswers503AndRecovers(t *testing.T) {
	const password = "s3cret-pw"
	redisURL, stopRedis := redistest.StartWith(t, redistest.Options{Password: password})
	port := redisURL[strings.LastIndexByte(redisURL, ':')+1 : strings.LastIndexByte(redisURL, '/')]
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--redis-url", redisURL)
	p.WaitReady(30 * time.Second)
	if code, _, body := p.Do("POST", "/cluster/shared-state", `{"key":"k","value":1}`); code != 200 {
		t.Fatalf("POST with Redis up: %d %s", code, body)
	}
	stopRedis()
	start := time.Now()
	code, _, body := p.Do("POST", "/cluster/shared-state", `{"key":"k","value":2}`)
	failFast := time.Since(start)
	if code != 503 || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("POST with Redis down: %d %s, want 503 with a JSON error", code, body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a request with Redis down took %v; it must fail fast, not hang", took)
	}
	if strings.Contains(string(body), password) {
		t.Errorf("the Redis password leaked into a response: %s", body)
	}
	p2, _ := strconv.Atoi(port)
	redistest.StartWith(t, redistest.Options{Port: p2, Password: password})
	restarted := time.Now()
	p.Eventually(20*time.Second, "shared state back after Redis returns", func() bool {
		code, _, _ := p.Do("POST", "/cluster/shared-state", `{"key":"k","value":3}`)
		return code == 200
	})
	t.Logf("chaos: Redis stopped and restarted: a write with Redis down answered 503 (JSON error) in %v; writes back to 200 %v after Redis restarted",
		failFast.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	if len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker died" })) > 0 {
		t.Error("a worker died while Redis was away; Redis being down must not crash workers")
	}
	if strings.Contains(p.Output(), password) {
		t.Error("the Redis password appears in herd's log")
	}
}

func TestRedisDownAtStartStillServes(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--redis-url", "redis://"+dead+"/0")
	p.WaitReady(30 * time.Second)
	if code, _, _ := p.Do("GET", "/", ""); code != 200 {
		t.Fatalf("GET / with Redis down: %d", code)
	}
	for range 20 {
		if code, _, body := p.Do("POST", "/cluster/counter", ""); code != 503 {
			t.Fatalf("POST /cluster/counter with Redis down: %d %s, want 503", code, body)
		}
	}
	// herd says Redis is down in its own words, rate-limited; the Redis
	// client's line per failed connection would flood the log.
	p.WaitMsg(10*time.Second, "shared state backend unavailable")
	if raw := p.Find(func(r herdtest.Record) bool { return r.Msg() == "worker output" }); len(raw) > 0 {
		t.Errorf("%d raw lines from the workers' stderr with Redis down, want none; first: %v", len(raw), raw[0])
	}
}

func TestBadStoreSettingsExit2(t *testing.T) {
	cases := map[string][]string{
		"state file in a missing directory": {"--state-file", filepath.Join(t.TempDir(), "no", "such", "dir", "s.db")},
		"malformed redis url":               {"--redis-url", "http://user:hunter2@nowhere"},
		"both backends":                     {"--state-file", "s.db", "--redis-url", "redis://127.0.0.1:1/0"},
	}
	for name, flags := range cases {
		cmd := exec.Command(herdtest.Binary(t), append([]string{"serve", "--port", "0", "--host", "127.0.0.1"}, flags...)...)
		cmd.Dir = t.TempDir()
		out, _ := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if cmd.ProcessState.ExitCode() != 2 || len(lines) != 1 {
			t.Errorf("%s: exit %d, output %q; want exit 2 and one line", name, cmd.ProcessState.ExitCode(), out)
		}
		if strings.Contains(string(out), "hunter2") {
			t.Errorf("%s: the password appears in the error: %q", name, out)
		}
	}
}

// postCounter sends one POST /cluster/counter and returns the counter it
// answered and the pid of the worker that answered.
func postCounter(client *http.Client, base string) (counter int, pid string, err error) {
	resp, err := client.Post(base+"/cluster/counter", "application/json", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body struct {
		Counter int `json:"counter"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("POST %s/cluster/counter: %d %v", base, resp.StatusCode, err) //nolint:errorlint // err is nil when only the status is wrong
	}
	return body.Counter, resp.Header.Get("X-Worker-Pid"), nil
}
