package cluster

import (
	"context"
	"runtime/debug"
	"time"
)

// idleRelease is how long a process does no work before it returns the
// memory of its last burst to the operating system.
const idleRelease = 2 * time.Second

// releaseWhenIdle returns freed memory to the operating system once work
// (the count of requests served, or of calls answered) has stood still for
// idleRelease after moving. The Go runtime keeps the heap a burst grew for
// reuse, so without this a process's RSS stays near its peak long after the
// load: the figure herd status shows and Options.Recycle.MaxRSS compares would
// count memory the process no longer uses. It runs at most once per idle
// period, never while the count keeps moving, and returns when ctx ends.
func releaseWhenIdle(ctx context.Context, work func() uint64) {
	t := time.NewTicker(idleRelease / 4)
	defer t.Stop()
	last, since, released := work(), time.Now(), true
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			switch n := work(); {
			case n != last:
				last, since, released = n, now, false
			case !released && now.Sub(since) >= idleRelease:
				debug.FreeOSMemory()
				released = true
			}
		}
	}
}
