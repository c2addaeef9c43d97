package cluster

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// CPULimit is what herd found about the CPUs this process may use. Go's
// own runtime.GOMAXPROCS(0) is not the limit: it rounds a cgroup quota
// below 2 up to 2 (src/runtime/cgroup_linux.go), so a container given
// one CPU would run two workers. herd reads the quota itself.
type CPULimit struct {
	// Online is runtime.NumCPU() at start: the CPUs in the affinity mask.
	Online int
	// Quota is the cgroup CPU quota in CPUs (quota/period, 1.5 for
	// "150000 100000"), the smallest along the cgroup's ancestors; 0: none.
	Quota float64
	// QuotaFile is the file the quota was read from ("" without one).
	QuotaFile string
	// GOMAXPROCS is the GOMAXPROCS environment variable when set to a
	// positive number (an explicit choice that wins); 0 otherwise.
	GOMAXPROCS int
	// Err says why the quota could not be read (the limit is then Online).
	Err error
}

// Cores is how many CPUs herd plans for: GOMAXPROCS when set, otherwise
// the quota rounded up (a fractional CPU cannot run a thread; the kernel
// still throttles at the quota, so 2.5 gives 3 and never more than the
// quota's worth of CPU time), at most Online, at least 1.
func (l CPULimit) Cores() int {
	if l.GOMAXPROCS > 0 {
		return l.GOMAXPROCS
	}
	n := max(l.Online, 1)
	if l.Quota > 0 {
		n = min(n, int(math.Ceil(l.Quota-1e-9)))
	}
	return max(n, 1)
}

// Reason says in words where Cores came from, for the log.
func (l CPULimit) Reason() string {
	switch {
	case l.GOMAXPROCS > 0:
		return fmt.Sprintf("GOMAXPROCS=%d is set", l.GOMAXPROCS)
	case l.Quota > 0 && l.Cores() < l.Online:
		return fmt.Sprintf("cgroup CPU quota %s CPUs (%s), rounded up, is below the %d CPUs in the affinity mask",
			formatCPUs(l.Quota), l.QuotaFile, l.Online)
	case l.Quota > 0:
		return fmt.Sprintf("%d CPUs in the affinity mask, within the cgroup CPU quota of %s CPUs (%s)",
			l.Online, formatCPUs(l.Quota), l.QuotaFile)
	case l.Err != nil:
		return fmt.Sprintf("%d CPUs in the affinity mask; cgroup CPU quota unknown: %v", l.Online, l.Err)
	default:
		return fmt.Sprintf("%d CPUs in the affinity mask, no cgroup CPU quota", l.Online)
	}
}

func formatCPUs(q float64) string { return strconv.FormatFloat(q, 'f', -1, 64) }

var usableCPUs = sync.OnceValue(func() CPULimit {
	l := CPULimit{Online: runtime.NumCPU()}
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv("GOMAXPROCS"))); err == nil && n > 0 {
		l.GOMAXPROCS = n
	}
	l.Quota, l.QuotaFile, l.Err = cpuQuota("/")
	return l
})

// UsableCPUs returns the CPUs this process may use, read once (the
// affinity mask, the cgroup CPU quota v1 or v2, and GOMAXPROCS when set).
// It is safe for concurrent use.
func UsableCPUs() CPULimit { return usableCPUs() }

// logCPUs says what the primary found about its CPUs and why it plans for
// that many.
func (p *primary) logCPUs() {
	l := UsableCPUs()
	attrs := []any{"usable_cpus", l.Cores(), "affinity_cpus", l.Online}
	if l.Quota > 0 {
		attrs = append(attrs, "cgroup_quota_cpus", l.Quota, "quota_file", l.QuotaFile)
	}
	p.log.Info("cpu limit", append(attrs, "reason", l.Reason())...)
}
