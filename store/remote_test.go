package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/herd-go/herd/store"
)

// jsonCaller is the worker's side of the IPC channel without the socket:
// the request and the reply go through encoding/json as they do on the
// wire, and a handler error comes back as its text only.
type jsonCaller struct {
	serve func(ctx context.Context, method string, body json.RawMessage) (any, error)
	calls atomic.Int64
	fail  atomic.Pointer[error] // when set, every call fails with it: the primary is gone
}

func (c *jsonCaller) Call(ctx context.Context, method string, req, resp any) error {
	c.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return err
	}
	if e := c.fail.Load(); e != nil {
		return *e
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := c.serve(ctx, method, body)
	if err != nil {
		return errors.New(err.Error())
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, resp)
}

func newRemote(t *testing.T, primary store.Store) store.Store {
	r := store.NewRemote(&jsonCaller{serve: store.Serve(primary)})
	t.Cleanup(func() { r.Close() })
	return r
}

func TestServeUnknownMethod(t *testing.T) {
	h := store.Serve(store.NewMemory())
	_, err := h(context.Background(), "store.explode", json.RawMessage(`{}`))
	if !errors.Is(err, store.ErrUnknownMethod) {
		t.Fatalf("unknown method: %v, want ErrUnknownMethod", err)
	}
	if !strings.Contains(err.Error(), "store.explode") {
		t.Fatalf("error %q does not name the method", err)
	}
}

func TestServeBadRequest(t *testing.T) {
	h := store.Serve(store.NewMemory())
	for _, body := range []string{"", "{", `{"key": 5}`, `[1,2]`, `{"key":"k","value":"not base64!"}`} {
		method := store.MethodGet
		if strings.Contains(body, "value") {
			method = store.MethodSet
		}
		if out, err := h(context.Background(), method, json.RawMessage(body)); err == nil {
			t.Errorf("%s %q = %v, nil; want an error", method, body, out)
		}
	}
}

func TestServeWireShapes(t *testing.T) {
	h := store.Serve(store.NewMemory())
	ctx := context.Background()
	call := func(method, body string) string {
		t.Helper()
		out, err := h(ctx, method, json.RawMessage(body))
		if err != nil {
			t.Fatalf("%s %s: %v", method, body, err)
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	for _, c := range []struct{ method, body, want string }{
		{store.MethodGet, `{"key":"k"}`, `{"found":false}`},
		{store.MethodSet, `{"key":"k","value":"aGk="}`, `{}`},
		{store.MethodGet, `{"key":"k"}`, `{"found":true,"value":"aGk="}`},
		{store.MethodIncr, `{"key":"k"}`, `{"code":"not_integer","error":"store: value is not an integer","value":0}`},
		{store.MethodIncr, `{"key":"n"}`, `{"value":1}`},
		{store.MethodKeys, `{"prefix":""}`, `{"keys":["k","n"]}`},
		{store.MethodDelete, `{"key":"k"}`, `{"found":true}`},
		{store.MethodDelete, `{"key":"k"}`, `{"found":false}`},
		{store.MethodSet, `{"key":"","value":"aGk="}`, `{"code":"invalid","error":"store: empty key"}`},
		{store.MethodBackend, `{}`, `{"backend":"embedded (memory)"}`},
	} {
		if got := call(c.method, c.body); got != c.want {
			t.Errorf("%s %s = %s, want %s", c.method, c.body, got, c.want)
		}
	}
}

func TestRemotePrimaryUnreachable(t *testing.T) {
	c := &jsonCaller{serve: store.Serve(store.NewMemory())}
	r := store.NewRemote(c)
	ctx := context.Background()
	if err := r.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	gone := errors.New("ipc: connection closed")
	c.fail.Store(&gone)
	checks := map[string]error{}
	_, checks["Get"] = r.Get(ctx, "k")
	checks["Set"] = r.Set(ctx, "k", nil, 0)
	checks["Delete"] = r.Delete(ctx, "k")
	_, checks["Incr"] = r.Incr(ctx, "n")
	_, checks["Keys"] = r.Keys(ctx, "")
	for op, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, gone) {
			t.Errorf("%s with the primary gone = %v, want ErrUnavailable wrapping the caller's error", op, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v wraps ErrNotFound", op, err)
		}
	}
	if got := r.Backend(); got != "embedded" {
		t.Errorf("Backend() with the primary gone = %q, want %q", got, "embedded")
	}
	c.fail.Store(nil) // the primary is back (a new one, in real life)
	if _, err := r.Get(ctx, "k"); err != nil {
		t.Fatalf("Get after the primary is back: %v", err)
	}
}

func TestRemotePrimaryStoreClosed(t *testing.T) {
	primary := store.NewMemory()
	r := store.NewRemote(&jsonCaller{serve: store.Serve(primary)})
	primary.Close() // the primary is stopping
	if _, err := r.Get(context.Background(), "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get with the primary's store closed = %v, want ErrUnavailable", err)
	}
}

func TestRemoteBackendAskedOnce(t *testing.T) {
	c := &jsonCaller{serve: store.Serve(store.NewMemory())}
	r := store.NewRemote(c)
	for range 3 {
		if got := r.Backend(); got != "embedded (memory)" {
			t.Fatalf("Backend() = %q, want the primary's %q", got, "embedded (memory)")
		}
	}
	if n := c.calls.Load(); n != 1 {
		t.Fatalf("Backend() called the primary %d times, want 1", n)
	}
}

func TestRemoteClose(t *testing.T) {
	c := &jsonCaller{serve: store.Serve(store.NewMemory())}
	r := store.NewRemote(c)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := r.Get(context.Background(), "k"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}
