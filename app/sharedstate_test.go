package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const testWorkerID = 3

// server serves the app over real HTTP on loopback with st as its store.
func server(t *testing.T, st store.Store) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	a := app.New(app.Options{
		WorkerID: testWorkerID,
		Store:    st,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, logs
}

type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: %d with a body that is not a JSON object: %q", method, path, resp.StatusCode, raw)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %s: Content-Type %q, want JSON", method, path, ct)
		}
	}
	return r
}

func (r reply) want(t *testing.T, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.raw)
	}
	if status >= 400 && status != http.StatusNotFound {
		if msg, _ := r.body["error"].(string); msg == "" {
			t.Fatalf("status %d without an error message: %s", status, r.raw)
		}
	}
	return r
}

// field returns the JSON encoding of a field of the reply.
func (r reply) field(t *testing.T, name string) string {
	t.Helper()
	v, ok := r.body[name]
	if !ok {
		t.Fatalf("reply has no %q: %s", name, r.raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (r reply) checkWorker(t *testing.T) {
	t.Helper()
	want := fmt.Sprintf(`{"id":%d,"pid":%d}`, testWorkerID, os.Getpid())
	if got := r.field(t, "worker"); got != want {
		t.Fatalf("worker = %s, want %s", got, want)
	}
}

func newBolt(t *testing.T) store.Store {
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newRedis(t *testing.T) store.Store {
	u, _ := redistest.Start(t)
	s, err := store.NewRedis(u, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// backends are the stores every route test runs against.
var backends = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"memory", func(t *testing.T) store.Store { return store.NewMemory() }},
	{"bbolt", newBolt},
	{"redis", newRedis},
}

func TestSharedStateRoutes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st := b.open(t)
			srv, _ := server(t, st)

			// The reference's word for a value stored in Redis.
			action := `"stored"`
			if b.name == "redis" {
				action = `"stored_in_redis"`
			}
			for i, value := range []string{`{"hello":"world","n":[1,2,3]}`, `"text"`, `42`, `[true,null]`, `null`, `false`} {
				r := do(t, srv, "POST", "/cluster/shared-state", fmt.Sprintf(`{"key":"k%d","value":%s}`, i, value)).want(t, 200)
				r.checkWorker(t)
				for name, want := range map[string]string{
					"action": action, "backend": strconv.Quote(st.Backend()),
					"key": fmt.Sprintf(`"cluster:k%d"`, i), "value": value,
				} {
					if got := r.field(t, name); got != want {
						t.Errorf("POST value %s: %s = %s, want %s", value, name, got, want)
					}
				}
				if msg, _ := r.body["message"].(string); msg == "" {
					t.Errorf("POST: no message: %s", r.raw)
				}
				g := do(t, srv, "GET", fmt.Sprintf("/cluster/shared-state/k%d", i), "").want(t, 200)
				g.checkWorker(t)
				if got := g.field(t, "value"); got != value {
					t.Errorf("GET value = %s, want %s", got, value)
				}
				if g.field(t, "found") != "true" || g.field(t, "key") != fmt.Sprintf(`"cluster:k%d"`, i) {
					t.Errorf("GET = %s", g.raw)
				}
			}

			// Overwrite, pretty-printed input stored compact.
			do(t, srv, "POST", "/cluster/shared-state", "{\n  \"key\": \"k0\",\n  \"value\": { \"v\" : 2 }\n}\n").want(t, 200)
			if got := do(t, srv, "GET", "/cluster/shared-state/k0", "").want(t, 200).field(t, "value"); got != `{"v":2}` {
				t.Errorf("GET after overwrite = %s", got)
			}

			// Not found.
			nf := do(t, srv, "GET", "/cluster/shared-state/absent", "").want(t, 404)
			nf.checkWorker(t)
			if nf.field(t, "found") != "false" || nf.field(t, "key") != `"cluster:absent"` {
				t.Errorf("GET absent = %s", nf.raw)
			}
			if msg, _ := nf.body["message"].(string); msg == "" {
				t.Errorf("GET absent: no message: %s", nf.raw)
			}

			// Delete.
			d := do(t, srv, "DELETE", "/cluster/shared-state/k1", "").want(t, 204)
			if d.raw != "" {
				t.Errorf("DELETE 204 with a body: %q", d.raw)
			}
			do(t, srv, "GET", "/cluster/shared-state/k1", "").want(t, 404)
			dd := do(t, srv, "DELETE", "/cluster/shared-state/k1", "").want(t, 404)
			if dd.field(t, "found") != "false" {
				t.Errorf("DELETE absent = %s", dd.raw)
			}

			// Counter.
			for want := 1; want <= 3; want++ {
				c := do(t, srv, "POST", "/cluster/counter", "").want(t, 200)
				c.checkWorker(t)
				if got := c.field(t, "counter"); got != strconv.Itoa(want) {
					t.Fatalf("counter = %s, want %d", got, want)
				}
				if got := c.field(t, "backend"); got != strconv.Quote(st.Backend()) {
					t.Fatalf("backend = %s", got)
				}
			}
			// The counter is a shared-state key like any other.
			if got := do(t, srv, "GET", "/cluster/shared-state/counter", "").want(t, 200).field(t, "value"); got != "3" {
				t.Errorf("GET counter = %s, want 3", got)
			}
			do(t, srv, "POST", "/cluster/shared-state", `{"key":"counter","value":"not a number"}`).want(t, 200)
			do(t, srv, "POST", "/cluster/counter", "").want(t, http.StatusConflict)
			do(t, srv, "DELETE", "/cluster/shared-state/counter", "").want(t, 204)
			if got := do(t, srv, "POST", "/cluster/counter", "").want(t, 200).field(t, "counter"); got != "1" {
				t.Errorf("counter after reset = %s, want 1", got)
			}
		})
	}
}

