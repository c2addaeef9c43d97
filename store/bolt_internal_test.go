package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestBoltSweepDeletesExpiredKeysFromFile(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.(*boltStore)
	ctx := context.Background()
	for _, k := range []string{"x1", "x2"} {
		if err := s.Set(ctx, k, []byte("v"), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "keep", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Get(ctx, "x2"); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("x2 never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, err := b.sweep()
	if err != nil || n != 2 {
		t.Fatalf("sweep() = %d, %v; want 2, nil", n, err)
	}
	var raw []string
	_ = b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBucket).ForEach(func(k, _ []byte) error {
			raw = append(raw, string(k))
			return nil
		})
	})
	if len(raw) != 1 || raw[0] != "keep" {
		t.Fatalf("keys in the file after the sweep = %q, want [keep]", raw)
	}
}

func TestBoltSweepStartsInBackground(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.(*boltStore)
	b.sweepEvery = 0
	ctx := context.Background()
	if err := s.Set(ctx, "x", []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Each write starts a sweep when none is running.
		if err := s.Set(ctx, "other", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		var present bool
		_ = b.db.View(func(tx *bolt.Tx) error {
			present = tx.Bucket(boltBucket).Get([]byte("x")) != nil
			return nil
		})
		if !present {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background sweep never deleted the expired key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil { // waits for a running sweep
		t.Fatal(err)
	}
}

func TestDecodeRecordRejectsGarbage(t *testing.T) {
	for _, rec := range [][]byte{nil, {}, {1, 0, 0}, {2, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, _, err := decodeRecord(rec); err == nil {
			t.Errorf("decodeRecord(%v) = nil error", rec)
		}
	}
	v, exp, err := decodeRecord(encodeRecord([]byte("hi"), 42))
	if err != nil || string(v) != "hi" || exp != 42 {
		t.Fatalf("round trip = %q, %d, %v", v, exp, err)
	}
}
