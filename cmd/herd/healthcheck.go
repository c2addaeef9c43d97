package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// cmdHealthcheck asks a local server's /healthz, for container health checks
// (a Dockerfile's HEALTHCHECK has no curl in a distroless image).
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	defPort, defHost := healthcheckDefaults(os.Getenv)
	port := fs.Int("port", defPort, "port of the server to check (default $PORT or 3000)")
	host := fs.String("host", defHost, "host of the server to check (default $HOST unless it binds all interfaces, else 127.0.0.1)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	rest, err := parseArgs(fs, args)
	if err != nil || len(rest) > 0 || *port < 1 || *port > 65535 {
		fmt.Fprintln(stderr, "herd healthcheck: usage: herd healthcheck [--port 3000] [--host 127.0.0.1] [--timeout 2s]")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	url := "http://" + *host + ":" + strconv.Itoa(*port) + "/healthz"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
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

// healthcheckDefaults reads the server's own PORT and HOST settings, so that
// a container's HEALTHCHECK checks the port herd serves (a Dockerfile
// cannot know it at build time).
func healthcheckDefaults(getenv func(string) string) (int, string) {
	port, host := 3000, "127.0.0.1"
	if p, err := strconv.Atoi(getenv("PORT")); err == nil && p > 0 && p <= 65535 {
		port = p
	}
	if h := getenv("HOST"); h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			host = h
		}
	}
	return port, host
}
