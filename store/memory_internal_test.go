package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemorySweepReclaimsExpiredKeys(t *testing.T) {
	m := NewMemory().(*memory)
	ctx := context.Background()
	now := time.Now()
	m.now = func() time.Time { return now }
	for _, k := range []string{"a", "b", "c"} {
		if err := m.Set(ctx, k, []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, "keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second) // a, b, c expired; no sweep due yet
	if _, err := m.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(expired) = %v, want ErrNotFound", err)
	}
	if got := len(m.data); got != 4 {
		t.Fatalf("before the sweep: %d entries, want 4 (expired ones still held)", got)
	}
	now = now.Add(DefaultSweepInterval) // a sweep is due at the next write
	if _, err := m.Incr(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if got := len(m.data); got != 2 {
		t.Fatalf("after the sweep: %d entries, want 2 (keep, n)", got)
	}
}

func TestMemoryClose(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	if err := m.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if _, err := m.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if err := m.Set(ctx, "k", nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v, want ErrClosed", err)
	}
	if m.Backend() != "embedded (memory)" {
		t.Fatalf("Backend() = %q", m.Backend())
	}
}