func TestSharedStateBadInput(t *testing.T) {
	srv, _ := server(t, store.NewMemory())
	long := strings.Repeat("k", app.MaxSharedKeyLen)
	maxValue := `"` + strings.Repeat("v", app.MaxSharedValue-2) + `"` // exactly 64 KiB of JSON
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		errorHas                 string
	}{
		{"empty body", "POST", "/cluster/shared-state", "", 400, "empty"},
		{"malformed", "POST", "/cluster/shared-state", `{"key":`, 400, "malformed"},
		{"not JSON", "POST", "/cluster/shared-state", `key=a&value=b`, 400, "malformed"},
		{"array", "POST", "/cluster/shared-state", `[1,2]`, 400, "JSON object"},
		{"string body", "POST", "/cluster/shared-state", `"x"`, 400, "JSON object"},
		{"missing key", "POST", "/cluster/shared-state", `{"value":1}`, 400, `missing "key"`},
		{"missing value", "POST", "/cluster/shared-state", `{"key":"a"}`, 400, `missing "value"`},
		{"key not a string", "POST", "/cluster/shared-state", `{"key":5,"value":1}`, 400, "key must be a JSON string"},
		{"empty key", "POST", "/cluster/shared-state", `{"key":"","value":1}`, 400, "key is empty"},
		{"space in key", "POST", "/cluster/shared-state", `{"key":"a b","value":1}`, 400, "position 2"},
		{"slash in key", "POST", "/cluster/shared-state", `{"key":"a/b","value":1}`, 400, "not allowed"},
		{"non-ASCII key", "POST", "/cluster/shared-state", `{"key":"clé","value":1}`, 400, "not allowed"},
		{"glob in key", "POST", "/cluster/shared-state", `{"key":"a*","value":1}`, 400, "not allowed"},
		{"dot key", "POST", "/cluster/shared-state", `{"key":".","value":1}`, 400, "names no key in a URL"},
		{"dot-dot key", "POST", "/cluster/shared-state", `{"key":"..","value":1}`, 400, "names no key in a URL"},
		{"key too long", "POST", "/cluster/shared-state", `{"key":"` + long + `k","value":1}`, 400, "257 characters"},
		{"trailing garbage", "POST", "/cluster/shared-state", `{"key":"a","value":1} xyz`, 400, "invalid character"},
		{"two objects", "POST", "/cluster/shared-state", `{"key":"a","value":1}{"key":"b","value":2}`, 400, "unexpected data"},
		{"value over 64 KiB", "POST", "/cluster/shared-state", `{"key":"a","value":"` + strings.Repeat("v", app.MaxSharedValue-1) + `"}`, 413, "at most 65536"},
		{"body far over the cap", "POST", "/cluster/shared-state", `{"key":"a","value":"` + strings.Repeat("v", 1<<20) + `"}`, 413, "larger than"},
		{"GET bad key", "GET", "/cluster/shared-state/a%20b", "", 400, "not allowed"},
		{"GET key too long", "GET", "/cluster/shared-state/" + long + "k", "", 400, "257 characters"},
		{"DELETE bad key", "DELETE", "/cluster/shared-state/a*b", "", 400, "not allowed"},
		{"key of 256 characters", "POST", "/cluster/shared-state", `{"key":"` + long + `","value":1}`, 200, ""},
		{"value of exactly 64 KiB", "POST", "/cluster/shared-state", `{"key":"big","value":` + maxValue + `}`, 200, ""},
		{"unknown fields ignored", "POST", "/cluster/shared-state", `{"key":"a","value":1,"ttl":5}`, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.body).want(t, c.status)
			if c.errorHas != "" {
				if msg, _ := r.body["error"].(string); !strings.Contains(msg, c.errorHas) {
					t.Fatalf("error %q, want it to say %q", msg, c.errorHas)
				}
			}
		})
	}
	if got := do(t, srv, "GET", "/cluster/shared-state/big", "").want(t, 200).field(t, "value"); got != maxValue {
		t.Fatalf("64 KiB value came back as %d bytes", len(got))
	}
}

