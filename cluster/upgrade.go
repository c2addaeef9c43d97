package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-go/herd/internal/listen"
)

// EnvUpgradeFrom marks a primary started by another one for a binary
// upgrade: it inherits the listening socket instead of opening it.
const EnvUpgradeFrom = "HERD_UPGRADE_FROM"

// IsUpgrade reports whether this process is a primary started by another
// one for a binary upgrade (before Run has taken over the sockets): what
// the old primary holds, such as a database file lock, it releases only
// once this one is ready.
func IsUpgrade() bool {
	_, ok := os.LookupEnv(EnvUpgradeFrom)
	return ok && !IsWorker()
}

// envUpgradeWorkers tells a new primary how many workers the old one ran.
const envUpgradeWorkers = "HERD_UPGRADE_WORKERS"

// Names of descriptors a new primary inherits.
const (
	fdControl = "herd-control"
	fdUpgrade = "herd-upgrade" // the new primary writes "ready\n" here
)

// upgradeGrace is how long, beyond ReadyTimeout, a new primary may take to
// report ready before the old one gives up on it.
const upgradeGrace = 10 * time.Second

type upgradeOp struct {
	pid     int
	cmd     *exec.Cmd
	started time.Time
	done    []chan error
}

// evUpgrade reports on the new primary: ready, or gone before ready.
type evUpgrade struct {
	pid   int
	ready bool
	err   error
}

// upgrade starts a new primary from the executable on disk, or joins the
// upgrade under way. done, if not nil, receives the outcome.
func (p *primary) upgrade(done chan error) {
	fail := func(err error) {
		p.noteOutcome("upgrade", err)
		p.log.Error("upgrade failed; this primary keeps serving", "err", err)
		if done != nil {
			done <- err
		}
	}
	if p.shutting {
		fail(errors.New("cluster: cannot upgrade: the primary is shutting down"))
		return
	}
	if u := p.upgrading; u != nil {
		if done != nil {
			u.done = append(u.done, done)
		}
		return
	}
	if p.lnF == nil {
		fail(errors.New("cluster: cannot upgrade: no listening socket to hand over"))
		return
	}
	exe, err := os.Executable()
	if err != nil {
		fail(fmt.Errorf("cluster: cannot upgrade: %w", err))
		return
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		fail(fmt.Errorf("cluster: cannot upgrade: %w", err))
		return
	}
	defer readyW.Close()
	files := []listen.Named{{Name: fdHTTP, File: p.lnF}, {Name: fdUpgrade, File: readyW}}
	if p.ctlF != nil {
		files = append(files, listen.Named{Name: fdControl, File: p.ctlF})
	}
	cmd := exec.Command(exe, os.Args[1:]...) //nolint:gosec // G204: starts the upgraded binary the operator installed at this path
	// The worker count travels too: a runtime scale outlives the upgrade.
	cmd.Env = append(primaryEnv(os.Environ()), EnvUpgradeFrom+"="+strconv.Itoa(os.Getpid()), envUpgradeWorkers+"="+strconv.Itoa(p.want))
	cmd.Env = append(cmd.Env, listen.Env(files)...)
	for _, f := range files {
		cmd.ExtraFiles = append(cmd.ExtraFiles, f.File)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		readyR.Close()
		fail(fmt.Errorf("cluster: cannot upgrade: starting %s: %w", exe, err))
		return
	}
	pid := cmd.Process.Pid
	p.upgrading = &upgradeOp{pid: pid, cmd: cmd, started: p.now()}
	if done != nil {
		p.upgrading.done = append(p.upgrading.done, done)
	}
	p.log.Info("upgrade: started a new primary", "new_pid", pid, "executable", exe)
	go func() {
		defer readyR.Close()
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		if strings.TrimSpace(line) == "ready" {
			p.send(evUpgrade{pid: pid, ready: true})
		}
	}()
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited with code 0")
		}
		p.send(evUpgrade{pid: pid, err: err})
	}()
}

func (p *primary) onUpgrade(e evUpgrade) {
	u := p.upgrading
	if u == nil || u.pid != e.pid {
		return // a new primary we already handed over to, exiting later
	}
	p.upgrading = nil
	if !e.ready {
		err := fmt.Errorf("cluster: upgrade failed: the new primary (pid %d) %v before its workers were ready; this primary keeps serving", e.pid, e.err) //nolint:errorlint // may be nil (exit 0, or a wrong value): printed, not wrapped
		p.log.Error("upgrade failed; this primary keeps serving", "new_pid", e.pid, "err", e.err)
		p.noteOutcome("upgrade", err)
		for _, d := range u.done {
			d <- err
		}
		return
	}
	p.log.Info("upgrade: new primary ready; handing over", "new_pid", e.pid)
	p.handedOver = true
	p.noteOutcome("upgrade", nil)
	if p.opts.OnHandover != nil {
		p.opts.OnHandover()
	}
	if p.ctl != nil {
		p.ctl.Close() // the new primary holds the same socket now
	}
	for _, d := range u.done {
		d <- nil
	}
	p.shutdown(fmt.Sprintf("upgraded to the new primary (pid %d)", e.pid))
}

// checkUpgrade gives up on a new primary that never reports ready.
func (p *primary) checkUpgrade() {
	u := p.upgrading
	if u == nil || p.now().Sub(u.started) < p.opts.ReadyTimeout+upgradeGrace {
		return
	}
	p.log.Error("upgrade: the new primary did not become ready in time; killing it", "new_pid", u.pid)
	_ = u.cmd.Process.Signal(syscall.SIGKILL)
	u.started = p.now().Add(time.Hour) // kill once; its exit ends the upgrade
}

// primaryEnv is the environment without descriptor and upgrade markers.
func primaryEnv(base []string) []string {
	env := make([]string, 0, len(base)+4)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case EnvWorkerID, EnvUpgradeFrom, envUpgradeWorkers, listen.EnvFDs, listen.EnvFDNames, "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writePIDFile writes pid to path atomically.
func writePIDFile(path string, pid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil { //nolint:gosec // G306: a pid file is meant to be world-readable
		return fmt.Errorf("cluster: pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cluster: pid file: %w", err)
	}
	return nil
}

// removePIDFile removes path if it still holds pid (after an upgrade it
// holds the new primary's).
func removePIDFile(path string, pid int) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator's --pid-file
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		os.Remove(path)
	}
}
