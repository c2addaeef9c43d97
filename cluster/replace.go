package cluster

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Replacement first: every planned replacement of a worker (reload,
// recycling) starts the new process, waits until it is ready, and only then
// drains the old one. If the new one never gets ready the old one keeps
// serving.

// replace starts a replacement for old. It returns nil when a replacement
// is already under way or cannot be started.
func (p *primary) replace(old *proc, reason string) *proc {
	if old.replacedBy != 0 || old.stopping || p.shutting {
		return nil
	}
	np := p.startWorker(old.id)
	if np == nil {
		return nil
	}
	np.replaces, old.replacedBy = old.pid, np.pid
	old.retire = retireKind(reason)
	p.log.Info("replacing worker", "worker", old.id, "pid", old.pid, "new_pid", np.pid, "reason", reason)
	return np
}

// maybeRecycle replaces pr when its heartbeat figures pass the limits.
func (p *primary) maybeRecycle(pr *proc) {
	if pr.state != StateReady || pr.replacedBy != 0 || p.now().Before(pr.recycleAt) {
		return
	}
	var reason string
	switch r := p.opts.Recycle; {
	case p.unhealthyReason(pr) != "":
		reason = p.unhealthyReason(pr)
	case pr.reqLimit > 0 && pr.hb.Requests >= pr.reqLimit:
		reason = fmt.Sprintf("served %d requests (limit %d)", pr.hb.Requests, pr.reqLimit)
	case pr.ageLimit > 0 && p.now().Sub(pr.readyAt) >= pr.ageLimit:
		reason = fmt.Sprintf("up for %s (limit %s)", p.now().Sub(pr.readyAt).Round(time.Second), r.MaxAge)
	case r.MaxRSS > 0 && pr.hb.RSS > r.MaxRSS:
		reason = fmt.Sprintf("RSS %.1f MB over the limit of %.1f MB", float64(pr.hb.RSS)/(1<<20), float64(r.MaxRSS)/(1<<20))
		// Over the limit at its first heartbeat after ready: the limit is
		// below what a new worker needs, not a leak.
		if !p.rssLimitWarned && pr.readyBeats <= 1 {
			p.rssLimitWarned = true
			p.log.Warn("a worker is over the memory limit as soon as it starts, so workers will be replaced over and over: raise the limit",
				"worker", pr.id, "pid", pr.pid, "rss_mb", fmt.Sprintf("%.1f", float64(pr.hb.RSS)/(1<<20)),
				"limit_mb", fmt.Sprintf("%.1f", float64(r.MaxRSS)/(1<<20)))
		}
	default:
		return
	}
	p.replace(pr, "recycle: "+reason)
}

// reloadOp is a rolling reload: one worker at a time.
type reloadOp struct {
	ids      []int // worker ids to replace, in order
	next     int   // index into ids
	cur      int   // pid of the replacement being waited for
	replaced int
	done     []chan error
}

// reload starts a rolling reload, or joins the one under way. done, if not
// nil, receives the outcome.
func (p *primary) reload(done chan error) {
	if p.shutting {
		if done != nil {
			done <- errors.New("cluster: cannot reload: the primary is shutting down")
		}
		return
	}
	if r := p.reloading; r != nil {
		if done != nil {
			r.done = append(r.done, done)
		}
		return
	}
	var ids []int
	for id := 1; id <= p.want; id++ {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	p.reloading = &reloadOp{ids: ids}
	if done != nil {
		p.reloading.done = append(p.reloading.done, done)
	}
	p.log.Info("rolling reload started", "workers", len(ids))
	p.event("reload", 0, 0, "rolling reload started")
	p.notifyReloading()
	p.reloadNext()
}

// reloadNext replaces the next worker, or finishes the reload.
func (p *primary) reloadNext() {
	r := p.reloading
	for r.next < len(r.ids) {
		id := r.ids[r.next]
		r.next++
		old := p.live(id)
		if old == nil || old.state != StateReady {
			// Not serving now (dead and backing off, or starting): whatever
			// starts next comes from the new binary anyway.
			continue
		}
		if old.replacedBy != 0 {
			r.cur = old.replacedBy // a recycle is already replacing it: wait for that one
			r.replaced++
			return
		}
		np := p.replace(old, "reload")
		if np == nil {
			p.finishReload(fmt.Errorf("cluster: reload stopped: cannot start a replacement for worker %d", id))
			return
		}
		r.cur = np.pid
		r.replaced++
		return
	}
	p.finishReload(nil)
}

func (p *primary) finishReload(err error) {
	r := p.reloading
	p.reloading = nil
	p.noteOutcome("reload", err)
	if err != nil {
		p.log.Error("rolling reload failed", "err", err)
	} else {
		p.log.Info("rolling reload complete", "replaced", r.replaced)
	}
	p.notifyReloaded(err)
	for _, d := range r.done {
		d <- err
	}
}

// waiter is a command waiting for the cluster to reach a state.
type waiter struct {
	check func() (done bool, err error)
	done  chan error
}

// await answers done once check reports completion; check runs in the loop
// after every event.
func (p *primary) await(check func() (bool, error), done chan error) {
	if ok, err := check(); ok || err != nil {
		done <- err
		return
	}
	p.waiters = append(p.waiters, &waiter{check: check, done: done})
}

func (p *primary) checkWaiters() {
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if ok, err := w.check(); ok || err != nil {
			w.done <- err
			continue
		}
		kept = append(kept, w)
	}
	p.waiters = kept
}

// scaled reports whether exactly want workers are ready and nothing else
// is left running.
func (p *primary) scaled(want int) (bool, error) {
	if p.shutting {
		return false, errors.New("cluster: the primary is shutting down")
	}
	if p.want != want {
		return false, fmt.Errorf("cluster: scaled to %d by another command meanwhile", p.want)
	}
	return p.readyCount() == want && len(p.procs) == want, nil
}

// exitWords says how a process ended, for humans.
func exitWords(e evExited, killReason string) string {
	switch {
	case killReason != "":
		return "was killed: it " + killReason
	case e.signal != "":
		return "was killed by " + e.signal
	default:
		return fmt.Sprintf("exited with code %d", e.code)
	}
}
