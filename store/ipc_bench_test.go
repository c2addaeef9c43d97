package store_test

import (
	"context"
	"testing"

	"github.com/herd-go/herd/internal/ipc"
	"github.com/herd-go/herd/store"
	"github.com/herd-go/herd/store/storetest"
)

// serveHandler answers IPC requests with a store, as the primary does.
type serveHandler struct {
	serve func(ctx context.Context, method string, body []byte) (any, error)
}

func (h serveHandler) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	return h.serve(ctx, method, body)
}
func (serveHandler) HandleNotify(string, []byte) {}

// overIPC returns a worker's view of s: store.NewRemote over a real
// socketpair with herd's frame codec, s served on the other end as the
// primary serves it. Only the process boundary is missing.
func overIPC(tb testing.TB, s store.Store) store.Store {
	tb.Helper()
	serve := store.Serve(s)
	pc, f, err := ipc.Pair()
	if err != nil {
		tb.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		tb.Fatal(err)
	}
	primary := ipc.NewConn(pc, serveHandler{serve: func(ctx context.Context, m string, b []byte) (any, error) { return serve(ctx, m, b) }})
	worker := ipc.NewConn(wc, serveHandler{})
	go primary.Serve() //nolint:errcheck // ends with the connection when the benchmark closes it
	go worker.Serve()  //nolint:errcheck // ends with the connection when the benchmark closes it
	tb.Cleanup(func() { worker.Close(); primary.Close(); <-worker.Done(); <-primary.Done() })
	return store.NewRemote(worker)
}

// The conformance suite over the real IPC path too.
func TestConformanceIPCMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return overIPC(t, newMemory(t)) })
}
