package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/herd-go/herd/cluster"
)

// Defaults of Client.
const (
	// DefaultQueryTimeout bounds Status: a healthy primary answers at once,
	// so waiting longer only hides a stopped (SIGSTOP) or wedged one.
	DefaultQueryTimeout = 5 * time.Second
	// DefaultActionTimeout bounds the commands that wait for workers.
	DefaultActionTimeout = 10 * time.Minute
)

var (
	// ErrNoPrimary means no primary answers on the control socket: no
	// socket file there, or a stale one nothing listens on.
	ErrNoPrimary = errors.New("admin: no herd primary is running")
	// ErrTimeout means the primary did not answer within the client's
	// timeout (QueryTimeout or ActionTimeout): it is stopped, wedged or
	// overloaded, or (for an action) its workers take longer than that; an
	// action may still complete.
	ErrTimeout = errors.New("admin: the primary did not answer in time")
)

// CommandError is a command the primary took and that failed, or a
// request it does not take. Reason is the primary's own words ("cluster:
// worker 1's replacement … exited before it was ready; the old worker keeps
// serving").
type CommandError struct {
	Cmd     string // status, reload, upgrade, scale, stop, wait-ready
	Reason  string
	Invalid bool // the request was refused as invalid, nothing was done
}

func (e *CommandError) Error() string {
	return "admin: " + e.Cmd + " failed: " + e.Reason
}

// Client talks to a primary over its control socket. The zero value with
// Path set is ready to use; it is safe for concurrent use, and each call
// opens its own connection.
type Client struct {
	// Path is the control socket (cluster.ControlSocketPath(port) for a
	// primary with the default one).
	Path string
	// QueryTimeout bounds Status (default DefaultQueryTimeout).
	QueryTimeout time.Duration
	// ActionTimeout bounds Reload, Upgrade, Scale, Stop and WaitReady
	// (default DefaultActionTimeout).
	ActionTimeout time.Duration
}

// NewClient returns a client for the control socket at path with the
// default timeouts.
func NewClient(path string) *Client { return &Client{Path: path} }

// Status returns the primary's status document.
func (c *Client) Status(ctx context.Context) (cluster.Status, error) {
	return c.status(ctx, Request{Cmd: CmdStatus})
}

// Reload replaces every worker, one at a time, replacement first, and
// returns the status once all are replaced, or a *CommandError with the
// primary's reason (the old workers keep serving).
func (c *Client) Reload(ctx context.Context) (cluster.Status, error) {
	return c.status(ctx, Request{Cmd: CmdReload})
}

// Upgrade starts a new primary from the executable on disk and returns
// this primary's status once the new one's workers are ready (this one is
// then draining), or a *CommandError with the reason it failed.
func (c *Client) Upgrade(ctx context.Context) (cluster.Status, error) {
	return c.status(ctx, Request{Cmd: CmdUpgrade})
}

// Scale runs n workers (1 to 1024) and returns the status once they are
// ready and the retired ones have drained.
func (c *Client) Scale(ctx context.Context, n int) (cluster.Status, error) {
	return c.status(ctx, Request{Cmd: CmdScale, N: n})
}

// Stop stops the primary gracefully and returns once every worker has
// stopped.
func (c *Client) Stop(ctx context.Context) error {
	_, err := c.Do(ctx, Request{Cmd: CmdStop})
	return err
}

// WaitReady waits until every worker the primary wants is ready and
// returns the status then. It returns at once when they already are.
func (c *Client) WaitReady(ctx context.Context) (cluster.Status, error) {
	return c.status(ctx, Request{Cmd: CmdWaitReady})
}

func (c *Client) status(ctx context.Context, req Request) (cluster.Status, error) {
	r, err := c.Do(ctx, req)
	if err != nil {
		return cluster.Status{}, err
	}
	if r.Status == nil {
		return cluster.Status{}, fmt.Errorf("admin: %s: the primary's reply has no status", req.Cmd)
	}
	return *r.Status, nil
}

// errClientTimeout marks the client's own timeout, as opposed to the caller's.
var errClientTimeout = errors.New("admin: client timeout")

// Do sends req and waits for the reply, within the client's timeout for
// the command (and ctx). A reply that is not OK is returned as an error:
// a *CommandError, or one wrapping cluster.ErrExiting. Other errors wrap
// ErrNoPrimary, ErrTimeout, or ctx's error.
func (c *Client) Do(ctx context.Context, req Request) (Reply, error) {
	d := c.ActionTimeout
	if d <= 0 {
		d = DefaultActionTimeout
	}
	if req.Cmd == CmdStatus {
		d = c.QueryTimeout
		if d <= 0 {
			d = DefaultQueryTimeout
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, d, errClientTimeout)
	defer cancel()
	reply, err := c.roundTrip(ctx, req)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			<-ctx.Done() // a dial gives up at ctx's deadline, a moment before ctx says so
		}
		if ctx.Err() != nil {
			if context.Cause(ctx) == errClientTimeout { //nolint:errorlint // our own sentinel, never wrapped
				return reply, fmt.Errorf("%w: no answer to %s within %s (control socket %s)", ErrTimeout, req.Cmd, d, c.Path)
			}
			return reply, fmt.Errorf("admin: %s: %w", req.Cmd, ctx.Err())
		}
		return reply, err
	}
	if !reply.OK {
		switch reply.Code {
		case CodeExiting:
			return reply, fmt.Errorf("admin: %s: %w", req.Cmd, cluster.ErrExiting)
		default:
			return reply, &CommandError{Cmd: req.Cmd, Reason: reply.Error, Invalid: reply.Code == CodeInvalid}
		}
	}
	return reply, nil
}

func (c *Client) roundTrip(ctx context.Context, req Request) (Reply, error) {
	var reply Reply
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return reply, fmt.Errorf("%w (nothing answers on %s)", ErrNoPrimary, c.Path)
		}
		return reply, fmt.Errorf("admin: control socket %s: %w", c.Path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return reply, fmt.Errorf("admin: control socket %s: %w", c.Path, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return reply, fmt.Errorf("admin: the primary closed the control connection without answering %s: %w", req.Cmd, err)
	}
	if err := json.Unmarshal(line, &reply); err != nil {
		return reply, fmt.Errorf("admin: malformed control reply: %w", err)
	}
	return reply, nil
}
