package ipc

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// Pair returns the two ends of a new Unix stream socketpair: a net.Conn for
// this process and an *os.File for a child process (pass it in
// exec.Cmd.ExtraFiles, then close it here once the child has started).
// Both are close-on-exec in this process.
func Pair() (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ipc: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "herd-ipc-parent")
	theirs := os.NewFile(uintptr(fds[1]), "herd-ipc-child")
	c, err := FileConn(mine)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// FileConn turns an inherited socket file into a net.Conn and closes f
// (the net.Conn holds its own duplicate).
func FileConn(f *os.File) (net.Conn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("ipc: fd %d is not a usable socket: %w", f.Fd(), err)
	}
	return c, nil
}
