package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/herd-go/herd/verify"
)

const verifyUsage = `usage: herd verify [URL] [--json] [--workers N]

Checks that a herd server behaves as promised: it answers, spreads requests
over workers, shares state through the store and keeps local state per
worker, runs CPU-bound requests in parallel, replaces a crashed worker (when
started with --enable-crash-endpoint) and, for a cluster verify starts
itself, drains an in-flight request on SIGTERM. Each check prints ✓ or ✗
with its evidence, or - when skipped.

Without a URL, verify starts its own cluster (herd serve on a free loopback
port, crash endpoint enabled) and stops it afterwards.

flags:
  --json        print one JSON document instead of lines
  --workers N   workers of the cluster verify starts (default 2; not with a URL)

Exit code: 0 when no check failed, 1 when one did, 2 for bad usage.
`

// verifyBinary is the herd executable a verify without URL starts.
var verifyBinary = os.Executable

// cmdVerify runs "herd verify". It returns exitOK when no check failed,
// exitFail when one did (or the cluster it needed could not start), and
// exitUsage after one line on stderr for bad usage.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "herd verify: "+format+" (see herd verify --help)\n", a...)
		return exitUsage
	}
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "")
	workers := fs.Int("workers", verify.DefaultWorkers, "")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, verifyUsage)
		return exitOK
	}
	if err != nil {
		return usage("%s", strings.Replace(err.Error(), ": parse error", ": want a whole number", 1))
	}
	workersSet := false
	fs.Visit(func(f *flag.Flag) { workersSet = workersSet || f.Name == "workers" })
	var target string
	switch len(pos) {
	case 0:
	case 1:
		if target, err = verify.ParseURL(pos[0]); err != nil {
			return usage("%v", err)
		}
	default:
		return usage("too many arguments %q: want at most one URL", pos)
	}
	switch {
	case target != "" && workersSet:
		return usage("--workers applies only to the cluster verify starts itself, without a URL")
	case *workers < 2:
		return usage("--workers %d: want 2 or more, to have something to verify", *workers)
	}

	// Ctrl-C or SIGTERM end the checks, and the cluster verify started is
	// still stopped.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var cl *verify.Cluster
	if target == "" {
		bin, err := verifyBinary()
		if err != nil {
			fmt.Fprintf(stderr, "herd verify: finding the herd executable: %v\n", err)
			return exitFail
		}
		copts := verify.ClusterOptions{Binary: bin, Workers: *workers}
		if !*jsonOut {
			fmt.Fprintf(stdout, "starting herd %s\n", strings.Join(verify.ClusterArgs(copts), " "))
		}
		cl, err = verify.StartCluster(ctx, copts)
		if err != nil {
			fmt.Fprintf(stderr, "herd %v\n", err)
			return exitFail
		}
		defer cl.Kill() // after Stop, only makes sure
		target = cl.URL()
	}
	if !*jsonOut {
		fmt.Fprintf(stdout, "verifying %s\n", target)
	}
	opts := verify.Options{URL: target, Cluster: cl}
	if !*jsonOut {
		opts.Progress = func(c verify.Check) { fmt.Fprintln(stdout, c) }
	}
	rep, runErr := verify.Run(ctx, opts)
	if rep == nil {
		fmt.Fprintf(stderr, "herd %v\n", runErr)
		return exitFail
	}
	code := exitOK
	if cl != nil {
		sctx, cancel := context.WithTimeout(context.Background(), verify.DefaultShutdownTimeout+5*time.Second)
		if err := cl.Stop(sctx); err != nil && rep.OK() {
			// The checks passed but the cluster did not stop cleanly.
			fmt.Fprintf(stderr, "herd %v\n", err)
			code = exitFail
		}
		cancel()
	}
	if *jsonOut {
		b, err := rep.JSON()
		if err != nil {
			fmt.Fprintf(stderr, "herd verify: %v\n", err)
			return exitFail
		}
		stdout.Write(b)
	} else {
		fmt.Fprintln(stdout, rep.Summary())
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(stderr, "herd verify: interrupted: %v\n", runErr)
		return exitFail
	case !rep.OK():
		return exitFail
	}
	return code
}
