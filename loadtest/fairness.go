package loadtest

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// BalanceTolerance is the verdict's rule: a distribution over n workers is
// balanced when every worker served within ±10% of the mean share 1/n
// (45–55% each over two workers, 22.5–27.5% over four), inclusive.
//
// A rule on each share says plainly what it means and catches both a hot
// and a starved worker, however many workers there are. Jain's index,
// reported beside it, is forgiving: a 60.5/39.5 split over two workers
// scores 0.958, above the usual cut-offs of 0.9 or 0.95, yet one worker
// does half again the work of the other.
const BalanceTolerance = 0.10

// shareEpsilon absorbs floating-point error at the bounds, so that 55/45
// is balanced as the rule says.
const shareEpsilon = 1e-9

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
	Verdict   string        // "balanced", "skewed: worker 3 served 71.0% ...", ...
	// Balanced: two or more workers answered and each served within
	// BalanceTolerance of the mean share (see ShareBounds).
	Balanced bool
}

// ShareBounds returns the range of shares, 0 to 1, that the verdict calls
// balanced for the workers seen: (1 ± BalanceTolerance)/n.
func (d Distribution) ShareBounds() (lo, hi float64) {
	if len(d.Workers) == 0 {
		return 0, 0
	}
	mean := 1 / float64(len(d.Workers))
	return (1 - BalanceTolerance) * mean, (1 + BalanceTolerance) * mean
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
	d.Verdict, d.Balanced = d.verdict()
	return d
}

// verdict puts the distribution in words; see BalanceTolerance.
func (d Distribution) verdict() (string, bool) {
	ws := d.Workers
	switch len(ws) {
	case 0:
		return VerdictUnknown, false
	case 1:
		return fmt.Sprintf("one worker: worker %s served 100%%", ws[0].ID), false
	}
	lo, hi := d.ShareBounds()
	mean := 1 / float64(len(ws))
	// Name the worker furthest from the mean share: the hot one, or the
	// starved one when that is the larger gap (one idle worker among many).
	far := ws[0]
	for _, w := range ws[1:] {
		gap, farGap := math.Abs(w.Share-mean), math.Abs(far.Share-mean)
		if gap > farGap+shareEpsilon || (gap >= farGap-shareEpsilon && w.Share > far.Share) {
			far = w // on a tie (two workers), the busier one
		}
	}
	if far.Share >= lo-shareEpsilon && far.Share <= hi+shareEpsilon {
		return "balanced", true
	}
	return fmt.Sprintf("skewed: worker %s served %s, outside %s–%s", far.ID, percent(far.Share), boundPercent(lo), boundPercent(hi)), false
}

// boundPercent prints a bound of the rule exactly, to 0.01%: 45%, 22.5%,
// 11.25%.
func boundPercent(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e4)/1e2, 'f', -1, 64) + "%"
}

// percent prints a share with one decimal: 60.5% must not read as 61%
// beside a bound of 55.0%.
func percent(f float64) string {
	return strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
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
