package verify_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/herd-go/herd/verify"
)

// Verifying a server that is not herd: it answers, but nothing shows
// workers, so the herd-specific checks fail or are skipped, with the
// evidence.
func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "Hello World!")
	}))
	defer srv.Close()

	rep, err := verify.Run(context.Background(), verify.Options{
		URL:      srv.URL,
		Progress: func(c verify.Check) { fmt.Println(c) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Summary())
	// Output:
	// ✓ server answers: GET / → 200 "Hello World!" from a process without X-Worker-Id
	// ✗ requests spread over workers: 60 of 60 requests failed (first: GET /pid → 404 "404 page not found\n")
	// ✗ shared state across workers: POST /cluster/shared-state → 404 "404 page not found\n"
	// ✗ local state isolated per worker: GET /cluster/local-state → 404 "404 page not found\n"
	// ✗ CPU work runs in parallel: POST /cluster/cpu-intensive {"n":30} → 404 "404 page not found\n"
	// - crashed worker replaced: skipped: crash endpoint disabled (start herd with --enable-crash-endpoint): POST /cluster/crash → 404 "404 page not found\n"
	// - graceful shutdown drains: skipped: only for a cluster herd verify starts itself (run herd verify without a URL)
	// 1 passed, 4 failed, 2 skipped
}

// Starting a cluster to verify, as "herd verify" without a URL does. The
// herd binary's path is an assumption of this example.
func ExampleStartCluster() {
	ctx := context.Background()
	cl, err := verify.StartCluster(ctx, verify.ClusterOptions{Binary: "/usr/local/bin/herd", Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Kill() // whatever happens, nothing is left running
	rep, err := verify.Run(ctx, verify.Options{URL: cl.URL(), Cluster: cl})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = rep.WriteText(os.Stdout)
	_ = cl.Stop(ctx)
}
