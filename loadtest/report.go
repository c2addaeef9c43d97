package loadtest

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxWorkerLines bounds the per-worker lines of the text report.
const maxWorkerLines = 32

// WriteText writes the report for people. tty adds what only makes sense on
// a terminal: a latency histogram drawn with block characters. The layout
// may change between versions; scripts should use JSON.
func (r *Result) WriteText(w io.Writer, tty bool) error {
	bw := bufio.NewWriter(w)
	c := r.Config

	bound := fmtDur(c.Duration)
	if c.Requests > 0 {
		bound = strconv.FormatInt(c.Requests, 10) + " requests"
	}
	conn := "keep-alive"
	if c.DisableKeepAlive {
		conn = "a new connection per request"
	}
	fmt.Fprintf(bw, "%s %s · %d connections · %s · %s\n", c.Method, c.URL, c.Concurrency, conn, bound)
	if r.Interrupted {
		fmt.Fprintf(bw, "interrupted after %s: the report covers the requests completed until then\n", fmtDur(r.Duration))
	}
	if r.AllFailed() {
		fmt.Fprintf(bw, "ALL %d REQUESTS FAILED: not one 2xx response, so there is no rate to report (see Errors)\n", r.Requests)
	}
	fmt.Fprintln(bw)

	fmt.Fprintf(bw, "Requests  %d in %s · %d succeeded · %d failed · %s of response bodies\n",
		r.Requests, fmtDur(r.Duration), r.Succeeded(), r.Failed(), fmtBytes(r.BytesRead))
	switch {
	case r.Failed() == 0:
		fmt.Fprintf(bw, "Rate      %.1f req/s (succeeded requests only)\n", r.RPS())
	case r.AllFailed():
		fmt.Fprintf(bw, "Rate      0 req/s succeeded (%.1f failures/s)\n", r.CompletedRPS())
	default:
		fmt.Fprintf(bw, "Rate      %.1f req/s (succeeded requests only; %.1f/s with the failed ones)\n", r.RPS(), r.CompletedRPS())
	}

	codes := make([]int, 0, len(r.Status))
	for code := range r.Status {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	var parts []string
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d: %d", code, r.Status[code]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(bw, "Status    %s\n", strings.Join(parts, " · "))

	e := r.Errors
	fmt.Fprintf(bw, "Errors    server: connect %d · timeout %d · reset %d · other %d · non-2xx %d\n",
		e.Connect, e.Timeout, e.Reset, e.Other, r.Non2xx())
	fmt.Fprintf(bw, "          client: %d (this machine failed, not the server: no port, descriptor or memory)\n", e.Client)
	for _, k := range kindNames {
		if s := r.ErrorSamples[k]; s != "" {
			fmt.Fprintf(bw, "          first %s error: %s\n", k, s)
		}
	}
	if r.Resent > 0 {
		fmt.Fprintf(bw, "Resent    %d: the server closed a kept-alive connection without answering; resent once on a new one\n", r.Resent)
	}

	fmt.Fprintln(bw)
	l := r.Latency
	if r.Responses() == 0 {
		fmt.Fprintln(bw, "Latency   no responses")
	} else {
		fmt.Fprintf(bw, "Latency   %-9s%-9s%-9s%-9s%-9s%-9s%-9s%s\n", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
		fmt.Fprintf(bw, "          %-9s%-9s%-9s%-9s%-9s%-9s%-9s%s\n", fmtDur(l.Min), fmtDur(l.Mean), fmtDur(l.P50),
			fmtDur(l.P90), fmtDur(l.P95), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max))
		if tty && r.hist != nil {
			fmt.Fprintln(bw)
			r.writeHistogram(bw)
		}
	}

	if r.Kinds != nil {
		fmt.Fprintln(bw)
		r.writeKinds(bw)
	}

	fmt.Fprintln(bw)
	d := r.Distribution
	switch len(d.Workers) {
	case 0:
		fmt.Fprintf(bw, "Workers   %s\n", d.Verdict)
	case 1:
		fmt.Fprintf(bw, "Workers   %s (Jain's fairness index %.3f over 1 worker)\n", d.Verdict, d.Fairness)
	default:
		lo, hi := d.ShareBounds()
		if d.Balanced {
			fmt.Fprintf(bw, "Workers   balanced: every worker within ±%.0f%% of the mean share (%s–%s); Jain's fairness index %.3f over %d workers\n",
				BalanceTolerance*100, boundPercent(lo), boundPercent(hi), d.Fairness, len(d.Workers))
		} else {
			fmt.Fprintf(bw, "Workers   %s (balanced: every worker within ±%.0f%% of the mean share); Jain's fairness index %.3f over %d workers\n",
				d.Verdict, BalanceTolerance*100, d.Fairness, len(d.Workers))
		}
	}
	if len(d.Workers) > 0 {
		for i, wc := range d.Workers {
			if i == maxWorkerLines {
				fmt.Fprintf(bw, "          … and %d more\n", len(d.Workers)-i)
				break
			}
			fmt.Fprintf(bw, "          worker %-6s %10d  %5.1f%%\n", wc.ID, wc.Requests, wc.Share*100)
		}
		if d.NoHeader > 0 {
			fmt.Fprintf(bw, "          %d responses had no X-Worker-Id\n", d.NoHeader)
		}
		if d.Untracked > 0 {
			fmt.Fprintf(bw, "          %d responses came from ids beyond the first %d\n", d.Untracked, MaxWorkerIDs)
		}
	}
	return bw.Flush()
}

// writeKinds writes one line per kind of the mix.
func (r *Result) writeKinds(w io.Writer) {
	fmt.Fprintf(w, "Mix       %d kinds, each request picks one by weight (seed %d); req/s counts succeeded requests\n", len(r.Kinds), r.Config.Seed)
	width := len("kind")
	for _, k := range r.Kinds {
		width = max(width, len(k.Path))
	}
	width = min(width, 40)
	fmt.Fprintf(w, "          %-*s %7s %9s %7s %9s %9s %9s %9s %9s\n", width, "kind", "weight", "requests", "failed", "req/s", "p50", "p90", "p99", "max")
	for _, k := range r.Kinds {
		name := k.Path
		if len(name) > width {
			name = name[:width-1] + "…"
		}
		l := k.Latency
		lat := []string{"-", "-", "-", "-"}
		if k.Requests-k.Errors.Total() > 0 {
			lat = []string{fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Max)}
		}
		fmt.Fprintf(w, "          %-*s %6.1f%% %9d %7d %9.1f %9s %9s %9s %9s\n", width, name, k.Share*100, k.Requests, k.Failed(), k.RPS(),
			lat[0], lat[1], lat[2], lat[3])
	}
}

