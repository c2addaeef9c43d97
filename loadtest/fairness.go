package loadtest

import (
	"fmt"
	"sort"
	"strconv"
)

// Thresholds of the distribution verdict. A run is "skewed" when Jain's
// index is below FairnessThreshold, or when one worker served more than
// MaxShareFactor times its fair share (1/n of the requests).
//
// The index is 0.9 for a 2:1 split between two workers, which a report
// should not call balanced, hence 0.95 (about 61/39 on two workers, 35/25/20/20
// on four). The index alone is forgiving with many workers (one worker at
// 1.56 times its share among 8 still scores 0.957), so the share rule
// catches a single hot worker.
const (
	FairnessThreshold = 0.95
	MaxShareFactor    = 1.5
)

// VerdictUnknown is the verdict when no response carried X-Worker-Id.
const VerdictUnknown = "no X-Worker-Id header: distribution unknown"

// JainIndex returns Jain's fairness index of xs, (Σx)² / (n·Σx²): 1 when all
// are equal, 1/n when one has everything. It returns 0 for no values or
// when all are zero, where the index is undefined.
func JainIndex(xs []int64) float64 {
	var sum, sumSq float64
	for _, x := range xs {
		f := float64(x)
		sum += f
		sumSq += f * f
	}
	if len(xs) == 0 || sumSq == 0 {
		return 0
	}
	return sum * sum / (float64(len(xs)) * sumSq)
}

// Distribution is how responses spread over the server's workers, by their
// X-Worker-Id header. A worker that served no request is not seen, so n in
// the fairness index is the number of workers that answered at least once.
type Distribution struct {
	Workers   []WorkerCount // by worker id, numerically when ids are numbers
	NoHeader  int64         // responses without X-Worker-Id
	Untracked int64         // responses from ids beyond the first MaxWorkerIDs seen
	Fairness  float64       // Jain's index over Workers; 0 when there are none
	Verdict   string        // "balanced", "skewed: worker 3 served 71%", ...
}

// WorkerCount is one worker's share of the responses.
type WorkerCount struct {
	ID       string
	Requests int64
	Share    float64 // of the responses that carried an id, 0 to 1
}

// MaxWorkerIDs bounds how many distinct X-Worker-Id values a run tracks,
// so that a server sending a unique value per response cannot exhaust
// memory; responses beyond it count as Untracked.
const MaxWorkerIDs = 1024

// newDistribution computes the distribution, index and verdict from counts
// by worker id.
func newDistribution(counts map[string]int64, noHeader, untracked int64) Distribution {
	d := Distribution{NoHeader: noHeader, Untracked: untracked}
	var total int64
	for id, n := range counts {
		d.Workers = append(d.Workers, WorkerCount{ID: id, Requests: n})
		total += n
	}
	sort.Slice(d.Workers, func(i, j int) bool { return idLess(d.Workers[i].ID, d.Workers[j].ID) })
	xs := make([]int64, len(d.Workers))
	for i := range d.Workers {
		d.Workers[i].Share = float64(d.Workers[i].Requests) / float64(total)
		xs[i] = d.Workers[i].Requests
	}
	d.Fairness = JainIndex(xs)
	d.Verdict = verdict(d.Workers, d.Fairness)
	return d
}

// verdict puts the distribution in words; see FairnessThreshold.
func verdict(ws []WorkerCount, fairness float64) string {
	switch len(ws) {
	case 0:
		return VerdictUnknown
	case 1:
		return fmt.Sprintf("one worker: worker %s served 100%%", ws[0].ID)
	}
	hi, lo := ws[0], ws[0]
	for _, w := range ws[1:] {
		if w.Requests > hi.Requests {
			hi = w
		}
		if w.Requests < lo.Requests {
			lo = w
		}
	}
	fair := 1 / float64(len(ws))
	if hi.Share <= MaxShareFactor*fair && fairness >= FairnessThreshold {
		return "balanced"
	}
	// Name the worker furthest from its fair share: the hot one, or the
	// starved one when that is the larger gap (one idle worker among many).
	w := hi
	if fair-lo.Share > hi.Share-fair {
		w = lo
	}
	return fmt.Sprintf("skewed: worker %s served %s", w.ID, percent(w.Share))
}

func percent(f float64) string {
	return strconv.FormatFloat(f*100, 'f', 0, 64) + "%"
}

// idLess orders worker ids numerically when both are integers, numbers
// before names, and names as strings.
func idLess(a, b string) bool {
	na, errA := strconv.ParseInt(a, 10, 64)
	nb, errB := strconv.ParseInt(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return na < nb
	case errA == nil:
		return true
	case errB == nil:
		return false
	}
	return a < b
}
