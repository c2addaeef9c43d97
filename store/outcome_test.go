package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/ipc"
	"github.com/herd-go/herd/store"
)

// pausedPrimary returns a worker's remote store over a real socketpair
// whose primary holds every request until release is closed, as a primary
// stopped with SIGSTOP does, then answers it from s.
func pausedPrimary(t *testing.T, s store.Store) (remote store.Store, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	pc, f, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	primary := ipc.NewConn(pc, pausedHost{hostHandler{store.NewHost(s)}, release})
	worker := ipc.NewConn(wc, serveHandler{})
	go primary.Serve() //nolint:errcheck // ends with the connection when the test closes it
	go worker.Serve()  //nolint:errcheck // ends with the connection when the test closes it
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		worker.Close()
		primary.Close()
		<-worker.Done()
		<-primary.Done()
	})
	return store.Remote(worker), release
}

// pausedHost answers after release is closed.
type pausedHost struct {
	hostHandler
	release chan struct{}
}

func (p pausedHost) HandleDataRequest(ctx context.Context, method string, body, data []byte) (any, []byte, error) {
	<-p.release
	return p.hostHandler.HandleDataRequest(context.Background(), method, body, data)
}

// TestRemoteWriteUnansweredIsOutcomeUnknown: a write the paused primary
// has received but not answered fails with ErrOutcomeUnknown when the
// caller's deadline passes, and is made when the primary resumes; a retry
// with the same idempotency key then makes nothing more.
func TestRemoteWriteUnansweredIsOutcomeUnknown(t *testing.T) {
	primary := store.NewMemory()
	r, release := pausedPrimary(t, primary)
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	incr := store.Write{Op: store.OpIncr, Key: "n"}
	_, err := r.Apply(short(), "retry-1", incr)
	if !errors.Is(err, store.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply unanswered = %v, want ErrOutcomeUnknown wrapping the deadline", err)
	}
	if _, err := r.Incr(short(), "m"); !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Incr unanswered = %v, want ErrOutcomeUnknown", err)
	}
	if err := r.Set(short(), "s", []byte("v"), 0); !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Set unanswered = %v, want ErrOutcomeUnknown", err)
	}
	// A read has no outcome to be unsure of.
	if _, err := r.Get(short(), "n"); err == nil || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Get unanswered = %v, want a deadline error that is not ErrOutcomeUnknown", err)
	}

	close(release) // the primary resumes and makes what it received
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := primary.Get(ctx, "n")
		if err == nil && string(v) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the paused write was never made after the primary resumed: %q, %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := r.Apply(ctx, "retry-1", incr)
	if err != nil || res != (store.Result{N: 1, Replayed: true}) {
		t.Fatalf("retry with the same key = %+v, %v; want N 1, replayed", res, err)
	}
	if v, _ := primary.Get(ctx, "n"); string(v) != "1" {
		t.Fatalf("counter after the retry = %q, want 1: the write was made twice", v)
	}
}

// TestRemoteWriteRefusedIsNotOutcomeUnknown: when the primary answers a
// write with an error, the write certainly did not happen: unavailable,
// not unknown.
func TestRemoteWriteRefusedIsNotOutcomeUnknown(t *testing.T) {
	s := overIPCWith(t, func(ctx context.Context, m string, b []byte) (any, error) {
		return nil, errors.New("store: backend unavailable: handed over to the new primary")
	})
	err := s.Set(context.Background(), "k", []byte("v"), 0)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Set refused by the primary = %v, want ErrUnavailable and not ErrOutcomeUnknown", err)
	}
}

// overIPCWith is overIPC with a primary that answers with serve.
func overIPCWith(t *testing.T, serve func(ctx context.Context, m string, b []byte) (any, error)) store.Store {
	t.Helper()
	pc, f, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	primary := ipc.NewConn(pc, refusing{serveHandler{serve: serve}})
	worker := ipc.NewConn(wc, serveHandler{})
	go primary.Serve() //nolint:errcheck // ends with the connection when the test closes it
	go worker.Serve()  //nolint:errcheck // ends with the connection when the test closes it
	t.Cleanup(func() { worker.Close(); primary.Close(); <-worker.Done(); <-primary.Done() })
	return store.Remote(worker)
}

// refusing answers data requests as serve answers the JSON ones.
type refusing struct{ serveHandler }

func (r refusing) HandleDataRequest(ctx context.Context, method string, body, data []byte) (any, []byte, error) {
	v, err := r.serve(ctx, method, body)
	return v, nil, err
}

// TestRemoteWriteNotSentIsNotOutcomeUnknown: once the primary is gone, a
// write is never sent: unavailable (retry later), not unknown; and one the
// primary received before it went away is unknown.
func TestRemoteWriteNotSentIsNotOutcomeUnknown(t *testing.T) {
	got := make(chan struct{}, 1)
	pc, f, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := ipc.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	primary := ipc.NewConn(pc, serveHandler{serve: func(ctx context.Context, m string, b []byte) (any, error) {
		got <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	worker := ipc.NewConn(wc, serveHandler{})
	go primary.Serve() //nolint:errcheck // ends with the connection when the test closes it
	go worker.Serve()  //nolint:errcheck // ends with the connection when the test closes it
	t.Cleanup(func() { worker.Close(); primary.Close(); <-worker.Done(); <-primary.Done() })
	r := store.NewRemote(worker)

	errC := make(chan error, 1)
	go func() { _, err := r.Incr(context.Background(), "n"); errC <- err }()
	<-got
	primary.Close()
	if err := <-errC; !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Incr received, then the primary went away = %v, want ErrOutcomeUnknown", err)
	}
	<-worker.Done()
	if _, err := r.Incr(context.Background(), "n"); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Incr with the primary gone = %v, want ErrUnavailable and not ErrOutcomeUnknown", err)
	}
	if err := r.Set(context.Background(), "k", []byte("v"), 0); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Set with the primary gone = %v, want ErrUnavailable and not ErrOutcomeUnknown", err)
	}
}
