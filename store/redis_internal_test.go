package store

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRedisSent: a write error means "maybe made" unless the command never
// left: no connection (dial, pool timeout, closed client).
func TestRedisSent(t *testing.T) {
	r := &redisStore{addr: "127.0.0.1:1"}
	ctx := context.Background()
	for _, tc := range []struct {
		err     error
		unknown bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{redis.ErrPoolTimeout, false},
		{io.EOF, true}, // the connection died after the command was written
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}, true},
		{context.DeadlineExceeded, true},
	} {
		err := r.wrapWrite(ctx, tc.err)
		if errors.Is(err, ErrOutcomeUnknown) != tc.unknown || !errors.Is(err, ErrUnavailable) {
			t.Errorf("wrapWrite(%v) = %v; want ErrUnavailable, ErrOutcomeUnknown %v", tc.err, err, tc.unknown)
		}
	}
	if err := r.wrapWrite(ctx, redis.ErrClosed); !errors.Is(err, ErrClosed) || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("wrapWrite(closed client) = %v, want ErrClosed only", err)
	}
	// A read is never "unknown".
	if err := r.wrap(ctx, io.EOF); errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("wrap(EOF) for a read = %v, want no ErrOutcomeUnknown", err)
	}
}
