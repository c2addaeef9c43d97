package verify

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The judgments below are pure functions of what the checks observed, so
// that each verdict is tested on data rather than on a server's timing.

// JudgeDistribution judges the distribution check. ids holds the
// X-Worker-Id of each 200 answer ("" when the header was missing); failed
// counts the requests that got no answer or another status, firstErr
// describes the first of them.
func JudgeDistribution(ids []string, failed int, firstErr string) Check {
	total := len(ids) + failed
	if failed > 0 {
		return fail("%d of %d requests failed (first: %s)", failed, total, firstErr)
	}
	if len(ids) == 0 {
		return fail("no request was sent")
	}
	counts := map[string]int{}
	missing := 0
	for _, id := range ids {
		if id == "" {
			missing++
			continue
		}
		counts[id]++
	}
	switch {
	case missing == len(ids):
		return fail("none of %d responses carried X-Worker-Id: not a herd server, or a proxy drops the header", total)
	case missing > 0:
		return fail("%d of %d responses lacked X-Worker-Id (herd sets it on every response); the rest: %s", missing, total, countList(counts))
	case len(counts) == 1:
		return fail("only worker %s answered all %d requests: not spread over workers (a single process, or one worker)", sortedKeys(counts)[0], total)
	}
	return pass("%d workers answered %d requests: %s", len(counts), total, countList(counts))
}

// countList formats counts as "1→22, 2→19, 3→19", ordered by worker.
func countList(counts map[string]int) string {
	var parts []string
	for _, id := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s→%d", id, counts[id]))
	}
	return strings.Join(parts, ", ")
}

// sortedKeys orders worker ids numerically when they are numbers.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return keys[i] < keys[j]
	})
	return keys
}

// LocalSample is one answer of GET /cluster/local-state, in the order the
// sequential requests were answered.
type LocalSample struct {
	Worker string // X-Worker-Id
	PID    int    // X-Worker-Pid
	Count  int64  // the answer's requestCount
}

// JudgeLocalState judges the local-state check. A worker's counter is
// local when, over the requests it answered, it only increases, and by no
// more than those requests: from its first answer to its last it counted
// hits-1 requests (more means it counted other workers' hits too; counters
// of earlier runs are allowed, so the first value need not be 1). At least
// two workers must answer, and their values together must not form one
// sequence (a counter every worker shares, answered in turns).
func JudgeLocalState(samples []LocalSample) Check {
	if len(samples) == 0 {
		return fail("no answer to judge")
	}
	type span struct {
		label       string
		first, last int64
		hits        int
	}
	byKey := map[string]*span{}
	for _, s := range samples {
		key, label := s.Worker, "worker "+s.Worker
		if s.PID != 0 {
			key = strconv.Itoa(s.PID)
			label += " (pid " + key + ")"
		}
		sp := byKey[key]
		if sp == nil {
			byKey[key] = &span{label: label, first: s.Count, last: s.Count, hits: 1}
			continue
		}
		if s.Count <= sp.last {
			return fail("%s answered %d after %d: its counter did not increase", label, s.Count, sp.last)
		}
		sp.last = s.Count
		sp.hits++
	}
	if len(byKey) < 2 {
		for _, sp := range byKey {
			return fail("only %s answered all %d requests: isolation between workers cannot be shown", sp.label, len(samples))
		}
	}
	consecutive := true
	for i := 1; i < len(samples); i++ {
		if samples[i].Count != samples[i-1].Count+1 {
			consecutive = false
			break
		}
	}
	if consecutive {
		return fail("the counters form one sequence %d…%d across %d workers: one shared counter, not one per worker",
			samples[0].Count, samples[len(samples)-1].Count, len(byKey))
	}
	var parts []string
	for _, k := range sortedKeys(byKey) {
		sp := byKey[k]
		if grew := sp.last - sp.first; grew > int64(sp.hits-1) {
			return fail("%s went from %d to %d while answering %d requests: it counts hits on other workers too",
				sp.label, sp.first, sp.last, sp.hits)
		}
		parts = append(parts, fmt.Sprintf("%s %d→%d over %d requests", sp.label, sp.first, sp.last, sp.hits))
	}
	return pass("each worker counted only its own requests: %s", strings.Join(parts, ", "))
}

// ParallelRun is one attempt of the CPU check.
type ParallelRun struct {
	N       int           // the Fibonacci number computed
	Alone   time.Duration // the fastest of the requests sent alone so far
	Tries   int           // how many requests were sent alone
	Wall    time.Duration // len(Workers) requests sent at once: from the first sent to the last answered
	Workers []string      // X-Worker-Id of each of the simultaneous answers
}

// JudgeParallel judges one attempt of the CPU check: the simultaneous
// requests must come from at least two workers and take less than
// ParallelFactor times what they take one after another, estimated as
// len(Workers) times the fastest request sent alone. The fastest, because
// a busy machine only ever adds time: a run that looks parallel against it
// is parallel, whatever noise the other measurements caught.
func JudgeParallel(r ParallelRun) Check {
	w := len(r.Workers)
	what := fmt.Sprintf("%d × fib(%d) at once", w, r.N)
	if w < 2 || r.Alone <= 0 {
		return fail("%s: nothing to compare", what)
	}
	distinct := map[string]bool{}
	for _, id := range r.Workers {
		distinct[id] = true
	}
	serial := r.Alone * time.Duration(w)
	limit := time.Duration(float64(serial) * ParallelFactor)
	alone := fmt.Sprintf("one alone takes %s (fastest of %d), %d one after another %s", secs(r.Alone), r.Tries, w, secs(serial))
	on := "workers " + strings.Join(sortedKeys(distinct), ", ")
	switch {
	case distinct[""] && len(distinct) == 1:
		return fail("%s: no answer carried X-Worker-Id, so nothing shows different workers served them", what)
	case distinct[""]:
		return fail("%s: some answers lacked X-Worker-Id", what)
	case len(distinct) < 2:
		return fail("%s were all served by worker %s: not spread over workers", what, r.Workers[0])
	case r.Wall >= limit:
		return fail("%s took %s on %s; %s: not parallel (want under %.2f × %s = %s)",
			what, secs(r.Wall), on, alone, ParallelFactor, secs(serial), secs(limit))
	}
	return pass("%s took %s on %s; %s (limit %.2f × %s = %s)",
		what, secs(r.Wall), on, alone, ParallelFactor, secs(serial), secs(limit))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// plural is "1 read", "3 reads".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
