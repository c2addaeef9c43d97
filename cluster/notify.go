package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The systemd notification protocol (sd_notify(3)): with NOTIFY_SOCKET
// set, the primary sends its service manager datagrams of "KEY=value"
// lines. herd says READY=1 only once every worker is ready (not when the
// primary starts), RELOADING=1 with MONOTONIC_USEC during a rolling reload
// and READY=1 after it, STOPPING=1 when a graceful stop begins, STATUS=
// with the workers' count, MAINPID= from a new primary after a binary
// upgrade, and WATCHDOG=1 from the supervisor loop itself, only while at
// least one worker is healthy: a hung loop or a herd with no healthy
// worker stops the pings and systemd restarts the service.
const (
	envNotifySocket  = "NOTIFY_SOCKET"
	envWatchdogUSec  = "WATCHDOG_USEC"
	envWatchdogPID   = "WATCHDOG_PID"
	notifyStatusTick = 250 * time.Millisecond
)

// notifier writes to the service manager's socket. Its methods are called
// from the supervisor loop only.
type notifier struct {
	conn     *net.UnixConn
	watchdog time.Duration // WATCHDOG_USEC; 0: no watchdog
	lastPing time.Time
	status   string // last STATUS= sent
}

// newNotifier connects to NOTIFY_SOCKET (a path, or "@name" for an
// abstract socket); nil, nil when it is not set. upgradedFrom is the old
// primary's pid when this one took over by a binary upgrade: the watchdog
// then belongs to this process even though WATCHDOG_PID names an older one.
func newNotifier(upgradedFrom int) (*notifier, error) {
	path := os.Getenv(envNotifySocket)
	if path == "" {
		return nil, nil
	}
	name := path
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("cluster: %s=%s: %w", envNotifySocket, path, err)
	}
	n := &notifier{conn: conn}
	if us, err := strconv.ParseInt(os.Getenv(envWatchdogUSec), 10, 64); err == nil && us > 0 {
		pid, perr := strconv.Atoi(os.Getenv(envWatchdogPID))
		// After an upgrade WATCHDOG_PID still names the first primary
		// systemd started (the environment travels down the chain of
		// upgrades); this primary is the main process now (MAINPID=).
		if perr != nil || pid == os.Getpid() || upgradedFrom != 0 {
			n.watchdog = time.Duration(us) * time.Microsecond
		}
	}
	return n, nil
}

// send writes one datagram of lines.
func (n *notifier) send(lines ...string) error {
	if n == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(strings.Join(lines, "\n")))
	return err
}

func (n *notifier) close() {
	if n != nil {
		n.conn.Close()
	}
}

// monotonicUSec is CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants.
func monotonicUSec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return strconv.FormatInt(ts.Nano()/1000, 10)
}

// notify sends lines to the service manager, if there is one, and logs a
// failure once per kind of message rather than failing the server.
func (p *primary) notify(lines ...string) {
	if p.dep.notify == nil {
		return
	}
	if err := p.dep.notify.send(lines...); err != nil && !errors.Is(err, net.ErrClosed) {
		p.log.Warn("cannot notify the service manager", "err", err, "message", strings.Join(lines, " "))
	}
}

// notifyAllReady runs when every wanted worker is ready.
func (p *primary) notifyAllReady() {
	if p.dep.notify == nil {
		return
	}
	p.dep.notify.status = p.statusText()
	lines := []string{"READY=1", "STATUS=" + p.dep.notify.status}
	if p.dep.upgradedFrom != 0 && !p.dep.mainPIDSaid {
		// The old primary was the service's main process; this one is now.
		p.dep.mainPIDSaid = true
		lines = append([]string{"MAINPID=" + strconv.Itoa(os.Getpid())}, lines...)
	}
	p.notify(lines...)
}

// notifyReloading runs when a rolling reload starts.
func (p *primary) notifyReloading() {
	p.notify("RELOADING=1", "MONOTONIC_USEC="+monotonicUSec(), "STATUS=reloading: "+p.statusText())
}

// notifyReloaded runs when a rolling reload ends, whether or not it
// succeeded: the workers serving are the service's state either way.
func (p *primary) notifyReloaded(err error) {
	status := p.statusText()
	if err != nil {
		status = "reload failed, old workers keep serving: " + status
	}
	if p.dep.notify != nil {
		p.dep.notify.status = status
	}
	p.notify("READY=1", "STATUS="+status)
}

// notifyStopping runs when a graceful stop begins. After a handover the
// service goes on in the new primary: nothing to say.
func (p *primary) notifyStopping(reason string) {
	if p.handedOver {
		return
	}
	p.notify("STOPPING=1", "STATUS=stopping: "+reason)
}

// notifyTick runs on the loop's ticker: STATUS= when the workers changed,
// and the watchdog ping when it is due and a worker is healthy.
func (p *primary) notifyTick() {
	n := p.dep.notify
	if n == nil || p.handedOver {
		return
	}
	if !p.shutting && !p.dep.delaying && p.reloading == nil && p.allReadySaid {
		if s := p.statusText(); s != n.status {
			n.status = s
			p.notify("STATUS=" + s)
		}
	}
	if n.watchdog > 0 && p.now().Sub(n.lastPing) >= n.watchdog/4 && p.healthyWorkers() > 0 {
		n.lastPing = p.now()
		p.notify("WATCHDOG=1")
	}
}

// healthyWorkers counts workers that serve with a fresh heartbeat, or are
// finishing their requests in a graceful stop.
func (p *primary) healthyWorkers() int {
	n := 0
	now := p.now()
	for _, pr := range p.procs {
		switch {
		case pr.state == StateDraining:
			n++
		case pr.state == StateReady && now.Sub(pr.lastBeat) <= p.opts.WorkerTimeout:
			n++
		}
	}
	return n
}

// statusText is the STATUS= line: "2 of 2 workers ready".
func (p *primary) statusText() string {
	return fmt.Sprintf("%d of %d workers ready", p.readyCount(), p.want)
}

// startNotify connects to the service manager when NOTIFY_SOCKET is set.
// upgradeFrom is HERD_UPGRADE_FROM's value ("" for a primary started by
// hand or by systemd).
func (p *primary) startNotify(upgradeFrom string) error {
	p.dep.upgradedFrom, _ = strconv.Atoi(upgradeFrom)
	n, err := newNotifier(p.dep.upgradedFrom)
	if err != nil {
		// Serving matters more than telling: a unit waiting for READY=1
		// times out and says so in its own log.
		p.log.Warn("cannot notify the service manager; serving without it", "err", err)
		return nil
	}
	p.dep.notify = n
	if n != nil {
		p.log.Info("notifying the service manager", "socket", os.Getenv(envNotifySocket), "watchdog", n.watchdog.String())
		p.notify("STATUS=starting " + strconv.Itoa(p.want) + " workers")
	}
	return nil
}
