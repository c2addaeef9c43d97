package cluster

import (
	"net"
	"os"

	"github.com/herd-go/herd/internal/listen"
)

// SocketActivated reports whether a service manager passed this process
// its listening socket (systemd's LISTEN_PID names this process). Run then
// serves on that socket and Options.Addr is not used.
func SocketActivated() bool {
	return !IsWorker() && os.Getenv(EnvUpgradeFrom) == "" && listen.SocketActivated()
}

// openListener returns the socket systemd passed by socket activation or,
// without one, a new listener on addr.
func (p *primary) openListener(addr string) (*net.TCPListener, error) {
	ln, name, err := listen.Activated()
	if err != nil {
		return nil, err
	}
	if ln != nil {
		p.log.Info("socket activation: serving on the socket the service manager passed",
			"addr", ln.Addr().String(), "name", name, "ignored_addr", addr)
		return ln, nil
	}
	return listen.TCP(addr)
}
