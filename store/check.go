package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNotInteger is returned by Incr when the key holds a value that is not a
// decimal int64.
var ErrNotInteger = errors.New("store: value is not an integer")

// errNegativeTTL is returned by Set for a ttl below zero.
var errNegativeTTL = errors.New("store: negative ttl")

// errEmptyKey is returned for the empty key, which no backend stores.
var errEmptyKey = errors.New("store: empty key")

// checkCtx returns an error wrapping ctx.Err() when ctx is already done.
func checkCtx(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// checkCall returns an error when ctx is already done or key is empty.
func checkCall(ctx context.Context, key string) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if key == "" {
		return errEmptyKey
	}
	return nil
}

// checkTTL rejects a negative ttl.
func checkTTL(ttl time.Duration) error {
	if ttl < 0 {
		return errNegativeTTL
	}
	return nil
}

// incrValue returns the counter after cur, the value stored under a key
// (nil when absent), as Incr stores it.
func incrValue(cur []byte) (int64, []byte, error) {
	var n int64
	if cur != nil {
		v, err := strconv.ParseInt(string(cur), 10, 64)
		if err != nil {
			return 0, nil, ErrNotInteger
		}
		n = v
	}
	if n == 1<<63-1 {
		return 0, nil, fmt.Errorf("%w: increment would overflow", ErrNotInteger)
	}
	n++
	return n, strconv.AppendInt(nil, n, 10), nil
}
