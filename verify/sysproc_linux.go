package verify

import (
	"syscall"

	"github.com/herd-go/herd/internal/procstat"
)

// sysProcAttr puts the primary in its own process group, so that a Ctrl-C
// in the terminal reaches verify alone (which then stops the cluster in
// order), and has the kernel kill it if verify itself dies without
// cleaning up (SIGKILL): its workers then follow on their own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool { return procstat.Alive(pid) }
