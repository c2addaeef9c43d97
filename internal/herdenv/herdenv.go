// Package herdenv names the environment variables herd reads, so that what
// starts herd for a check or a measurement (the tests, herd verify, the
// benchmark driver) can start it free of the caller's own settings, and so
// that herd serve starts its workers without them (a worker gets its
// configuration from the primary; REDIS_URL may hold a password).
package herdenv

import (
	"slices"
	"strings"
)

// Names are herd serve's settings (a test in cmd/herd checks the list
// against the command's), the markers of a worker, an upgrade and inherited
// sockets, and GOMAXPROCS, which sets how many cores herd's primary counts.
var Names = []string{
	"PORT", "HOST", "CLUSTER_MODE", "CLUSTER_ENABLED", "CLUSTER_WORKERS", "APP_ENV",
	"SHUTDOWN_TIMEOUT", "LOG_FORMAT", "ENABLE_CRASH_ENDPOINT", "STATE_FILE", "REDIS_URL",
	"READY_TIMEOUT", "WORKER_TIMEOUT", "MAX_REQUESTS", "MAX_MEMORY", "WORKER_GOMAXPROCS",
	"PID_FILE", "CONTROL_SOCKET", "BALANCE", "MAX_CONNS", "ADMIN_ADDR", "ADMIN_TOKEN", "DRAIN_DELAY",
	"STOP_SIGNAL", "READY_PROBE", "READY_AFTER", "MAX_AGE", "HERD_EXEC_HELPER", "HERD_EXEC_ARGV", "HERD_RUN_WORKER",
	"HERD_WORKER_ID", "HERD_WORKER_OPTIONS", "HERD_UPGRADE_FROM", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID",
	"GOMAXPROCS",
	"METRICS",
}

// Clean returns environ ("KEY=value" entries, as os.Environ returns them)
// without the entries Names lists.
func Clean(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains(Names, k) {
			out = append(out, kv)
		}
	}
	return out
}