// histogramRows is the number of rows of the drawn latency histogram.
const histogramRows = 12

// writeHistogram draws the latency distribution in rows of geometrically
// growing width from min to max: latency is skewed, and equal widths would
// crowd everything into the first row.
func (r *Result) writeHistogram(w io.Writer) {
	lo, hi := float64(r.hist.Min()), float64(r.hist.Max())
	if lo < 1 {
		lo = 1
	}
	rows := histogramRows
	if hi <= lo {
		hi, rows = lo+1, 1
	}
	ratio := math.Pow(hi/lo, 1/float64(rows))
	edges := make([]float64, rows+1)
	for i := range edges {
		edges[i] = lo * math.Pow(ratio, float64(i))
	}
	edges[rows] = hi + 1 // the last row includes max
	counts := make([]int64, rows)
	for _, bar := range r.hist.Distribution() {
		if bar.Count == 0 {
			continue
		}
		v := float64(bar.From+bar.To) / 2
		// Row i holds [edges[i], edges[i+1]).
		i := sort.Search(rows, func(i int) bool { return edges[i+1] > v })
		counts[min(i, rows-1)] += bar.Count
	}
	var most int64
	for _, n := range counts {
		most = max(most, n)
	}
	total := float64(r.hist.TotalCount())
	const width = 40
	fmt.Fprintln(w, "Latency histogram")
	for i, n := range counts {
		from := time.Duration(edges[i]) * time.Microsecond
		to := time.Duration(math.Min(edges[i+1], hi)) * time.Microsecond
		bar := ""
		if most > 0 {
			bar = blocks(float64(n) / float64(most) * width)
		}
		fmt.Fprintf(w, "  %9s – %-9s %-*s %5.1f%%\n", fmtDur(from), fmtDur(to), width, bar, float64(n)/total*100)
	}
}

// blocks draws a bar of width cells with eighth-cell precision.
func blocks(cells float64) string {
	eighths := int(math.Round(cells * 8))
	s := strings.Repeat("█", eighths/8)
	if rem := eighths % 8; rem > 0 {
		s += string([]rune("▏▎▍▌▋▊▉")[rem-1])
	}
	return s
}

// fmtDur prints a latency with 3 significant digits in a unit that fits.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	case d < 100*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	case n < 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
}
