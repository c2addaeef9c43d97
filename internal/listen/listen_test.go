package listen

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func nonblocking(t *testing.T, l *net.TCPListener) bool {
	t.Helper()
	rc, err := l.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags uintptr
	_ = rc.Control(func(fd uintptr) {
		flags, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	})
	return int(flags)&syscall.O_NONBLOCK != 0
}

// Handing the socket to a child must not switch the shared description to
// blocking mode (which made draining workers hang in accept4).
func TestPassableKeepsTheSocketNonBlocking(t *testing.T) {
	l, err := TCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := Passable(l)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 3 {
		_ = f.Fd() // what os/exec does for every ExtraFiles entry, at every spawn
		if !nonblocking(t, l) {
			t.Fatal("after Fd() on the passable file the socket is in blocking mode")
		}
	}

	// The plain File() does switch it: the reason Passable exists.
	g, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_ = g.Fd()
	if nonblocking(t, l) {
		t.Log("note: File().Fd() no longer switches the socket to blocking mode in this Go version")
	}
}

func TestTCPReportsAddressInUse(t *testing.T) {
	l, err := TCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := TCP(l.Addr().String()); !errors.Is(err, ErrInUse) {
		t.Fatalf("second listen on %s: %v, want ErrInUse", l.Addr(), err)
	}
}
