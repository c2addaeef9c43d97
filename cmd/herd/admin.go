package main

import (
	"net"
	"strconv"
	"strings"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
)

// parseAdminAddr validates --admin-addr: auto, off, or host:port.
func parseAdminAddr(r resolved, v string) (string, error) {
	a := strings.TrimSpace(v)
	switch strings.ToLower(a) {
	case "auto", "":
		return cluster.AdminAuto, nil
	case "off":
		return "", nil
	}
	host, port, err := net.SplitHostPort(a)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		return "", r.bad("admin-addr", "must be host:port (such as 127.0.0.1:9300; port 0 picks a free one), auto or off")
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return "", r.bad("admin-addr", "the host must be an IP address or localhost")
	}
	return a, nil
}

// adminOptions configures the primary's admin listener.
func adminOptions(cfg serveConfig) cluster.Admin {
	if cfg.AdminAddr == "" {
		return cluster.Admin{}
	}
	return cluster.Admin{Addr: cfg.AdminAddr, Token: cfg.AdminToken, Handler: admin.Handler}
}
