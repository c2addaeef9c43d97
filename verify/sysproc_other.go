//go:build !linux

package verify

import "syscall"

// sysProcAttr puts the primary in its own process group, so that a Ctrl-C
// in the terminal reaches verify alone, which then stops the cluster.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// alive reports whether pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
