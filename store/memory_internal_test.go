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

// TestMemoryIdempotencyRecordsAreBounded: the in-memory backend forgets
// outcomes after IdempotencyTTL and keeps at most idemMax of them, the
// oldest forgotten first.
func TestMemoryIdempotencyRecordsAreBounded(t *testing.T) {
	m := NewMemory().(*memory)
	m.idemMax = 3
	ctx := context.Background()
	now := time.Now()
	m.now = func() time.Time { return now }
	incr := Write{Op: OpIncr, Key: "n"}
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, err := m.Apply(ctx, id, incr); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.idem) != 3 || len(m.idemOrder) != 3 {
		t.Fatalf("after 4 keys with a bound of 3: %d records, %d in order; want 3", len(m.idem), len(m.idemOrder))
	}
	if r, _ := m.Apply(ctx, "a", incr); r.Replayed || r.N != 5 {
		t.Fatalf("the oldest key, forgotten: Apply = %+v, want made again (N 5)", r)
	}
	if r, _ := m.Apply(ctx, "d", incr); !r.Replayed || r.N != 4 {
		t.Fatalf("a recent key: Apply = %+v, want replayed N 4", r)
	}
	now = now.Add(IdempotencyTTL + time.Second)
	if r, _ := m.Apply(ctx, "d", incr); r.Replayed || r.N != 6 {
		t.Fatalf("a key older than IdempotencyTTL: Apply = %+v, want made again (N 6)", r)
	}
	if len(m.idem) != 1 {
		t.Fatalf("after the TTL: %d records kept, want 1 (the expired ones dropped)", len(m.idem))
	}
}
