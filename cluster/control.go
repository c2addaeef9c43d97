package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The control socket speaks one JSON request line and one JSON reply line
// per connection. The reply comes when the command is complete: a reload
// once every worker has been replaced, a scale once the workers are ready
// or gone, a stop once every worker has stopped.

// ControlRequest is a command to a primary.
type ControlRequest struct {
	Cmd string `json:"cmd"`         // status, reload, upgrade, scale, stop
	N   int    `json:"n,omitempty"` // scale's worker count
}

// ControlReply is a primary's answer.
type ControlReply struct {
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Status  *Status `json:"status,omitempty"`
}

// ErrNoControl means no primary answers on the control socket.
var ErrNoControl = errors.New("cluster: no herd primary is running there")

// ControlSocketDir is the private directory of the default control
// sockets: $XDG_RUNTIME_DIR/herd when XDG_RUNTIME_DIR is set (an absolute
// path), else herd-UID in the temporary directory ($TMPDIR, else /tmp).
// The primary creates it with mode 0700 and refuses to use one that is not
// a directory of this user's, or that others may enter (as tmux does), so
// no other local user can take the socket's name first.
func ControlSocketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "herd")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("herd-%d", os.Getuid()))
}

// ControlSocketPath is the default control socket of the primary serving
// port: herd-PORT.sock in ControlSocketDir. The commands (herd status and
// the others) compute the same path.
func ControlSocketPath(port int) string {
	return filepath.Join(ControlSocketDir(), fmt.Sprintf("herd-%d.sock", port))
}

// privateDir creates dir (mode 0700) if it is missing, and checks that it
// is a real directory (not a symbolic link) owned by this user with no
// permission for group or others.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cluster: control socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("cluster: control socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("cluster: control socket directory %s is not a directory (%s)", dir, fi.Mode().Type())
	case ok && int(st.Uid) != os.Getuid():
		return fmt.Errorf("cluster: control socket directory %s belongs to uid %d, not this user (%d)", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("cluster: control socket directory %s has mode %04o: others may enter it; want 0700", dir, fi.Mode().Perm())
	}
	return nil
}

// Control sends req to the primary listening on the control socket at path
// and waits for its reply (or ctx's end). It returns ErrNoControl, wrapped,
// when nothing listens there.
func Control(ctx context.Context, path string, req ControlRequest) (ControlReply, error) {
	var reply ControlReply
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return reply, fmt.Errorf("%w (control socket %s)", ErrNoControl, path)
		}
		return reply, fmt.Errorf("cluster: control socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return reply, fmt.Errorf("cluster: control socket %s: %w", path, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return reply, ctx.Err()
		}
		return reply, fmt.Errorf("cluster: the primary closed the control connection without answering: %w", err)
	}
	if err := json.Unmarshal(line, &reply); err != nil {
		return reply, fmt.Errorf("cluster: malformed control reply: %w", err)
	}
	return reply, nil
}

// listenControl opens the control socket at path with mode 0600, replacing
// a stale socket file left by a dead primary.
func listenControl(path string) (*net.UnixListener, error) {
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("cluster: another herd primary is listening on the control socket %s", path)
		}
		os.Remove(path) // stale: nothing answers
	}
	old := syscall.Umask(0o177) // created 0600, with no window where others could connect
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("cluster: control socket: %w", err)
	}
	l.SetUnlinkOnClose(false) // we decide: not after handing it to a new primary
	return l, nil
}

// serveControl answers control connections until l is closed. wg counts
// the connections being answered.
func (p *primary) serveControl(l *net.UnixListener, wg *sync.WaitGroup) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			p.answerControl(c)
		}()
	}
}

func (p *primary) answerControl(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io1MiB{c}).ReadBytes('\n')
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var req ControlRequest
	reply := ControlReply{}
	if err := json.Unmarshal(line, &req); err != nil {
		reply.Error = "malformed request: " + err.Error()
	} else {
		reply = p.control(req)
	}
	b, _ := json.Marshal(reply)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(append(b, '\n'))
}

// io1MiB bounds what one control request may send.
type io1MiB struct{ c net.Conn }

func (r io1MiB) Read(b []byte) (int, error) {
	if len(b) > 1<<20 {
		b = b[:1<<20]
	}
	return r.c.Read(b)
}

// control carries out one command and waits for its outcome.
func (p *primary) control(req ControlRequest) ControlReply {
	done := make(chan error, 1)
	var start func()
	var msg string
	switch req.Cmd {
	case "status":
		var s Status
		if !p.do(func() { s = p.status() }) {
			return ControlReply{Error: "the primary is exiting"}
		}
		return ControlReply{OK: true, Status: &s}
	case "reload":
		start = func() { p.reload(done) }
		msg = "every worker replaced"
	case "upgrade":
		start = func() { p.upgrade(done) }
		msg = "the new primary's workers are ready; this primary is draining"
	case "scale":
		if req.N < 1 || req.N > 1024 {
			return ControlReply{Error: fmt.Sprintf("cannot scale to %d: the worker count must be from 1 to 1024", req.N)}
		}
		n := req.N
		start = func() {
			if p.shutting {
				done <- errors.New("the primary is shutting down")
				return
			}
			p.scale(n)
			p.await(func() (bool, error) { return p.scaled(n) }, done)
		}
		msg = fmt.Sprintf("%d workers ready", n)
	case "stop":
		start = func() {
			p.stopWaiters = append(p.stopWaiters, done)
			p.shutdown("herd stop")
		}
		msg = "every worker stopped; the primary is exiting"
	default:
		return ControlReply{Error: fmt.Sprintf("unknown command %q (status, reload, upgrade, scale, stop)", req.Cmd)}
	}
	if !p.do(start) {
		return ControlReply{Error: "the primary is exiting"}
	}
	select {
	case err := <-done:
		if err != nil {
			return ControlReply{Error: err.Error()}
		}
	case <-p.doneC:
		select {
		case err := <-done:
			if err != nil {
				return ControlReply{Error: err.Error()}
			}
		default:
			return ControlReply{Error: "the primary exited before the command completed"}
		}
	}
	var s Status
	if !p.do(func() { s = p.status() }) {
		return ControlReply{OK: true, Message: msg}
	}
	return ControlReply{OK: true, Message: msg, Status: &s}
}
