package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
)

// controlUsage describes the commands that talk to a running primary.
var controlUsage = map[string]string{
	"status":  "usage: herd status [--port 3000 | --control-socket PATH] [--json] [--timeout 5s]\n\nPrints every worker of the running primary: id, pid, state, uptime, restarts, requests, memory.\nExits 1 if the primary does not answer within the timeout (stopped, wedged).\n",
	"reload":  "usage: herd reload [--port 3000 | --control-socket PATH] [--timeout 10m]\n\nReplaces every worker one at a time, each new one ready before the old one drains (like SIGHUP),\nand waits until all are replaced. Exits 1 if a replacement failed (the old worker keeps serving).\n",
	"upgrade": "usage: herd upgrade [--port 3000 | --control-socket PATH] [--timeout 10m]\n\nStarts a new primary from the executable on disk and hands it the sockets (like SIGUSR2);\nthe old primary drains once the new one's workers are ready. Exits 1 if the new one failed.\n",
	"scale":   "usage: herd scale N [--port 3000 | --control-socket PATH] [--timeout 10m]\n\nRuns N workers (1 to 1024), waiting until they are ready and the retired ones have drained.\n",
	"stop":    "usage: herd stop [--port 3000 | --control-socket PATH] [--timeout 10m]\n\nStops the primary gracefully (like SIGTERM) and waits until every worker has stopped.\n",
}

// cmdControl runs status, reload, upgrade, scale and stop against the
// primary found by --port or --control-socket.
func cmdControl(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if wantsHelp(args) {
		fmt.Fprint(stdout, controlUsage[name])
		return exitOK
	}
	if name == "status" && wantsWatch(args) {
		return cmdTop(ctx, args, stdout, stderr) // top.go
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	// A query is answered at once by a healthy primary: waiting long only
	// hides a stopped (SIGSTOP) or wedged one. Actions wait for workers.
	defTimeout := 10 * time.Minute
	if name == "status" {
		defTimeout = queryTimeout
	}
	timeout := fs.Duration("timeout", defTimeout, "how long to wait for the command to complete")
	// --port and --control-socket, from the same sources as serve's.
	settings, rest, err := loadSettings(fs, pick("port", "control-socket"), args, osSources)
	if err != nil {
		fmt.Fprintf(stderr, "herd %s: %v\n", name, err)
		return exitUsage
	}
	n := 0
	if name == "scale" {
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "herd scale: want exactly one argument, the worker count (1 to 1024)")
			return exitUsage
		}
		var err error
		n, err = strconv.Atoi(rest[0])
		if err != nil || n < 1 || n > maxWorkers {
			fmt.Fprintf(stderr, "herd scale: invalid worker count %q: must be a whole number from 1 to %d\n", rest[0], maxWorkers)
			return exitUsage
		}
		rest = nil
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "herd %s: unexpected argument %q\n", name, rest[0])
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "herd %s: invalid --timeout %s: must be positive\n", name, *timeout)
		return exitUsage
	}
	path, err := controlSocketFor(settings)
	if err != nil {
		fmt.Fprintf(stderr, "herd %s: %v\n", name, err)
		return exitUsage
	}
	c := &admin.Client{Path: path, QueryTimeout: *timeout, ActionTimeout: *timeout}
	var st cluster.Status
	var msg string
	switch name {
	case "status":
		st, err = c.Status(ctx)
	case "reload":
		st, err = c.Reload(ctx)
		msg = "every worker replaced"
	case "upgrade":
		st, err = c.Upgrade(ctx)
		msg = "the new primary's workers are ready; this primary is draining"
	case "scale":
		st, err = c.Scale(ctx, n)
		msg = fmt.Sprintf("%d workers ready", n)
	case "stop":
		err = c.Stop(ctx)
		msg = "every worker stopped; the primary is exiting"
	}
	var ce *admin.CommandError
	switch {
	case errors.Is(err, admin.ErrNoPrimary):
		fmt.Fprintf(stderr, "herd %s: no herd primary is running (nothing answers on %s)\n", name, path)
		return exitFail
	case errors.Is(err, admin.ErrTimeout) && name == "status":
		fmt.Fprintf(stderr, "herd %s: the primary did not answer within %s (control socket %s): it is stopped (SIGSTOP), wedged or overloaded\n", name, *timeout, path)
		return exitFail
	case errors.Is(err, admin.ErrTimeout):
		fmt.Fprintf(stderr, "herd %s: no answer within %s; the command may still complete\n", name, *timeout)
		return exitFail
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "herd %s: %s\n", name, ce.Reason)
		return exitFail
	case err != nil:
		fmt.Fprintf(stderr, "herd %s: %v\n", name, err)
		return exitFail
	}
	if *asJSON {
		// The status document itself (after the command, for an action);
		// stop, after which there is no primary to describe, prints {}.
		var doc any = struct{}{}
		if name != "stop" {
			doc = st
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(doc)
		return exitOK
	}
	if msg != "" {
		fmt.Fprintf(stdout, "%s: %s\n", name, msg)
	}
	if name != "stop" {
		printStatus(stdout, st)
	}
	return exitOK
}

// queryTimeout is how long herd status waits for its answer by default.
const queryTimeout = 5 * time.Second

// controlSocketFor is the control socket serve listens on with these
// settings: the control-socket setting if set (from any source, as serve
// takes it), else the one derived from the port.
func controlSocketFor(r resolved) (string, error) {
	if p := strings.TrimSpace(r.get("control-socket").s); p != "" {
		return p, nil
	}
	port, err := parsePort(r, 1)
	if err != nil {
		return "", err
	}
	return cluster.ControlSocketPath(port), nil
}

// printStatus prints a table in the manner of "pm2 list".
func printStatus(w io.Writer, s cluster.Status) {
	fmt.Fprintf(w, "primary %d on %s, %d workers wanted\n", s.PrimaryPID, s.Addr, s.Want)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tSTATE\tUPTIME\tRESTARTS\tREQUESTS\tMEMORY")
	for _, wk := range s.Workers {
		mem := "-" // no heartbeat yet
		if wk.RSS > 0 {
			mem = fmt.Sprintf("%.1f MB", float64(wk.RSS)/(1<<20))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%s\n", wk.ID, wk.PID, wk.State,
			humanDuration(time.Since(wk.Started)), wk.Restarts, wk.Requests, mem)
	}
	tw.Flush()
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
