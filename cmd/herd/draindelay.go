package main

import (
	"strings"
	"time"
)

// maxDrainDelay bounds --drain-delay: long enough for any load balancer to
// notice a failing readiness probe, short enough that a typo (5m for 5s)
// does not hold every stop for an hour.
const maxDrainDelay = 10 * time.Minute

// parseDrainDelay reads --drain-delay/DRAIN_DELAY: a duration from 0
// (drain at once) to maxDrainDelay.
func parseDrainDelay(r resolved, v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if strings.TrimSpace(v) == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 || d > maxDrainDelay {
		return 0, r.bad("drain-delay", "must be a duration from 0s to 10m, such as 5s")
	}
	return d, nil
}
