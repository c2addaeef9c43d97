package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
)

// TestRedisAtMaxmemoryIsNoSpace: a real Redis at its memory limit (with
// no eviction) refuses writes with OOM: ErrNoSpace (a 507), not an outage;
// reads and deletes still work.
func TestRedisAtMaxmemoryIsNoSpace(t *testing.T) {
	url, _ := redistest.Start(t)
	s, err := store.NewRedis(url, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opts)
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Set":   s.Set(ctx, "k2", []byte("v"), 0),
		"Apply": func() error { _, err := s.Apply(ctx, "id", store.Write{Op: store.OpIncr, Key: "n"}); return err }(),
	} {
		if !errors.Is(err, store.ErrNoSpace) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s at maxmemory = %v, want ErrNoSpace and not ErrUnavailable", name, err)
		}
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("Get at maxmemory = %q, %v; want v", v, err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Errorf("Delete at maxmemory = %v, want nil", err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k2", []byte("v"), 0); err != nil {
		t.Errorf("Set with the limit lifted = %v", err)
	}
}
