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

// runner runs one command with the arguments after its name and returns
// the exit code.
type runner func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// command is one of herd's subcommands.
type command struct {
	name     string
	synopsis string // the arguments shown after the name in the usage, if any
	help     string
	run      runner // nil for help, which run handles: the usage is built from commands
}

// commands are herd's subcommands in the order the usage lists them. The
// dispatcher, the usage and the unknown-command message all come from this
// one list, so that none of them can forget a command.
var commands = []command{
	{name: "serve", help: "run the demo application clustered (the default command)", run: cmdServe},
	{name: "run", synopsis: "-- CMD", help: "supervise any program (Node, Python, ...) the same way, serving herd's socket (herd run --help)", run: cmdRun},
	{name: "loadtest", help: "send closed-loop HTTP load and report latency and worker distribution", run: cmdLoadtest},
	{name: "status", help: "list the running primary's workers (id, pid, state, uptime, restarts, requests, memory)", run: control("status")},
	{name: "top", help: "redraw the workers each second with requests/s and p50/p99 latency (also: herd status --watch)", run: cmdTop},
	{name: "reload", help: "replace every worker, one at a time, without dropping a request (like SIGHUP)", run: control("reload")},
	{name: "upgrade", help: "hand the sockets to a new primary started from the binary on disk (like SIGUSR2)", run: control("upgrade")},
	{name: "scale", synopsis: "N", help: "run N workers (SIGTTIN/SIGTTOU add or remove one)", run: control("scale")},
	{name: "stop", help: "stop gracefully and wait until every worker has stopped (like SIGTERM)", run: control("stop")},
	{name: "verify", help: "check a running cluster (or one it starts) behaves as promised", run: cmdVerify},
	{name: "healthcheck", help: "exit 0 if the server on --port answers /healthz, 1 otherwise", run: cmdHealthcheck},
	{name: "version", help: "print herd's version", run: cmdVersion},
	{name: "help", help: "print this help"},
}

func control(name string) runner {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return cmdControl(ctx, name, args, stdout, stderr)
	}
}

func cmdVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "herd", version())
	return exitOK
}

// usage is the text of "herd help".
func usage() string {
	var b strings.Builder
	b.WriteString("herd runs an HTTP server on every core as supervised worker processes sharing one port.\n\n")
	b.WriteString("usage: herd <command> [flags] [arguments]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-12s %s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.help)
	}
	b.WriteString("\nRun \"herd <command> --help\" for a command's flags.\n")
	return b.String()
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
		if c.name != name {
			continue
		}
		if c.run == nil {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		return c.run(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "herd: unknown command %q (commands: %s)\n", name, strings.Join(names, ", "))
	return exitUsage
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
