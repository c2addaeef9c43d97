package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

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

// A cluster as a value: start it, wait until every worker is ready, use
// its address, stop it gracefully. In a worker process (this same binary,
// re-executed) New and Run play the worker's part and call the function.
func ExampleNew() {
	c, err := cluster.New(cluster.Options{
		Addr:    "127.0.0.1:0", // any free port: Addr says which
		Workers: 2,
		Logger:  slog.New(slog.DiscardHandler),
	}, func(ctx context.Context, w *cluster.Worker) error {
		return w.Serve(ctx, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(rw, "hello")
		}))
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()

	select {
	case <-c.Ready():
	case err := <-runErr:
		fmt.Println("cluster stopped:", err)
		return
	}
	resp, err := http.Get("http://" + c.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("status", resp.StatusCode)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("shutdown:", c.Shutdown(ctx)) // waits for every worker to finish
	fmt.Println("run:", <-runErr)
	// Output:
	// status 200
	// shutdown: <nil>
	// run: <nil>
}
