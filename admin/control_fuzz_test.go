package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
)

// exitingPlane is a primary whose loop has ended: every call says so.
type exitingPlane struct{ fakePlane }

func (*exitingPlane) Status(context.Context) (cluster.Status, error) {
	return cluster.Status{}, cluster.ErrExiting
}
func (*exitingPlane) Reload(context.Context) error       { return cluster.ErrExiting }
func (*exitingPlane) Scale(context.Context, int) error   { return cluster.ErrExiting }
func (*exitingPlane) Upgrade(context.Context) error      { return cluster.ErrExiting }
func (*exitingPlane) Stop(context.Context) error         { return cluster.ErrExiting }
func (*exitingPlane) WaitReady(context.Context) error    { return cluster.ErrExiting }
func (*exitingPlane) Restart(context.Context, int) error { return cluster.ErrExiting }

// FuzzControlRequest feeds the control socket's request decoder any line a
// local client could send to a primary that is exiting, so no command
// acts: every line must get one JSON reply line that is an error with a
// code, never a panic or a hang.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`, `{"cmd":"reload"}`, `{"cmd":"upgrade"}`, `{"cmd":"stop"}`, `{"cmd":"wait-ready"}`,
		`{"cmd":"scale","n":3}`, `{"cmd":"scale","n":0}`, `{"cmd":"scale","n":99999999999999999999}`,
		`{"cmd":"scale","n":-1}`, `{"cmd":"nope"}`, `{"cmd":5}`, `{}`, `[]`, `null`, ``, `{`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			ServeControl(server, &exitingPlane{})
		}()
		go func() {
			_, _ = client.Write(append(line, '\n')) // a line with its own newline is cut there
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		reply, err := bufio.NewReader(client).ReadBytes('\n')
		if err != nil {
			t.Fatalf("request %q: no reply line: %v", line, err)
		}
		var r Reply
		if err := json.Unmarshal(reply, &r); err != nil {
			t.Fatalf("request %q: reply is not JSON: %q", line, reply)
		}
		if r.OK || r.Error == "" || (r.Code != CodeExiting && r.Code != CodeInvalid) {
			t.Fatalf("request %q to an exiting primary: reply %+v, want an error coded exiting or invalid", line, r)
		}
	})
}
