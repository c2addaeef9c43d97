//go:build !linux

package cluster

import "net"

// backlog is not known outside Linux.
func backlog(*net.TCPListener) Backlog { return Backlog{} }
