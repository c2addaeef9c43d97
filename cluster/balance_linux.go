package cluster

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

func accept4(fd int) (int, syscall.Sockaddr, error) {
	return syscall.Accept4(fd, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
}

// dupSocket returns a close-on-exec duplicate of sc's descriptor, which
// no poller watches.
func dupSocket(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// dupListener returns a duplicate of ln's socket that no poller watches,
// or -1.
func dupListener(ln net.Listener) int {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1
	}
	fd, err := dupSocket(sc)
	if err != nil {
		return -1
	}
	return fd
}
