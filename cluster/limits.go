package cluster

import (
	"log/slog"
	"syscall"
)

// LowFDLimit is the descriptor limit below which the primary warns at
// start: every connection a worker holds open uses one descriptor.
const LowFDLimit = 4096

// logFDLimit logs the file-descriptor limit every worker inherits (Go has
// already raised the soft limit to the hard one), and warns when it is low.
func logFDLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit", "err", err)
		return
	}
	logFDLimitValue(log, rl.Cur)
}

func logFDLimitValue(log *slog.Logger, n uint64) {
	if n < LowFDLimit {
		log.Warn("file descriptor limit is low: each worker can hold fewer connections than that open, and then stops accepting; raise it (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=)",
			"limit", n, "recommended", LowFDLimit)
		return
	}
	log.Info("file descriptor limit", "limit", n)
}
