package main

import (
	"fmt"
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

// parseMetrics reads --metrics. Off, there is nothing for the admin
// listener to show, so it is off too; an admin address the user asked for
// alongside --metrics false is a contradiction, reported rather than
// silently dropped.
func parseMetrics(r resolved, adminAddr string) (bool, error) {
	on, err := parseBool(r.setting("metrics"), r.get("metrics"))
	if err != nil || on {
		return on, err
	}
	if a := r.get("admin-addr"); a.kind != fromDefault && adminAddr != "" {
		name, from := r.get("metrics").origin(r.setting("metrics"))
		return false, badSetting(r.setting("admin-addr"), a, fmt.Sprintf("the admin listener serves the metrics, which %s %q%s turns off: drop it or set it to off", name, r.get("metrics").s, from))
	}
	return false, nil
}

// adminOptions configures the primary's admin listener.
func adminOptions(cfg serveConfig) cluster.Admin {
	if cfg.AdminAddr == "" {
		return cluster.Admin{}
	}
	return cluster.Admin{Addr: cfg.AdminAddr, Token: cfg.AdminToken, Handler: admin.Handler}
}
