package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/store"
)

// doKey is do with an Idempotency-Key header (none when key is "").
func doKey(t *testing.T, srv *httptest.Server, method, path, body, key string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(app.IdempotencyKeyHeader, key)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return r
}

// TestIdempotencyKeyOnEveryWriteRoute: a write sent again with the same
// Idempotency-Key is made once and answered as the first time, marked
// Idempotent-Replayed, on every backend.
func TestIdempotencyKeyOnEveryWriteRoute(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := server(t, b.open(t))

			// Counter: the retry answers the first count.
			first := doKey(t, srv, "POST", "/cluster/counter", "", "count-1").want(t, 200)
			if first.header.Get(app.ReplayedHeader) != "" {
				t.Errorf("first write marked %s", app.ReplayedHeader)
			}
			again := doKey(t, srv, "POST", "/cluster/counter", "", "count-1").want(t, 200)
			if again.field(t, "counter") != first.field(t, "counter") || again.header.Get(app.ReplayedHeader) != "true" {
				t.Errorf("retry = %s (%s %q), want the first answer %s, replayed",
					again.raw, app.ReplayedHeader, again.header.Get(app.ReplayedHeader), first.raw)
			}
			if got := do(t, srv, "GET", "/cluster/shared-state/counter", "").want(t, 200).field(t, "value"); got != first.field(t, "counter") {
				t.Errorf("counter = %s after a retry, want %s: counted twice", got, first.field(t, "counter"))
			}
			if next := doKey(t, srv, "POST", "/cluster/counter", "", "count-2").want(t, 200); next.field(t, "counter") == first.field(t, "counter") {
				t.Errorf("a new key did not count: %s", next.raw)
			}
			// Without a key every POST counts.
			c1 := do(t, srv, "POST", "/cluster/counter", "").want(t, 200).field(t, "counter")
			if c2 := do(t, srv, "POST", "/cluster/counter", "").want(t, 200).field(t, "counter"); c1 == c2 {
				t.Errorf("two POSTs without a key both answered %s", c1)
			}

			// Set: the retry does not overwrite what came since.
			doKey(t, srv, "POST", "/cluster/shared-state", `{"key":"k","value":1}`, "set-1").want(t, 200)
			do(t, srv, "POST", "/cluster/shared-state", `{"key":"k","value":2}`).want(t, 200)
			r := doKey(t, srv, "POST", "/cluster/shared-state", `{"key":"k","value":1}`, "set-1").want(t, 200)
			if r.header.Get(app.ReplayedHeader) != "true" || r.field(t, "value") != "1" {
				t.Errorf("set retry = %s, want the first answer, replayed", r.raw)
			}
			if got := do(t, srv, "GET", "/cluster/shared-state/k", "").want(t, 200).field(t, "value"); got != "2" {
				t.Errorf("value = %s after a set retry, want 2: the retry wrote again", got)
			}

			// Delete: the retry answers 204 again and deletes nothing new.
			if r := doKey(t, srv, "DELETE", "/cluster/shared-state/k", "", "del-1"); r.status != 204 {
				t.Fatalf("DELETE = %d %s", r.status, r.raw)
			}
			do(t, srv, "POST", "/cluster/shared-state", `{"key":"k","value":3}`).want(t, 200)
			if r := doKey(t, srv, "DELETE", "/cluster/shared-state/k", "", "del-1"); r.status != 204 || r.header.Get(app.ReplayedHeader) != "true" {
				t.Errorf("DELETE retry = %d %s (replayed %q), want 204 replayed", r.status, r.raw, r.header.Get(app.ReplayedHeader))
			}
			do(t, srv, "GET", "/cluster/shared-state/k", "").want(t, 200)

			// A key reused for another request: 422, nothing written.
			r = doKey(t, srv, "POST", "/cluster/shared-state", `{"key":"k","value":"other"}`, "set-1").want(t, 422)
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, "Idempotency-Key") {
				t.Errorf("422 error %q does not name the header", msg)
			}
			if got := do(t, srv, "GET", "/cluster/shared-state/k", "").want(t, 200).field(t, "value"); got != "3" {
				t.Errorf("value = %s after a conflicting key, want 3", got)
			}
		})
	}
}

func TestIdempotencyKeyBadInput(t *testing.T) {
	srv, _ := server(t, store.NewMemory())
	for _, key := range []string{strings.Repeat("k", store.MaxIdempotencyKeyLen+1), "has space", "tab\there", "é"} {
		r := doKey(t, srv, "POST", "/cluster/counter", "", key).want(t, 400)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "Idempotency-Key") || len(r.raw) > 400 {
			t.Errorf("key %.20q: error %q, want a short one naming the header", key, msg)
		}
	}
	// Two headers: ambiguous.
	req, _ := http.NewRequest("POST", srv.URL+"/cluster/counter", nil)
	req.Header.Add(app.IdempotencyKeyHeader, "a")
	req.Header.Add(app.IdempotencyKeyHeader, "b")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("two Idempotency-Key headers: %d, want 400", resp.StatusCode)
	}
	// Nothing was counted.
	do(t, srv, "GET", "/cluster/shared-state/counter", "").want(t, 404)
	// The longest key is fine.
	doKey(t, srv, "POST", "/cluster/counter", "", strings.Repeat("k", store.MaxIdempotencyKeyLen)).want(t, 200)
}
