package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-go/herd/store"
)

func ExampleNewMemory() {
	s := store.NewMemory()
	defer s.Close()
	ctx := context.Background()
	_ = s.Set(ctx, "cluster:greeting", []byte(`"hello"`), 0)
	_ = s.Set(ctx, "cluster:session", []byte("abc"), 30*time.Minute)
	v, _ := s.Get(ctx, "cluster:greeting")
	n, _ := s.Incr(ctx, "cluster:counter")
	keys, _ := s.Keys(ctx, "cluster:")
	fmt.Println(string(v), n, keys, s.Backend())
	// Output: "hello" 1 [cluster:counter cluster:greeting cluster:session] embedded (memory)
}

func ExampleOpenBolt() {
	dir, _ := os.MkdirTemp("", "herd-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "state.db")
	ctx := context.Background()

	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = s.Incr(ctx, "cluster:counter") // durable once it returns
	_ = s.Close()

	s, _ = store.OpenBolt(path, store.BoltOptions{}) // after a restart
	defer s.Close()
	n, _ := s.Incr(ctx, "cluster:counter")
	fmt.Println(n, s.Backend())
	// Output: 2 embedded (bbolt)
}

// loopback stands in for the cluster runtime's IPC channel: a request goes
// to the primary's handler as JSON and its reply comes back as JSON.
type loopback struct {
	handle func(ctx context.Context, method string, body json.RawMessage) (any, error)
}

func (l loopback) Call(ctx context.Context, method string, req, resp any) error {
	body, _ := json.Marshal(req)
	out, err := l.handle(ctx, method, body)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(out)
	return json.Unmarshal(b, resp)
}

func ExampleNewRemote() {
	// In the primary: the store, and its handler for the store.* methods.
	primary := store.NewMemory()
	handler := store.Serve(primary)

	// In each worker: the same store, through the IPC channel.
	w1 := store.NewRemote(loopback{handler})
	w2 := store.NewRemote(loopback{handler})
	ctx := context.Background()
	_, _ = w1.Incr(ctx, "cluster:counter")
	n, _ := w2.Incr(ctx, "cluster:counter")
	fmt.Println(n, w2.Backend())
	// Output: 2 embedded (memory)
}

// dataLoopback stands in for a worker's link to the primary as the cluster
// runtime gives it (cluster.Worker): a request's JSON with its bytes beside
// it, to the primary's Host.DataCalls.
type dataLoopback struct{ h *store.Host }

func (l dataLoopback) Call(ctx context.Context, method string, req, resp any) error {
	_, err := l.CallData(ctx, method, req, []byte{}, resp)
	return err
}

func (l dataLoopback) CallData(ctx context.Context, method string, req any, data []byte, resp any) ([]byte, error) {
	body, _ := json.Marshal(req)
	out, outData, err := l.h.DataCalls(ctx, method, body, data)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(out)
	return outData, json.Unmarshal(b, resp)
}

func ExampleNewHost() {
	// In the primary: host the store; with a cluster,
	//   opts.DataCalls, opts.OnHandover = host.DataCalls, host.Release
	host := store.NewHost(store.NewMemory())
	defer host.Close()

	// In each worker: store.Remote(w), with w the *cluster.Worker.
	w1, w2 := store.Remote(dataLoopback{host}), store.Remote(dataLoopback{host})
	ctx := context.Background()
	_ = w1.Set(ctx, "greeting", []byte("hello\x00bytes"), 0)
	v, _ := w2.Get(ctx, "greeting")
	fmt.Printf("%q\n", v)
	// Output: "hello\x00bytes"
}
