// Package store is herd's shared state: one interface that every worker of a
// cluster sees the same way, with an embedded backend (hosted by the primary,
// reached over IPC, optionally persisted with bbolt) and a Redis backend.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get and Delete when the key does not exist.
var ErrNotFound = errors.New("store: key not found")

// ErrUnavailable wraps errors meaning the backend cannot be reached right now
// (Redis down, primary gone). Callers answer 503 and retry later.
var ErrUnavailable = errors.New("store: backend unavailable")

// Store is shared key/value state. Implementations are safe for concurrent
// use. Keys are opaque strings; callers add their own prefix.
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key. A ttl of 0 means no expiry. It returns
	// once the write is as durable as the backend makes it.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key, or returns ErrNotFound if it did not exist.
	Delete(ctx context.Context, key string) error
	// Incr atomically adds 1 to the integer under key (0 when absent) and
	// returns the new value.
	Incr(ctx context.Context, key string) (int64, error)
	// Keys lists the keys that start with prefix, sorted.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Backend names the backend for humans: "embedded", "embedded (bbolt)", "redis".
	Backend() string
	// Close releases the backend's resources. It is safe to call twice.
	Close() error
}

// Caller sends a request to the primary and decodes its reply into resp.
// cluster.Worker implements it; it is safe for concurrent use. An error from
// the primary's handler comes back as an error whose text is the handler's.
type Caller interface {
	Call(ctx context.Context, method string, req, resp any) error
}
