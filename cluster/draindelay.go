package cluster

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// msgUnready tells a worker that its primary is stopping: /readyz should
// answer 503 while the worker keeps serving (Worker.Unready).
const msgUnready = "unready"

// deployState is the primary's state for running under a service manager
// or an orchestrator: the drain delay and systemd notifications. Owned by
// the supervisor loop.
type deployState struct {
	notify       *notifier
	upgradedFrom int  // the old primary's pid, when this one took over by an upgrade
	mainPIDSaid  bool // MAINPID= sent

	delaying   bool      // a graceful stop waits for DrainDelay to pass
	delayUntil time.Time // when the drain begins
	delayWhy   string    // the stop's reason
	delayDone  bool      // the delay has passed (or was cut short)
	unreadyPID map[int]bool
}

// delayShutdown starts the drain delay of a graceful stop, and reports
// whether the stop must wait for it. Either way it tells the service
// manager, once, that the service is stopping. A second stop request during the
// delay (another SIGTERM, a second SIGINT, "herd stop") ends the delay
// and drains at once. A stop after a binary upgrade has no delay: the new
// primary's workers keep serving on the same socket.
func (p *primary) delayShutdown(reason string) bool {
	d := &p.dep
	if p.opts.DrainDelay <= 0 || d.delayDone || p.handedOver {
		if !d.delaying {
			p.notifyStopping(reason)
		}
		return false
	}
	if d.delaying {
		p.log.Info("stop requested again during the drain delay; draining now", "reason", reason)
		d.delayDone = true
		return false
	}
	d.delaying = true
	d.delayUntil = p.now().Add(p.opts.DrainDelay)
	d.delayWhy = reason
	p.log.Info("drain delay: readiness fails now, workers keep serving until the drain",
		"reason", reason, "delay", p.opts.DrainDelay.String())
	p.notifyStopping(reason)
	p.tellUnready()
	return true
}

// tellUnready tells every worker not told yet that the primary is stopping.
// A worker started during the delay (replacing a crashed one) is told on
// the next tick, once it can hear.
func (p *primary) tellUnready() {
	d := &p.dep
	if d.unreadyPID == nil {
		d.unreadyPID = map[int]bool{}
	}
	for pid, pr := range p.procs {
		if d.unreadyPID[pid] || pr.stopping {
			continue
		}
		if u, ok := pr.h.(interface{ unready() error }); ok {
			if err := u.unready(); err != nil {
				p.log.Warn("cannot tell worker to fail readiness", "worker", pr.id, "pid", pid, "err", err)
			}
		}
		d.unreadyPID[pid] = true
	}
}

// deployTick runs on the loop's ticker: it ends the drain delay when due
// and keeps the service manager informed.
func (p *primary) deployTick() {
	d := &p.dep
	if d.delaying && !d.delayDone {
		if p.now().Before(d.delayUntil) {
			p.tellUnready()
		} else {
			d.delayDone = true
			p.log.Info("drain delay over; draining workers")
			p.shutdown(d.delayWhy)
		}
	}
	p.notifyTick()
}

func (h *procHandle) unready() error { return h.conn.Notify(msgUnready, nil) }

// Unready is closed when a graceful stop with a drain delay
// (Options.DrainDelay) has begun: the worker keeps serving, but should
// fail its readiness checks from now on. Without a delay the stop goes
// straight to the drain, which ends the ctx Run passed; a readiness
// handler fails when either has happened.
func (w *Worker) Unready() <-chan struct{} { return w.unreadyC }

func (w *Worker) markUnready() {
	w.unreadyOnce.Do(func() {
		w.log.Info("primary is stopping: readiness fails from now on")
		close(w.unreadyC)
	})
}

// stopContext is signal.NotifyContext(ctx, SIGINT, SIGTERM) with the drain
// delay, for a process serving alone (Options.Single): the first signal
// closes w's Unready, and ctx ends after DrainDelay or at a second signal.
func stopContext(ctx context.Context, w *Worker, delay time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	sigC := make(chan os.Signal, 2)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sigC)
		select {
		case <-sigC:
		case <-ctx.Done():
			return
		}
		if delay > 0 {
			w.log.Info("drain delay: readiness fails now, serving until the drain", "delay", delay.String())
			w.markUnready()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-sigC:
			case <-ctx.Done():
			}
		}
		cancel()
	}()
	return ctx, cancel
}
