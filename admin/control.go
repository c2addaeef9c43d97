package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/herd-go/herd/cluster"
)

// The control socket speaks one JSON request line and one JSON reply line
// per connection:
//
//	{"cmd":"status"}            → {"ok":true,"status":{…}}
//	{"cmd":"scale","n":4}       → {"ok":true,"message":"4 workers ready","status":{…}}
//	{"cmd":"reload"}            → {"ok":false,"code":"failed","error":"cluster: …"}
//
// Commands: status, reload, upgrade, scale, stop and wait-ready. The reply
// comes when the command is complete: a reload once every worker has been
// replaced, a scale once the workers are ready or gone, a stop once every
// worker has stopped, a wait-ready once every wanted worker is ready. A
// failed reply's code says why: "failed" (the command ran and failed; the
// error is the primary's reason), "invalid" (a request the primary does
// not take) or "exiting" (the primary is exiting).

// Commands on the control socket.
const (
	CmdStatus    = "status"
	CmdReload    = "reload"
	CmdUpgrade   = "upgrade"
	CmdScale     = "scale"
	CmdStop      = "stop"
	CmdWaitReady = "wait-ready"
)

// Reply codes of a failed command.
const (
	CodeFailed  = "failed"
	CodeInvalid = "invalid"
	CodeExiting = "exiting"
)

// Request is one command to a primary.
type Request struct {
	Cmd string `json:"cmd"`         // status, reload, upgrade, scale, stop, wait-ready
	N   int    `json:"n,omitempty"` // scale's worker count
}

// Reply is a primary's answer.
type Reply struct {
	OK      bool            `json:"ok"`
	Code    string          `json:"code,omitempty"` // when not OK: failed, invalid or exiting
	Error   string          `json:"error,omitempty"`
	Message string          `json:"message,omitempty"`
	Status  *cluster.Status `json:"status,omitempty"`
}

// maxRequest bounds what one control request may send.
const maxRequest = 1 << 20

// ServeControl answers one connection to the control socket for the
// primary pl: it reads one request line (within 10 s, at most 1 MiB),
// carries the command out, waits for its outcome and writes one reply
// line. It is what cluster.Options.ServeControl wants. It does not close
// c. A malformed request gets an "invalid" reply, never a panic.
func ServeControl(c net.Conn, pl cluster.Plane) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, maxRequest)).ReadBytes('\n')
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var req Request
	var reply Reply
	if err := json.Unmarshal(line, &req); err != nil {
		reply = Reply{Code: CodeInvalid, Error: "malformed request: " + err.Error()}
	} else {
		reply = answer(context.Background(), pl, req)
	}
	b, _ := json.Marshal(reply)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(append(b, '\n'))
}

// answer carries out one command and waits for its outcome.
func answer(ctx context.Context, pl cluster.Plane, req Request) Reply {
	var run func() error
	var msg string
	switch req.Cmd {
	case CmdStatus:
		return withStatus(ctx, pl, Reply{OK: true})
	case CmdReload:
		run, msg = func() error { return pl.Reload(ctx) }, "every worker replaced"
	case CmdUpgrade:
		run, msg = func() error { return pl.Upgrade(ctx) }, "the new primary's workers are ready; this primary is draining"
	case CmdScale:
		if req.N < 1 || req.N > 1024 {
			return Reply{Code: CodeInvalid, Error: fmt.Sprintf("cannot scale to %d: the worker count must be from 1 to 1024", req.N)}
		}
		run, msg = func() error { return pl.Scale(ctx, req.N) }, fmt.Sprintf("%d workers ready", req.N)
	case CmdStop:
		if err := pl.Stop(ctx); err != nil {
			return failed(err)
		}
		return Reply{OK: true, Message: "every worker stopped; the primary is exiting"}
	case CmdWaitReady:
		run, msg = func() error { return pl.WaitReady(ctx) }, "every worker ready"
	default:
		return Reply{Code: CodeInvalid, Error: fmt.Sprintf("unknown command %q (status, reload, upgrade, scale, stop, wait-ready)", req.Cmd)}
	}
	if err := run(); err != nil {
		return failed(err)
	}
	r := withStatus(ctx, pl, Reply{OK: true, Message: msg})
	if !r.OK { // done, but the primary is exiting now: still a success
		return Reply{OK: true, Message: msg}
	}
	return r
}

func withStatus(ctx context.Context, pl cluster.Plane, r Reply) Reply {
	s, err := pl.Status(ctx)
	if err != nil {
		return failed(err)
	}
	r.Status = &s
	return r
}

func failed(err error) Reply {
	if errors.Is(err, cluster.ErrExiting) {
		return Reply{Code: CodeExiting, Error: err.Error()}
	}
	return Reply{Code: CodeFailed, Error: err.Error()}
}
