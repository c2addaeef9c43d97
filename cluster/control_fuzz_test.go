package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// FuzzControlRequest feeds the control socket's request decoder any line a
// local client could send. The primary is exiting (its loop is done), so no
// command acts; every line must get one JSON reply line that is an error,
// never a panic or a hang.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`, `{"cmd":"reload"}`, `{"cmd":"upgrade"}`, `{"cmd":"stop"}`,
		`{"cmd":"scale","n":3}`, `{"cmd":"scale","n":0}`, `{"cmd":"scale","n":99999999999999999999}`,
		`{"cmd":"scale","n":-1}`, `{"cmd":"nope"}`, `{"cmd":5}`, `{}`, `[]`, `null`, ``, `{`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	opts := Options{Workers: 1, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
	f.Fuzz(func(t *testing.T, line []byte) {
		p := newPrimary(opts, func(*primary, int) (int, handle, error) {
			return 0, nil, errors.New("no processes in a fuzz test")
		})
		close(p.doneC)
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			p.answerControl(server)
		}()
		go func() {
			_, _ = client.Write(append(line, '\n')) // a line with its own newline is cut there
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		reply, err := bufio.NewReader(client).ReadBytes('\n')
		if err != nil {
			t.Fatalf("request %q: no reply line: %v", line, err)
		}
		var r ControlReply
		if err := json.Unmarshal(reply, &r); err != nil {
			t.Fatalf("request %q: reply is not JSON: %q", line, reply)
		}
		if r.OK || r.Error == "" {
			t.Fatalf("request %q to an exiting primary: reply %+v, want an error", line, r)
		}
	})
}
