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
	fmt.Fprintln(bw)

	fmt.Fprintf(bw, "Requests  %d in %s · %.1f req/s · %s of response bodies\n",
		r.Requests, fmtDur(r.Duration), r.RPS(), fmtBytes(r.BytesRead))

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
	fmt.Fprintf(bw, "Errors    connect %d · timeout %d · reset %d · other %d · non-2xx %d\n",
		e.Connect, e.Timeout, e.Reset, e.Other, r.Non2xx())
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

	fmt.Fprintln(bw)
	d := r.Distribution
	if len(d.Workers) == 0 {
		fmt.Fprintf(bw, "Workers   %s\n", d.Verdict)
	} else {
		plural := "s"
		if len(d.Workers) == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "Workers   %s (Jain's fairness index %.3f over %d worker%s)\n", d.Verdict, d.Fairness, len(d.Workers), plural)
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
