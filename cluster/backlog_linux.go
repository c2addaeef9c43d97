package cluster

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// backlog reads the accept queue of listening socket ln from the kernel:
// for a socket in the LISTEN state, TCP_INFO's tcpi_unacked is the number
// of connections waiting to be accepted and tcpi_sacked the queue's limit.
func backlog(ln syscall.Conn) Backlog {
	if ln == nil {
		return Backlog{}
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return Backlog{}
	}
	var b Backlog
	_ = rc.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil && ti.State == unix.BPF_TCP_LISTEN {
			b = Backlog{Known: true, Queued: ti.Unacked, Limit: ti.Sacked}
		}
	})
	return b
}
