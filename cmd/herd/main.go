// Command herd runs an HTTP server on every core as a supervised herd of
// worker processes sharing one port, and the tools to verify, load-test and
// control it. Run "herd help" for the commands.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

const usage = `herd runs an HTTP server on every core as supervised worker processes sharing one port.

usage: herd <command> [flags] [arguments]

commands:
  serve        run the demo application clustered (the default command)
  loadtest     send closed-loop HTTP load and report latency and worker distribution
  status       list the running primary's workers (id, pid, state, uptime, restarts, requests, memory)
  reload       replace every worker, one at a time, without dropping a request (like SIGHUP)
  upgrade      hand the sockets to a new primary started from the binary on disk (like SIGUSR2)
  scale N      run N workers (SIGTTIN/SIGTTOU add or remove one)
  stop         stop gracefully and wait until every worker has stopped (like SIGTERM)
  verify       check a running cluster (or one it starts) behaves as promised
  healthcheck  exit 0 if the server on --port answers /healthz, 1 otherwise
  version      print herd's version

Run "herd <command> --help" for a command's flags.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, stdout, stderr)
	case "loadtest":
		return cmdLoadtest(ctx, args, stdout, stderr)
	case "status", "reload", "upgrade", "scale", "stop":
		return cmdControl(ctx, cmd, args, stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "herd", version())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "herd: unknown command %q (commands: serve, loadtest, status, reload, upgrade, scale, stop, healthcheck, version, help)\n", cmd)
		return exitUsage
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

func printDefaults(w io.Writer, settings []setting) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	defineFlags(fs, settings)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
