package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/tmpfs"
	"github.com/herd-go/herd/store"
)

// fillDisk writes a file in dir until the filesystem has no space left and
// returns its path: removing it frees the space again.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'x'}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC in the end", dir, err)
			}
			return path
		}
	}
}

// TestBoltFullDiskOverIPC: on a full filesystem, a write through the
// worker's remote store (real socketpair, real frames) fails with
// ErrNoSpace, not a generic error; reads and deletes go on working; once
// space is freed, writes work again.
func TestBoltFullDiskOverIPC(t *testing.T) {
	dir := tmpfs.Mount(t, 4<<20)
	primary, err := store.OpenBolt(filepath.Join(dir, "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Close() })
	s := overIPC(t, primary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Some data, and pages freed by overwrites that a later delete reuses:
	// bbolt copies what it changes, so even a delete needs a free page.
	for i := range 60 {
		if err := s.Set(ctx, fmt.Sprintf("k%d", i%20), bytes.Repeat([]byte{'v'}, 200), 0); err != nil {
			t.Fatalf("Set before the disk is full: %v", err)
		}
	}
	if _, err := s.Incr(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	filler := fillDisk(t, dir)

	big := bytes.Repeat([]byte{'b'}, 1<<20) // needs new pages: the file must grow
	err = s.Set(ctx, "big", big, 0)
	if !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Set of 1 MiB on a full disk = %v, want an error wrapping ErrNoSpace", err)
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("out of space also wraps ErrUnavailable (a 503 'retry later'): %v", err)
	}
	t.Logf("full disk: %v", err)
	if _, err := s.Get(ctx, "big"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of the failed write = %v, want ErrNotFound: a failed write changes nothing", err)
	}
	if got, err := s.Get(ctx, "k1"); err != nil || len(got) != 200 {
		t.Fatalf("Get on a full disk = %d bytes, %v; want the 200 bytes stored before", len(got), err)
	}
	if err := s.Delete(ctx, "k1"); err != nil {
		t.Fatalf("Delete on a full disk = %v, want nil", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "big", big, 0); err != nil {
		t.Fatalf("Set once space is freed = %v, want nil", err)
	}
	if n, err := s.Incr(ctx, "n"); err != nil || n != 2 {
		t.Fatalf("Incr once space is freed = %d, %v; want 2", n, err)
	}
}
