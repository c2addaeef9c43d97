package main

import (
	"flag"
	"io"
)

// Exit codes of the herd command. Only main calls os.Exit with them.
const (
	exitOK    = 0 // success
	exitFail  = 1 // the command ran and something failed (a check, a request, no primary)
	exitUsage = 2 // bad flags, arguments or configuration: nothing was started

	// exitStartFailed: the server could not start at all (a worker's
	// dependency failed before it was ready, in every worker); restarting
	// it at once will not help. cluster.ExitStartFailed, as gunicorn's 3.
	exitStartFailed = 3
)

// parseArgs parses args with fs, allowing flags before and after positional
// arguments ("herd scale 4 --port 3100" and "herd scale --port 3100 4").
// A lone "--" ends flag parsing; everything after it is positional.
// fs should be created with flag.ContinueOnError; its output is discarded so
// that the caller prints one line for a bad flag.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse stops at the first non-flag or after "--". If the token
		// before rest is "--", everything left is positional.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
