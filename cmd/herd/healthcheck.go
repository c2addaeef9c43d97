package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const healthcheckUsage = "usage: herd healthcheck [--port 3000] [--host 127.0.0.1] [--timeout 2s]"

// cmdHealthcheck asks a local server's /healthz, for container health checks
// (a Dockerfile's HEALTHCHECK has no curl in a distroless image). It finds
// the server as serve does: --port and --host, else PORT and HOST from the
// environment, else from .env.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	settings, rest, err := loadSettings(fs, pick("port", "host"), args, osSources)
	if err != nil {
		fmt.Fprintf(stderr, "herd healthcheck: %v (%s)\n", err, healthcheckUsage)
		return exitUsage
	}
	if len(rest) > 0 || *timeout <= 0 {
		fmt.Fprintf(stderr, "herd healthcheck: %s\n", healthcheckUsage)
		return exitUsage
	}
	addr, err := localAddr(settings)
	if err != nil {
		fmt.Fprintf(stderr, "herd healthcheck: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	url := "http://" + addr + "/healthz"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // G704: the user's own --port on loopback is the target
	resp, err := http.DefaultClient.Do(req)                             //nolint:gosec // G704: the user's own --port on loopback is the target
	if err != nil {
		fmt.Fprintf(stderr, "herd healthcheck: %s: %v\n", url, err)
		return exitFail
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "herd healthcheck: %s answered %s\n", url, resp.Status)
		return exitFail
	}
	fmt.Fprintf(stdout, "ok: %s answered %s\n", url, resp.Status)
	return exitOK
}

// localAddr is where a client on this machine reaches the server these
// settings describe: the host, or loopback when serve would bind every
// interface (empty, 0.0.0.0 or ::), and the port (1 to 65535).
func localAddr(r resolved) (string, error) {
	port, err := parsePort(r, 1)
	if err != nil {
		return "", err
	}
	host := strings.Trim(strings.TrimSpace(r.get("host").s), "[]")
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
