package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
)

const topUsage = `usage: herd top [--port 3000 | --control-socket PATH] [--interval 1s] [--count N]
       herd status --watch [same flags]

Redraws the running primary's workers each interval, like top: state,
uptime, restarts, requests/s and p50/p99 latency over the last interval,
in-flight requests, connections and memory. Stops on Ctrl-C, or after
--count tables. Reads the status document over the control socket.
`

// cmdTop is "herd top", also reached as "herd status --watch".
func cmdTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if wantsHelp(args) {
		fmt.Fprint(stdout, topUsage)
		return exitOK
	}
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	interval := fs.Duration("interval", time.Second, "time between tables")
	count := fs.Int("count", 0, "stop after this many tables (0: until interrupted)")
	fs.Bool("watch", true, "") // "herd status --watch" lands here
	// --port and --control-socket, from the same sources as serve's.
	settings, rest, err := loadSettings(fs, pick("port", "control-socket"), args, osSources)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "herd top: %v\n", err)
		return exitUsage
	case len(rest) > 0:
		fmt.Fprintf(stderr, "herd top: unexpected argument %q\n", rest[0])
		return exitUsage
	case *interval < 100*time.Millisecond:
		fmt.Fprintf(stderr, "herd top: invalid --interval %s: must be at least 100ms\n", *interval)
		return exitUsage
	case *count < 0:
		fmt.Fprintf(stderr, "herd top: invalid --count %d: must be 0 or more\n", *count)
		return exitUsage
	}
	path, err := controlSocketFor(settings)
	if err != nil {
		fmt.Fprintf(stderr, "herd top: %v\n", err)
		return exitUsage
	}
	client := &admin.Client{Path: path, QueryTimeout: 10 * time.Second}
	clear := isTerminal(stdout)
	var prev *snapshot
	t := time.NewTicker(*interval)
	defer t.Stop()
	for n := 0; ; {
		st, err := client.Status(ctx)
		switch {
		case errors.Is(err, admin.ErrNoPrimary):
			fmt.Fprintf(stderr, "herd top: no herd primary is running (nothing answers on %s)\n", path)
			return exitFail
		case ctx.Err() != nil:
			return exitOK // interrupted
		case err != nil:
			fmt.Fprintf(stderr, "herd top: %v\n", err)
			return exitFail
		}
		cur := &snapshot{at: time.Now(), st: st}
		if clear {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		} else if n > 0 {
			fmt.Fprintln(stdout)
		}
		printTop(stdout, cur, prev)
		prev = cur
		if n++; *count > 0 && n >= *count {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-t.C:
		}
	}
}

type snapshot struct {
	at   time.Time
	st   cluster.Status
	rows map[int]topRow // by pid
}

// topRow is one worker's figures over its last two heartbeats.
type topRow struct {
	rate  float64
	delta cluster.Histogram
	ok    bool
}

// printTop prints one table; rates and quantiles come from the difference
// between cur and prev for the same worker process ("–" on the first
// table, for a new process, or when it served nothing in between).
func printTop(w io.Writer, cur, prev *snapshot) {
	s := cur.st
	byPID := map[int]cluster.WorkerStatus{}
	if prev != nil {
		for _, wk := range prev.st.Workers {
			byPID[wk.PID] = wk
		}
	}
	cur.rows = map[int]topRow{}
	ready := 0
	for _, wk := range s.Workers {
		if wk.State == cluster.StateReady {
			ready++
		}
	}
	admin := ""
	if s.AdminAddr != "" {
		admin = ", dashboard http://" + s.AdminAddr + "/"
	}
	fmt.Fprintf(w, "herd top  %s  primary %d on %s, %d/%d workers ready%s\n", cur.at.Format("15:04:05"), s.PrimaryPID, s.Addr, ready, s.Want, admin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ID\tPID\tSTATE\tUPTIME\tRESTARTS\tREQ/S\tP50\tP99\tIN-FLIGHT\tCONNS\tREQUESTS\tMEMORY\t")
	var totalRate float64
	var all cluster.Histogram
	anyRate := false
	for _, wk := range s.Workers {
		// Figures change once per heartbeat: rates are over the time
		// between the two heartbeats compared, and a worker whose
		// heartbeat has not changed since the last table keeps its row.
		var row topRow
		if old, ok := byPID[wk.PID]; ok {
			if dt := wk.Beat.Sub(old.Beat).Seconds(); dt > 0 && wk.Requests >= old.Requests {
				row = topRow{rate: float64(wk.Requests-old.Requests) / dt, delta: wk.Latency.Sub(old.Latency), ok: true}
			} else {
				row = prev.rows[wk.PID]
			}
		}
		cur.rows[wk.PID] = row
		rate, p50, p99 := "–", "–", "–"
		if row.ok {
			anyRate = true
			totalRate += row.rate
			rate = fmt.Sprintf("%.1f", row.rate)
			all = all.Add(row.delta)
			p50, p99 = fmtLatency(row.delta.Quantile(.5)), fmtLatency(row.delta.Quantile(.99))
		}
		mem := "–"
		if wk.RSS > 0 {
			mem = fmt.Sprintf("%.1f MB", float64(wk.RSS)/(1<<20))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n", wk.ID, wk.PID, wk.State,
			humanDuration(cur.at.Sub(wk.Started)), wk.Restarts, rate, p50, p99, wk.InFlight, wk.Conns, wk.Requests, mem)
	}
	if anyRate {
		fmt.Fprintf(tw, "all\t\t\t\t\t%.1f\t%s\t%s\t\t\t\t\t\n", totalRate, fmtLatency(all.Quantile(.5)), fmtLatency(all.Quantile(.99)))
	}
	tw.Flush()
}

func fmtLatency(s float64) string {
	switch {
	case math.IsNaN(s):
		return "–"
	case s < .01:
		return fmt.Sprintf("%.2fms", s*1e3)
	default:
		return fmt.Sprintf("%.0fms", s*1e3)
	}
}

// wantsWatch reports whether "herd status" was asked to --watch.
func wantsWatch(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		return a == "--watch" || a == "-watch" || a == "--watch=true" || a == "-watch=true"
	})
}
