// Command counter is a shared counter on every core: the cluster as a
// value (cluster.New, Ready, Addr) and the embedded store hosted by the
// primary (store.NewHost) and reached from every worker (store.Remote).
// See README.md beside this file.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/store"
)

func main() {
	addr := "127.0.0.1:8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	opts := cluster.Options{Addr: addr}
	if !cluster.IsWorker() {
		// The primary holds the data (here in memory; store.OpenBolt for a
		// file) and answers the workers' store calls.
		host := store.NewHost(store.NewMemory())
		defer host.Close()
		opts.DataCalls = host.DataCalls
	}
	c, err := cluster.New(opts, func(ctx context.Context, w *cluster.Worker) error {
		st := store.Remote(w) // every worker sees the same store
		mux := http.NewServeMux()
		mux.HandleFunc("POST /hit", func(rw http.ResponseWriter, r *http.Request) {
			n, err := st.Incr(r.Context(), "hits")
			if err != nil {
				http.Error(rw, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(rw, "hit %d, counted by worker %d\n", n, w.ID)
		})
		return w.Serve(ctx, mux)
	})
	if err != nil {
		slog.Error("counter", "err", err)
		os.Exit(1)
	}
	if !cluster.IsWorker() {
		go func() {
			select {
			case <-c.Ready():
				slog.Info("every worker is ready", "addr", c.Addr().String())
			case <-c.Done():
			}
		}()
	}
	// Run handles SIGINT and SIGTERM itself: a graceful stop, then nil.
	if err := c.Run(context.Background()); err != nil {
		slog.Error("counter", "err", err)
		os.Exit(1)
	}
}
