package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/store"
)

// openEmbedded opens the store the primary hosts: bbolt when a state file
// is set, memory otherwise. A bad state file is a configuration error.
func openEmbedded(cfg serveConfig) (store.Store, error) {
	if cfg.StateFile == "" {
		return store.NewMemory(), nil
	}
	st, err := store.OpenBolt(cfg.StateFile, store.BoltOptions{})
	if err != nil {
		return nil, &configError{fmt.Sprintf("invalid --state-file/STATE_FILE %q: %v", cfg.StateFile, err)}
	}
	return st, nil
}

// checkRedisURL rejects a malformed Redis URL at start (exit 2). It does not
// need Redis to be up: a Redis that is down makes the routes answer 503
// until it is back.
func checkRedisURL(url string) error {
	st, err := store.NewRedis(url, store.RedisOptions{})
	if err != nil {
		return &configError{fmt.Sprintf("invalid --redis-url/REDIS_URL %q: %v", store.RedactURL(url), err)}
	}
	return st.Close()
}

// lateStore is the primary's embedded store during a binary upgrade: the
// old primary holds the bbolt file lock until the new one is ready, so the
// new one opens the file in the background, and calls wait for it (within
// their own deadline) rather than fail.
type lateStore struct {
	readyC chan struct{}
	mu     sync.Mutex
	st     store.Store // set once readyC is closed
	closed bool
}

func openLate(ctx context.Context, cfg serveConfig, log *slog.Logger) *lateStore {
	l := &lateStore{readyC: make(chan struct{})}
	go func() {
		for {
			st, err := store.OpenBolt(cfg.StateFile, store.BoltOptions{LockTimeout: time.Second})
			if err == nil {
				l.mu.Lock()
				if l.closed {
					st.Close()
				} else {
					l.st = st
				}
				l.mu.Unlock()
				close(l.readyC)
				log.Info("state file opened after the previous primary released it", "path", cfg.StateFile)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return l
}

// get waits until the store is open or ctx ends.
func (l *lateStore) get(ctx context.Context) (store.Store, error) {
	select {
	case <-l.readyC:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.st == nil {
			return nil, store.ErrClosed
		}
		return l.st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the state file is still held by the previous primary", store.ErrUnavailable)
	}
}

func (l *lateStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.st != nil {
		return l.st.Close()
	}
	return nil
}

// primaryCalls answers workers' store calls in the primary. After a
// handover (released true) the new primary owns the store: calls from this
// primary's draining workers fail as unavailable.
func primaryCalls(get func(ctx context.Context) (store.Store, error), released *atomic.Bool) cluster.CallHandler {
	return func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		if released.Load() {
			return nil, fmt.Errorf("%w: handed over to the new primary", store.ErrUnavailable)
		}
		st, err := get(ctx)
		if err != nil {
			// The remote side turns any failure into ErrUnavailable: a 503.
			return nil, err
		}
		return store.Serve(st)(ctx, method, body)
	}
}
