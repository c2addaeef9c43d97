package store_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
	"github.com/herd-go/herd/store/storetest"
)

func newMemory(t *testing.T) store.Store {
	s := store.NewMemory()
	t.Cleanup(func() { s.Close() })
	return s
}

func newBolt(t *testing.T) store.Store {
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceMemory(t *testing.T) { storetest.Run(t, newMemory) }

func TestConformanceBolt(t *testing.T) { storetest.Run(t, newBolt) }

func TestConformanceRemoteMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newRemote(t, newMemory(t)) })
}

func TestConformanceRemoteBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newRemote(t, newBolt(t)) })
}

// TestConformanceRedis runs the suite on one real redis-server shared by
// the subtests, each under its own key prefix.
func TestConformanceRedis(t *testing.T) {
	url, _ := redistest.Start(t)
	var once sync.Once
	var s store.Store
	storetest.Run(t, func(t *testing.T) store.Store {
		once.Do(func() {
			var err error
			if s, err = store.NewRedis(url, store.RedisOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		return s
	})
	t.Cleanup(func() { s.Close() })
}
