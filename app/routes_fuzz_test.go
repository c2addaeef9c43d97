package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"testing"

	"github.com/herd-go/herd/store"
)

var decimal = regexp.MustCompile(`^[+-]?[0-9]+$`)

// FuzzSumParam: /api/{n}'s parameter is a count exactly when it is a
// decimal number that is not negative, clamped to MaxSumN; anything else is
// a 400 with a short JSON error.
func FuzzSumParam(f *testing.F) {
	for _, s := range []string{"0", "35", "+7", "-0", "-1", "5000000000", "9223372036854775808", "1e3", "0x10", "abc", "", "٣", "1 2"} {
		f.Add(s)
	}
	a := New(Options{WorkerID: 1, Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseSumN(s)
		if want := decimal.MatchString(s) && (s[0] != '-' || regexp.MustCompile(`^-0+$`).MatchString(s)); ok != want {
			t.Fatalf("parseSumN(%q) ok = %v, want %v", s, ok, want)
		}
		if n > MaxSumN {
			t.Fatalf("parseSumN(%q) = %d, above MaxSumN", s, n)
		}
		if v, err := strconv.ParseUint(s, 10, 64); ok && err == nil && v <= MaxSumN && v != n {
			t.Fatalf("parseSumN(%q) = %d, want %d", s, n, v)
		}
		if ok || path.Clean("/api/"+s) != "/api/"+s {
			// A count makes the handler loop over 0..n (TestSum covers it);
			// "." and ".." segments get net/http's redirect.
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = "/api/" + s
		req.URL.RawPath = "/api/" + url.PathEscape(s)
		a.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code > 499 || rec.Body.Len() > 400 {
			t.Fatalf("GET /api/%q: %d with %d bytes, want a short 4xx", s, rec.Code, rec.Body.Len())
		}
		var e struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("GET /api/%q: body %q is not a JSON error", s, rec.Body)
		}
	})
}

// FuzzSharedStateKeyAndIdempotencyKey: any key in the path and any
// Idempotency-Key header gets a 2xx, 400 or 404 (never a 5xx) on the
// shared-state routes, with a short body, and a write made with a key
// answers the same when repeated.
func FuzzSharedStateKeyAndIdempotencyKey(f *testing.F) {
	f.Add("k", "", uint8(0))
	f.Add("a.b_c:d-e", "retry-1", uint8(1))
	f.Add("", "x", uint8(2))
	f.Add("with space", "with space", uint8(1))
	f.Add("ключ", "\x00", uint8(0))
	f.Add("../etc/passwd", "k", uint8(2))
	a := New(Options{WorkerID: 1, Store: store.NewMemory(), Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, key, idem string, op uint8) {
		do := func() *httptest.ResponseRecorder {
			var req *http.Request
			switch op % 3 {
			case 0:
				req = httptest.NewRequest("GET", "/", nil)
			case 1:
				req = httptest.NewRequest("DELETE", "/", nil)
			default:
				req = httptest.NewRequest("POST", "/cluster/counter", nil)
			}
			if op%3 != 2 {
				req.URL.Path = "/cluster/shared-state/" + key
				req.URL.RawPath = "/cluster/shared-state/" + url.PathEscape(key)
			}
			req = req.WithContext(context.Background())
			if idem != "" {
				req.Header[IdempotencyKeyHeader] = []string{idem}
			}
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			return rec
		}
		if p := "/cluster/shared-state/" + key; op%3 != 2 && path.Clean(p) != p {
			return // net/http's redirect of "." and ".." segments
		}
		first := do()
		switch {
		case first.Code >= 500:
			t.Fatalf("key %q, Idempotency-Key %q, op %d: %d %s", key, idem, op%3, first.Code, first.Body)
		case first.Body.Len() > 600:
			t.Fatalf("key %q: %d-byte answer", key, first.Body.Len())
		}
		if op%3 == 0 || idem == "" || first.Code >= 300 {
			return
		}
		again := do()
		if again.Code != first.Code || again.Header().Get(ReplayedHeader) != "true" {
			t.Fatalf("write with Idempotency-Key %q sent twice: %d then %d (replayed %q)",
				idem, first.Code, again.Code, again.Header().Get(ReplayedHeader))
		}
		if op%3 == 2 && again.Body.String() != first.Body.String() {
			t.Fatalf("counter with Idempotency-Key %q: %s then %s", idem, first.Body, again.Body)
		}
	})
}
