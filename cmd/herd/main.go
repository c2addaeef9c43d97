// Command herd runs an HTTP server on every core as a supervised herd of
// worker processes sharing one port, and the tools to verify, load-test and
// control it.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "herd: not yet")
	os.Exit(exitFail)
}
