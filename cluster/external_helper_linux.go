package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// ExecHelper runs the helper role this process was started in (see
// IsExecHelper). The exec step does not return unless the program cannot be
// executed; the reaper returns nil once the primary is gone and the groups
// it knew are killed.
func ExecHelper() error {
	switch role := os.Getenv(envHelper); role {
	case helperExec:
		return execStep()
	case helperReaper:
		return runReaper(os.NewFile(3, "reaper"))
	default:
		return fmt.Errorf("cluster: %s=%q is not a helper role", envHelper, role)
	}
}

// execStep replaces this process with the program. It runs between the
// primary's fork and the program's exec, which Go cannot do itself
// (golang/go#14180), to set LISTEN_PID (and WATCHDOG_PID) to the pid the
// program will have: this one.
func execStep() error {
	var a execArgv
	if err := json.Unmarshal([]byte(os.Getenv(envExecArgv)), &a); err != nil || a.Path == "" || len(a.Argv) == 0 {
		return fmt.Errorf("%w: %s is not a program and its arguments", ErrBadExec, envExecArgv)
	}
	pid := strconv.Itoa(os.Getpid())
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == envHelper || k == envExecArgv || k == "LISTEN_PID" || k == "WATCHDOG_PID" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LISTEN_PID="+pid, "WATCHDOG_PID="+pid)
	err := syscall.Exec(a.Path, a.Argv, env) //nolint:gosec // G204: the user's own COMMAND of herd run, passed on by its primary
	return fmt.Errorf("cluster: executing %s: %w", a.Path, err)
}

// runReaper keeps the set of live program process groups the primary tells
// it about on r ("+pgid", "-pgid"), and when r reaches its end (the primary
// exited, however it died) kills every group left, so that no program's
// child outlives the primary. It ignores the signals a terminal or a
// process manager sends the primary.
func runReaper(r *os.File) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2)
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		n, err := strconv.Atoi(line[1:])
		if err != nil || n <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[n] = true
		case '-':
			delete(groups, n)
		}
	}
	for g := range groups {
		_ = syscall.Kill(-g, syscall.SIGKILL)
	}
	return nil
}
