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

// hostHandler answers both protocols from a store.Host, as a cluster's
// primary does with Options.Calls and Options.DataCalls.
type hostHandler struct{ h *store.Host }

func (h hostHandler) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	return h.h.Calls(ctx, method, body)
}
func (h hostHandler) HandleDataRequest(ctx context.Context, method string, body, data []byte) (any, []byte, error) {
	return h.h.DataCalls(ctx, method, body, data)
}
func (hostHandler) HandleNotify(string, []byte) {}

// ipcPair returns a primary's and a worker's ends of a real socketpair
// with herd's frame codec, the primary's answered by h, both served until
// the test ends.
func ipcPair(tb testing.TB, h ipc.Handler) (worker *ipc.Conn) {
	tb.Helper()
	pc, f, err := ipc.Pair()
	if err != nil {
		tb.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		tb.Fatal(err)
	}
	primary := ipc.NewConn(pc, h)
	worker = ipc.NewConn(wc, serveHandler{})
	go primary.Serve() //nolint:errcheck // ends with the connection when the test closes it
	go worker.Serve()  //nolint:errcheck // ends with the connection when the test closes it
	tb.Cleanup(func() { worker.Close(); primary.Close(); <-worker.Done(); <-primary.Done() })
	return worker
}

// overIPC returns a worker's view of s as a cluster gives it: store.Remote
// over a real socketpair, values as bytes, s hosted on the other end by
// store.NewHost. Only the process boundary is missing.
func overIPC(tb testing.TB, s store.Store) store.Store {
	tb.Helper()
	return store.Remote(ipcPair(tb, hostHandler{store.NewHost(s)}))
}

// overIPCJSON is overIPC with NewRemote's JSON protocol (values base64'd).
func overIPCJSON(tb testing.TB, s store.Store) store.Store {
	tb.Helper()
	return store.NewRemote(ipcPair(tb, hostHandler{store.NewHost(s)}))
}

// The conformance suite over the real IPC path too, in both protocols.
func TestConformanceIPCMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return overIPC(t, newMemory(t)) })
}

func TestConformanceIPCJSONMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return overIPCJSON(t, newMemory(t)) })
}
