package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
)

// fakePlane is a primary with two workers whose request count grows by
// 10 per heartbeat (one beat per Metrics call).
type fakePlane struct {
	mu       sync.Mutex
	reqs     uint64
	beat     time.Time
	reloaded uint64
	doneC    chan struct{}
}

func newFakePlane() *fakePlane {
	return &fakePlane{beat: time.Unix(1000, 0), doneC: make(chan struct{})}
}

func (f *fakePlane) Metrics(context.Context) (cluster.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs += 10
	f.beat = f.beat.Add(time.Second)
	counts := make([]uint64, len(cluster.LatencyBuckets)+1)
	counts[2] = f.reqs
	m := cluster.Metrics{Time: f.beat, Want: 2, Ready: 2, Reloads: map[string]uint64{"ok": f.reloaded}, Upgrades: map[string]uint64{}}
	for id := 1; id <= 2; id++ {
		m.Workers = append(m.Workers, cluster.WorkerMetrics{ID: id, PID: 100 + id, State: cluster.StateReady, Started: time.Unix(900, 0),
			LastBeat: f.beat, Requests: f.reqs, Restarts: map[string]uint64{},
			Figures: cluster.Figures{Routes: []cluster.RouteCount{{Pattern: "GET /", Classes: [5]uint64{0, f.reqs}}},
				Latency: cluster.Histogram{Counts: counts, Sum: float64(f.reqs) / 1e4}}})
	}
	return m, nil
}

func (f *fakePlane) Status(context.Context) (cluster.Status, error) {
	return cluster.Status{Want: 2}, nil
}
func (f *fakePlane) Reload(context.Context) error {
	f.mu.Lock()
	f.reloaded++
	f.mu.Unlock()
	return nil
}
func (f *fakePlane) Scale(context.Context, int) error { return nil }
func (f *fakePlane) Restart(_ context.Context, id int) error {
	return errors.New("cluster: worker 9 is not running")
}
func (f *fakePlane) Upgrade(context.Context) error {
	return errors.New("cluster: cannot upgrade: a fake")
}
func (f *fakePlane) Stop(context.Context) error      { return nil }
func (f *fakePlane) WaitReady(context.Context) error { return nil }
func (f *fakePlane) Done() <-chan struct{}           { return f.doneC }

func serve(t *testing.T, ac cluster.AdminContext) (*httptest.Server, *fakePlane) {
	t.Helper()
	fp := newFakePlane()
	ac.Plane = fp
	h, err := Handler(ac)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { close(fp.doneC); srv.Close() })
	return srv, fp
}

func do(t *testing.T, method, url, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestTokenRules(t *testing.T) {
	cases := []struct {
		name             string
		ac               cluster.AdminContext
		token            string
		wantRead, wantGo int
	}{
		{"loopback, no token sent", cluster.AdminContext{Loopback: true, Token: "s3cret"}, "", 200, 401},
		{"loopback, token", cluster.AdminContext{Loopback: true, Token: "s3cret"}, "s3cret", 200, 200},
		{"loopback, wrong token", cluster.AdminContext{Loopback: true, Token: "s3cret"}, "nope", 200, 401},
		{"elsewhere, no token configured", cluster.AdminContext{}, "", 200, 403},
		{"elsewhere, token configured, none sent", cluster.AdminContext{Token: "s3cret"}, "", 401, 401},
		{"elsewhere, token", cluster.AdminContext{Token: "s3cret"}, "s3cret", 200, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, fp := serve(t, c.ac)
			if code, body := do(t, "GET", srv.URL+"/api/status", c.token); code != c.wantRead {
				t.Errorf("read: %d %v, want %d", code, body, c.wantRead)
			}
			code, body := do(t, "POST", srv.URL+"/api/reload", c.token)
			if code != c.wantGo {
				t.Errorf("action: %d %v, want %d", code, body, c.wantGo)
			}
			if code != 200 && body["error"] == nil {
				t.Errorf("a refused action says why in JSON; got %v", body)
			}
			fp.mu.Lock()
			defer fp.mu.Unlock()
			if want := map[bool]uint64{true: 1, false: 0}[c.wantGo == 200]; fp.reloaded != want {
				t.Errorf("reloads carried out: %d, want %d", fp.reloaded, want)
			}
		})
	}
}

func TestActionErrors(t *testing.T) {
	srv, _ := serve(t, cluster.AdminContext{Loopback: true, Token: "t"})
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/scale?n=0", 400}, {"/api/scale?n=x", 400}, {"/api/scale?n=3", 200},
		{"/api/workers/abc/restart", 400}, {"/api/workers/9/restart", 409},
	} {
		if code, body := do(t, "POST", srv.URL+c.path, "t"); code != c.want {
			t.Errorf("POST %s: %d %v, want %d", c.path, code, body, c.want)
		}
	}
	if code, body := do(t, "GET", srv.URL+"/nowhere", ""); code != 404 || body["error"] == nil {
		t.Errorf("GET /nowhere: %d %v, want a JSON 404", code, body)
	}
	if code, body := do(t, "GET", srv.URL+"/api/reload", "t"); code != 404 || body["error"] == nil {
		t.Errorf("GET of an action: %d %v, want a JSON 404 (actions are POSTs)", code, body)
	}
}

func TestStreamSendsViewsWithRates(t *testing.T) {
	srv, _ := serve(t, cluster.AdminContext{Loopback: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	views := 0
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var v View
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("a view that is not JSON: %v", err)
		}
		views++
		if len(v.Workers) != 2 || v.Actions.Allowed || v.Actions.Why == "" {
			t.Fatalf("view %+v: want two workers and actions off, saying why", v)
		}
		// The fake's workers serve 10 requests per one-second heartbeat.
		if v.Workers[0].RPS == 10 && v.Totals.RPS == 20 && v.Totals.P99 != nil {
			return
		}
	}
	t.Fatalf("after %d views, no rate of 10 requests/s per worker (err %v)", views, sc.Err())
}

func TestDashboardIsSelfContained(t *testing.T) {
	srv, _ := serve(t, cluster.AdminContext{Loopback: true})
	for _, path := range []string{"/", "/static/app.js", "/static/style.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		for _, external := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(strings.ReplaceAll(b.String(), "http://www.w3.org/2000/svg", ""), external) {
				t.Errorf("%s refers to %q: the page must load nothing from elsewhere", path, external)
			}
		}
	}
}
