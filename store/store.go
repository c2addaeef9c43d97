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

// ErrNoSpace wraps errors meaning the backend is out of space (a full disk
// under the state file, a Redis at its memory limit): the write did not
// happen. Reads and deletes still work. Callers answer 507.
var ErrNoSpace = errors.New("store: out of space")

// ErrClosed is returned by every method but Close and Backend after Close.
var ErrClosed = errors.New("store: closed")

// Store is shared key/value state. Implementations are safe for concurrent
// use. Keys are non-empty UTF-8 strings, opaque to the store; callers add
// their own prefix. Values are arbitrary bytes.
// Every method but Backend and Close returns an error wrapping ctx.Err() when
// ctx is already done, and an error wrapping ErrUnavailable when the backend
// cannot be reached; such errors never wrap ErrNotFound. A write that was
// sent but not answered wraps ErrOutcomeUnknown too: it may have happened.
// A write the backend has no space for wraps ErrNoSpace and did not happen.
type Store interface {
	// Get returns the value of key, or ErrNotFound. The slice is the
	// caller's own copy.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, replacing any value and TTL it had. A ttl
	// of 0 means no expiry; a negative ttl is an error. Set does not retain
	// value. It returns once the write is as durable as the backend makes it.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key, or returns ErrNotFound if it did not exist.
	Delete(ctx context.Context, key string) error
	// Incr atomically adds 1 to the integer under key (0 when absent) and
	// returns the new value. The value is stored as decimal text ("42"), so
	// Get of a counter returns its digits; a value that is not a decimal
	// int64 is an error. The key keeps its TTL, if any.
	Incr(ctx context.Context, key string) (int64, error)
	// Apply makes w (a Set, Delete or Incr) at most once per idempotency
	// key id: the first call with id makes the write and records its
	// result for IdempotencyTTL; later calls with the same id and the same
	// write make nothing and return that result with Replayed set, and with
	// another write they return ErrIdempotencyConflict. The write and the
	// record are one atomic step. A write that failed is not recorded, so
	// a retry makes it. An empty id makes the write without a record. A
	// Delete of an absent key is a result (NotFound), not an error.
	Apply(ctx context.Context, id string, w Write) (Result, error)
	// Keys lists the live keys that start with prefix, sorted bytewise.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Backend names the backend for humans: "embedded (memory)",
	// "embedded (bbolt)", "redis". It never fails.
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