func TestSharedStateNotConfigured(t *testing.T) {
	srv, _ := server(t, nil)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/cluster/shared-state", `{"key":"a","value":1}`},
		{"GET", "/cluster/shared-state/a", ""},
		{"DELETE", "/cluster/shared-state/a", ""},
		{"POST", "/cluster/counter", ""},
	} {
		r := do(t, srv, c.method, c.path, c.body).want(t, 503)
		if r.raw != `{"error":"shared state is not configured"}`+"\n" {
			t.Errorf("%s %s = %q", c.method, c.path, r.raw)
		}
	}
}

// TestSharedStateStoreBroken: a store error that is not "unavailable" is a
// 500 with a generic message, logged in detail.
func TestSharedStateStoreBroken(t *testing.T) {
	st := store.NewMemory()
	srv, logs := server(t, st)
	st.Close() // every call now fails with ErrClosed
	r := do(t, srv, "POST", "/cluster/counter", "").want(t, 500)
	if strings.Contains(r.raw, "closed") {
		t.Errorf("500 body leaks the internal error: %s", r.raw)
	}
	if !strings.Contains(logs.String(), store.ErrClosed.Error()) {
		t.Errorf("log does not hold the detail; log: %s", logs.String())
	}
}

func TestSharedStateRedisDownAndBack(t *testing.T) {
	const password = "Route-S3cret-pw"
	u, stop := redistest.StartWith(t, redistest.Options{Password: password})
	st, err := store.NewRedis(u, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, logs := server(t, st)
	do(t, srv, "POST", "/cluster/counter", "").want(t, 200)

	stop()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/cluster/shared-state", `{"key":"a","value":1}`},
		{"GET", "/cluster/shared-state/a", ""},
		{"DELETE", "/cluster/shared-state/a", ""},
		{"POST", "/cluster/counter", ""},
	} {
		start := time.Now()
		r := do(t, srv, c.method, c.path, c.body).want(t, 503)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s %s took %v with Redis down", c.method, c.path, took)
		}
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "unavailable") {
			t.Errorf("%s %s: error %q, want it to say the backend is unavailable", c.method, c.path, msg)
		}
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", c.method, c.path)
		}
		if strings.Contains(r.raw, password) || strings.Contains(r.raw, "redis://") {
			t.Errorf("%s %s: body holds the URL or password: %s", c.method, c.path, r.raw)
		}
	}
	if l := logs.String(); strings.Contains(l, password) {
		t.Errorf("log holds the password: %s", l)
	} else if !strings.Contains(l, "unavailable") {
		t.Errorf("log does not mention the outage: %s", l)
	}

	pu, _ := url.Parse(u)
	port, _ := strconv.Atoi(pu.Port())
	redistest.StartWith(t, redistest.Options{Port: port, Password: password})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, srv, "POST", "/cluster/counter", "")
		if r.status == 200 {
			if got := r.field(t, "counter"); got != "1" { // a new, empty Redis
				t.Fatalf("counter after recovery = %s, want 1", got)
			}
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d %s", r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCounterConcurrent: 100 concurrent clients, N POSTs, the values
// 1..N exactly, on every backend.
func TestCounterConcurrent(t *testing.T) {
	const clients, n = 100, 1000
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv, logs := server(t, b.open(t))
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			jobs := make(chan struct{}, n)
			for range n {
				jobs <- struct{}{}
			}
			close(jobs)
			var (
				mu   sync.Mutex
				got  []int
				errs []string
				wg   sync.WaitGroup
			)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range jobs {
						resp, err := hc.Post(srv.URL+"/cluster/counter", "application/json", nil)
						if err != nil {
							mu.Lock()
							errs = append(errs, err.Error())
							mu.Unlock()
							return
						}
						var body struct {
							Counter int `json:"counter"`
						}
						err = json.NewDecoder(resp.Body).Decode(&body)
						resp.Body.Close()
						mu.Lock()
						if resp.StatusCode != 200 || err != nil {
							errs = append(errs, fmt.Sprintf("status %d, %v", resp.StatusCode, err))
						} else {
							got = append(got, body.Counter)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d failed requests, first: %s; log: %.2000s", len(errs), errs[0], logs.String())
			}
			slices.Sort(got)
			for i, v := range got {
				if v != i+1 {
					t.Fatalf("sorted counters: position %d holds %d, want %d (duplicate or gap)", i, v, i+1)
				}
			}
			if len(got) != n {
				t.Fatalf("%d counters, want %d", len(got), n)
			}
		})
	}
}
