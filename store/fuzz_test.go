package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/herd-go/herd/store"
)

// FuzzServe feeds the primary's handler what a worker could send: it must
// answer or return an error, never panic, and an answer must encode.
func FuzzServe(f *testing.F) {
	for _, m := range []string{store.MethodGet, store.MethodSet, store.MethodDelete, store.MethodIncr, store.MethodKeys, store.MethodBackend, store.MethodApply, "store.nope"} {
		f.Add(m, []byte(`{"key":"k","value":"aGk=","ttlNs":1000000,"prefix":""}`))
		f.Add(m, []byte(`{"key":""}`))
		f.Add(m, []byte(`{"ttlNs":-5,"key":"x"}`))
		f.Add(m, []byte(`null`))
		f.Add(m, []byte(`[`))
		f.Add(m, []byte(`{"id":"retry-1","op":"incr","key":"n"}`))
		f.Add(m, []byte(`{"id":"x","op":"explode","key":"n"}`))
	}
	s := store.NewMemory()
	h := store.Serve(s)
	f.Fuzz(func(t *testing.T, method string, body []byte) {
		out, err := h(context.Background(), method, json.RawMessage(body))
		if err != nil {
			return
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("%s %q: reply does not encode: %v", method, body, err)
		}
		if method != store.MethodGet && method != store.MethodSet && method != store.MethodDelete &&
			method != store.MethodIncr && method != store.MethodKeys && method != store.MethodBackend && method != store.MethodApply {
			t.Fatalf("unknown method %q answered %v", method, out)
		}
	})
}

func TestServeUnknownMethodIsSentinel(t *testing.T) {
	_, err := store.Serve(store.NewMemory())(context.Background(), "", nil)
	if !errors.Is(err, store.ErrUnknownMethod) {
		t.Fatalf("empty method: %v", err)
	}
}
