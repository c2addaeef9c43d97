package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// cmdHealthcheck asks a local server's /healthz, for container health checks
// (a Dockerfile's HEALTHCHECK has no curl in a distroless image).
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	port := fs.Int("port", 3000, "port of the server to check")
	host := fs.String("host", "127.0.0.1", "host of the server to check")
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
