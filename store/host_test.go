package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/store"
	"github.com/herd-go/herd/store/storetest"
)

// The conformance suite over Host and Remote with bbolt behind them.
func TestConformanceIPCBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return overIPC(t, s)
	})
}

// Bytes that JSON would have to escape or base64 come back as they went.
func TestRemoteValuesAreBytes(t *testing.T) {
	r := overIPC(t, store.NewMemory())
	ctx := context.Background()
	v := []byte{0, 0xff, 0xfe, '"', '\\', '\n', 0x80}
	if err := r.Set(ctx, "k", v, 0); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, "k")
	if err != nil || string(got) != string(v) {
		t.Fatalf("Get = %q, %v; want %q", got, err, v)
	}
	if _, err := r.Apply(ctx, "id-1", store.Write{Op: store.OpSet, Key: "a", Value: v}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, "a"); string(got) != string(v) {
		t.Fatalf("Get after Apply = %q, want %q", got, v)
	}
	// Present but empty is not absent.
	if err := r.Set(ctx, "e", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, "e"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get of an empty value = %v, %v; want empty, found", got, err)
	}
}

// After Release (a binary upgrade handed the store over), writes from this
// primary's workers are refused as unavailable: certainly not made, so
// not "outcome unknown"; and the store is closed for the new primary.
func TestHostReleaseRefusesWrites(t *testing.T) {
	mem := store.NewMemory()
	h := store.NewHost(mem)
	r := store.Remote(ipcPair(t, hostHandler{h}))
	ctx := context.Background()
	if _, err := r.Incr(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	h.Release()
	h.Release() // idempotent
	_, err := r.Incr(ctx, "n")
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Incr after Release = %v, want ErrUnavailable and not ErrOutcomeUnknown", err)
	}
	if _, err := r.Get(ctx, "n"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get after Release = %v, want ErrUnavailable", err)
	}
	if _, err := mem.Get(ctx, "n"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("the hosted store after Release: %v, want ErrClosed", err)
	}
}

// A store that opens late (the previous primary still holds the bbolt
// file): calls wait for it within their own deadline, then succeed.
func TestHostOpeningWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	held, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var opened atomic.Bool
	h := store.NewHostOpening(ctx, func() (store.Store, error) {
		return store.OpenBolt(path, store.BoltOptions{LockTimeout: 50 * time.Millisecond})
	}, func() { opened.Store(true) })
	t.Cleanup(func() { h.Close() })
	r := store.Remote(ipcPair(t, hostHandler{h}))

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := r.Get(short, "k"); !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while the file is held = %v, want unavailable", err)
	}
	if opened.Load() {
		t.Fatal("opened while the previous holder still had the file")
	}
	if err := held.Set(ctx, "k", []byte("from the old primary"), 0); err != nil {
		t.Fatal(err)
	}
	held.Close() // the previous primary lets go
	long, cancelLong := context.WithTimeout(ctx, 10*time.Second)
	defer cancelLong()
	got, err := r.Get(long, "k")
	if err != nil || string(got) != "from the old primary" {
		t.Fatalf("Get once released = %q, %v; want the old primary's value", got, err)
	}
	if !opened.Load() {
		t.Error("onOpen was not called")
	}
}
