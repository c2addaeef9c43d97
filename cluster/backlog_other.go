//go:build !linux

package cluster

import "syscall"

// backlog is not known outside Linux.
func backlog(syscall.Conn) Backlog { return Backlog{} }
