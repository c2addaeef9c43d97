// Command plain serves herd's demo application from one ordinary net/http
// process: the baseline that make bench compares herd against. It prints
// "listening ADDR" on stdout once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/herd-go/herd/app"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, app.New(app.Options{}))) //nolint:gosec // G114: a benchmark baseline that must match plain net/http defaults
}
