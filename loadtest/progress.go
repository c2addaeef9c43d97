package loadtest

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ProgressBar draws a one-line progress bar on a terminal, redrawn in place
// with a carriage return. Its Update method is the progress function to
// give Run. It is meant for a terminal only: piped, the redraws would be
// noise. Not safe for concurrent use, which Run's contract guarantees.
type ProgressBar struct {
	w     io.Writer
	drawn bool
}

// NewProgressBar returns a bar that draws on w (usually os.Stderr).
func NewProgressBar(w io.Writer) *ProgressBar { return &ProgressBar{w: w} }

// Update redraws the bar for p.
func (b *ProgressBar) Update(p Progress) {
	const width = 30
	f := p.Fraction()
	full := int(f * width)
	bar := strings.Repeat("█", full) + strings.Repeat("░", width-full)
	rps := 0.0
	if p.Elapsed > 0 {
		rps = float64(p.Done) / p.Elapsed.Seconds()
	}
	var of string
	if p.Total > 0 {
		of = fmt.Sprintf("%d/%d requests", p.Done, p.Total)
	} else {
		of = fmt.Sprintf("%d requests, %s/%s", p.Done, p.Elapsed.Truncate(time.Second), p.Duration)
	}
	// \x1b[K clears what a longer previous line left behind.
	fmt.Fprintf(b.w, "\r%s %3.0f%% %s, %.0f req/s\x1b[K", bar, f*100, of, rps)
	b.drawn = true
}

// Clear erases the bar, so that what is printed next starts on a clean
// line. It does nothing when nothing was drawn.
func (b *ProgressBar) Clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}
