package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/ipc"
)

// heldCalls is a primary's IPC handler that holds every request until the
// connection ends, and says when one arrived.
type heldCalls struct{ got chan struct{} }

func (h heldCalls) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	h.got <- struct{}{}
	<-ctx.Done()
	return nil, nil
}

func (heldCalls) HandleNotify(string, []byte) {}

// Worker.Call tells a request the primary never got (ErrNotSent: safe to
// retry) from one it got and never answered (its outcome unknown).
func TestWorkerCallSaysWhetherTheRequestWasSent(t *testing.T) {
	pc, f, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	held := heldCalls{got: make(chan struct{}, 1)}
	primary := ipc.NewConn(pc, held)
	w := &Worker{ID: 1, conn: ipc.NewConn(wc, &workerIPC{})}
	go primary.Serve() //nolint:errcheck // ends when the test closes it
	go w.conn.Serve()  //nolint:errcheck // ends when the primary closes it
	t.Cleanup(func() { primary.Close(); w.conn.Close(); <-primary.Done(); <-w.conn.Done() })

	errC := make(chan error, 1)
	go func() { errC <- w.Call(context.Background(), "store.incr", map[string]string{"key": "n"}, nil) }()
	select {
	case <-held.got:
	case <-time.After(5 * time.Second):
		t.Fatal("the primary never received the call")
	}
	primary.Close() // the primary goes away with the call unanswered
	if err := <-errC; !errors.Is(err, ErrClosed) || errors.Is(err, ErrNotSent) {
		t.Fatalf("call received by the primary, which then went away: %v; want ErrClosed, not ErrNotSent", err)
	}
	<-w.conn.Done()
	err = w.Call(context.Background(), "store.incr", map[string]string{"key": "n"}, nil)
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrClosed) || !errors.Is(err, ipc.ErrNotSent) {
		t.Fatalf("call after the primary went away: %v; want ErrNotSent and ErrClosed (and ipc's ErrNotSent)", err)
	}
	if got, want := err.Error(), "cluster: store.incr not sent to the primary: ipc: request not sent: ipc: connection closed"; got != want {
		t.Errorf("error text %q, want %q", got, want)
	}
}
