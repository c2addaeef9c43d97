package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herd-go/herd/app"
	"github.com/herd-go/herd/store"
)

// FuzzSharedStateSet posts arbitrary bodies: the answer is always 200, 400
// or 413 with a JSON body, and what is stored comes back as stored.
func FuzzSharedStateSet(f *testing.F) {
	for _, s := range []string{
		`{"key":"a","value":1}`, `{"key":"a"}`, `{"value":1}`, `{"key":"a b","value":1}`,
		`{"key":"a","value":{"x":[1,2,{"y":null}]}}`, `[]`, `"x"`, ``, `{`, `{"key":"a","value":1} 2`,
		`{"key":5,"value":1}`, `{"key":"a","value":"\u0000\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	a := app.New(app.Options{WorkerID: 1, Store: store.NewMemory()})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("POST", "/cluster/shared-state", bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("body %q: status %d: %s", body, rec.Code, rec.Body)
		}
		var reply struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
			t.Fatalf("body %q: reply is not JSON: %q", body, rec.Body)
		}
		if rec.Code != http.StatusOK {
			if reply.Error == "" {
				t.Fatalf("body %q: %d without an error message", body, rec.Code)
			}
			return
		}
		get := httptest.NewRecorder()
		a.ServeHTTP(get, httptest.NewRequest("GET", "/cluster/shared-state/"+reply.Key[len(app.SharedKeyPrefix):], nil))
		got, _ := io.ReadAll(get.Body)
		var g struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(got, &g); err != nil || !bytes.Equal(g.Value, reply.Value) {
			t.Fatalf("body %q: stored %s, read back %s (%v)", body, reply.Value, g.Value, err)
		}
	})
}
