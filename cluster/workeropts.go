package cluster

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// envWorkerOptions carries to each worker the Options that decide how a
// worker behaves on its own (how long it drains when sent SIGTERM alone,
// its connection cap, its heartbeat period, whether it counts per-request
// figures), as the primary was given them.
// A worker's own Options are overridden by them, so a program whose workers
// read no configuration (herd's workers take theirs from the primary over
// IPC, so no secret is on their command line) still drains and caps as its
// primary was told. Nothing secret travels here.
const envWorkerOptions = "HERD_WORKER_OPTIONS"

// workerOptionsEnv encodes the worker-side options as one environment entry.
func (o Options) workerOptionsEnv() string {
	return envWorkerOptions + "=" + strings.Join([]string{
		"shutdown-timeout=" + o.ShutdownTimeout.String(),
		"heartbeat=" + o.HeartbeatInterval.String(),
		"max-conns=" + strconv.Itoa(o.MaxConns),
		"request-metrics=" + strconv.FormatBool(!o.DisableRequestMetrics),
	}, " ")
}

// applyWorkerOptions overrides o with what the primary passed in s (the
// value of envWorkerOptions). Unknown or malformed entries are ignored:
// the worker keeps its own value for them.
func (o *Options) applyWorkerOptions(s string) {
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "shutdown-timeout":
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				o.ShutdownTimeout = d
			}
		case "heartbeat":
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				o.HeartbeatInterval = d
			}
		case "max-conns":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				o.MaxConns = n
			}
		case "request-metrics":
			if b, err := strconv.ParseBool(v); err == nil {
				o.DisableRequestMetrics = !b
			}
		}
	}
}

// takeWorkerOptions applies and removes envWorkerOptions, so that the
// worker's own children do not see it.
func (o *Options) takeWorkerOptions() {
	if s, ok := os.LookupEnv(envWorkerOptions); ok {
		o.applyWorkerOptions(s)
		os.Unsetenv(envWorkerOptions)
	}
}
