package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/herd-go/herd/cluster"
)

// Run a handler on every core. The same main runs in the primary and in
// each worker; Run tells them apart. (Not run as a test: it serves forever.)
func ExampleRun() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	})
	opts := cluster.Options{
		Addr:   ":8080",
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	}
	err := cluster.Run(context.Background(), opts, func(ctx context.Context, w *cluster.Worker) error {
		return w.Serve(ctx, mux) // returns after a graceful drain
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Ask the primary something from a worker: Options.Calls answers in the
// primary, Worker.Call asks in the worker.
func ExampleWorker_Call() {
	opts := cluster.Options{
		Calls: func(ctx context.Context, method string, body json.RawMessage) (any, error) {
			return map[string]string{"answer": "from the primary"}, nil
		},
	}
	_ = cluster.Run(context.Background(), opts, func(ctx context.Context, w *cluster.Worker) error {
		var reply map[string]string
		if err := w.Call(ctx, "app.question", nil, &reply); err != nil {
			return err
		}
		w.Logger().Info("primary answered", "answer", reply["answer"])
		return w.Serve(ctx, http.NotFoundHandler())
	})
}
