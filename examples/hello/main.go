// Command hello runs your own http.Handler on every core with herd's
// cluster library: a primary that supervises one worker process per core,
// all serving one port. See README.md beside this file.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/herd-go/herd/cluster"
)

func main() {
	addr := os.Getenv("HELLO_ADDR") // host:port; port 0 picks a free one
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	opts := cluster.Options{Addr: addr} // zero values: one worker per usable core
	err := cluster.Run(context.Background(), opts, func(ctx context.Context, w *cluster.Worker) error {
		// This function runs in each worker process. Set-up that can fail
		// goes here, before Serve: an error returned before the worker is
		// ready means it cannot start (cluster.ErrStartFailed).
		mux, err := newMux()
		if err != nil {
			return err
		}
		// w.Serve returns after a graceful drain when the primary stops
		// the worker.
		return w.Serve(ctx, mux)
	})
	if err != nil {
		slog.Error("hello", "err", err)
		if errors.Is(err, cluster.ErrStartFailed) {
			// A worker that cannot start, or a primary whose every worker
			// could not: restarting at once will not help.
			os.Exit(cluster.ExitStartFailed)
		}
		os.Exit(1)
	}
}

// newMux builds the handler. With HELLO_GREETING_FILE set, the greeting is
// that file's first line, read by each worker at start: a file it cannot
// read makes every worker fail at start, and the program exit with code 3
// (cluster.ExitStartFailed) rather than restart them forever.
func newMux() (*http.ServeMux, error) {
	greeting := "hello"
	if path := os.Getenv("HELLO_GREETING_FILE"); path != "" {
		b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
		if err != nil {
			return nil, fmt.Errorf("hello: HELLO_GREETING_FILE: %w", err)
		}
		greeting, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from pid %d\n", greeting, os.Getpid())
	})
	return mux, nil
}
