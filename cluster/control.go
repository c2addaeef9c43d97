package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The primary owns the control socket's file (it opens it, hands it to a
// new primary on upgrade, removes it on exit); what is said on it belongs
// to Options.ServeControl (package admin speaks herd's protocol).

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

// serveControl accepts control connections until l is closed and hands
// each to Options.ServeControl in its own goroutine. wg counts the
// connections being answered.
func (p *primary) serveControl(l *net.UnixListener, wg *sync.WaitGroup) {
	serve := p.opts.ServeControl
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if serve == nil { // an inherited socket, with nothing to answer on it
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			serve(c, plane{p})
		}()
	}
}
