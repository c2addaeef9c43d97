// Command hello runs your own http.Handler on every core with herd's
// cluster library: a primary that supervises one worker process per core,
// all serving one port. See README.md beside this file.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/herd-go/herd/cluster"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	})

	opts := cluster.Options{Addr: "127.0.0.1:8080"} // zero values: one worker per usable core
	err := cluster.Run(context.Background(), opts, func(ctx context.Context, w *cluster.Worker) error {
		// This function runs in each worker process; w.Serve returns after
		// a graceful drain when the primary stops the worker.
		return w.Serve(ctx, mux)
	})
	if err != nil {
		slog.Error("hello", "err", err)
		os.Exit(1)
	}
}
