package cluster

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A worker that cannot accept connections (it has run out of file
// descriptors) is unhealthy: it reports it in its heartbeat at once, the
// primary shows it as StateUnhealthy and, under the passing policies
// (least-conn, sticky; auto while it passes), passes it no new connection until it can accept
// again. It keeps serving the connections it holds. Under BalanceShared the
// primary cannot steer connections; a failing accept leaves the connection
// in the kernel's queue, where the other workers take it. Either way, a
// worker still unhealthy after Options.WorkerTimeout is recycled,
// replacement first: only a new process frees descriptors that the old one
// leaks, or that its clients hold idle.

// StateUnhealthy is a ready worker that cannot accept new connections (out
// of file descriptors). It still serves the connections it holds.
const StateUnhealthy = "unhealthy"

// acceptHeadroom is how many descriptors a worker whose accept failed must
// be able to open before it says it can accept again: one passed
// connection takes two for a moment, and a margin keeps a worker at its
// limit from flapping between healthy and not at every beat.
const acceptHeadroom = 8

func (s *acceptStats) signalFail() {
	if s.failC == nil {
		return
	}
	select {
	case s.failC <- struct{}{}:
	default:
	}
}

// acceptHealth is a worker's judgement of whether its accepts fail now.
// Safe for concurrent use.
type acceptHealth struct {
	seen    atomic.Uint64 // accept failures already accounted for
	failing atomic.Bool
}

// check reports whether the worker's accepts fail now: some failed since
// the last check, or some failed before and the worker still cannot open
// acceptHeadroom descriptors.
func (h *acceptHealth) check(s *acceptStats) bool {
	n := s.errors.Load()
	if h.seen.Swap(n) != n {
		h.failing.Store(true)
	}
	if h.failing.Load() && haveDescriptors(acceptHeadroom) {
		h.failing.Store(false)
	}
	return h.failing.Load()
}

// haveDescriptors reports whether this process can open n more file
// descriptors now (it opens n and closes them).
func haveDescriptors(n int) bool {
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for range n {
		fd, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 0) // any open descriptor will do; 2 is always open in a worker
		if err != nil {
			return false
		}
		fds = append(fds, fd)
	}
	return true
}

// shownState is pr's state as Status and the metrics show it.
func (pr *proc) shownState() string {
	if pr.state == StateReady && !pr.unhealthySince.IsZero() {
		return StateUnhealthy
	}
	return pr.state
}

// noteAccept follows what pr's heartbeat says about its accepts: it marks
// pr unhealthy (no new connection is passed to it) or healthy again. Call
// it in the loop.
func (p *primary) noteAccept(pr *proc, hb Heartbeat) {
	switch {
	case hb.AcceptFailing && pr.unhealthySince.IsZero():
		pr.unhealthySince = p.now()
		p.disp.setEligible(pr.pid, false)
		p.log.Error("worker cannot accept connections (out of file descriptors?); it gets no new connection until it can",
			"worker", pr.id, "pid", pr.pid, "err", hb.AcceptError, "failures", hb.AcceptErrors,
			"recycle_in", p.opts.WorkerTimeout.String())
		p.event("unhealthy", pr.id, pr.pid, "cannot accept connections: "+hb.AcceptError)
	case !hb.AcceptFailing && !pr.unhealthySince.IsZero():
		p.log.Info("worker accepts connections again", "worker", pr.id, "pid", pr.pid,
			"unhealthy_for", p.now().Sub(pr.unhealthySince).Round(time.Millisecond).String())
		pr.unhealthySince = time.Time{}
		if pr.state == StateReady && !pr.stopping {
			p.disp.setEligible(pr.pid, true)
		}
		p.event("healthy", pr.id, pr.pid, "accepts connections again")
	}
}

// unhealthyReason is why pr should be recycled for failing to accept, or ""
// when it should not (yet).
func (p *primary) unhealthyReason(pr *proc) string {
	if pr.unhealthySince.IsZero() {
		return ""
	}
	d := p.now().Sub(pr.unhealthySince)
	if d < p.opts.WorkerTimeout {
		return ""
	}
	return fmt.Sprintf("unhealthy: cannot accept connections for %s (%s)", d.Round(time.Second), pr.hb.AcceptError)
}

// unhealthyCount is how many ready workers cannot accept.
func (p *primary) unhealthyCount() int {
	n := 0
	for _, pr := range p.procs {
		if pr.state == StateReady && !pr.stopping && !pr.unhealthySince.IsZero() {
			n++
		}
	}
	return n
}
