package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/procstat"
)

// freshGet sends GET url on a new connection (no keep-alive pool), so that
// it proves the server still accepts.
func freshGet(url string) (int, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// TestServeDrainDelayKeepsServingWithReadinessFailing sends SIGTERM to a
// herd with --drain-delay 5s: /readyz must answer 503 at once while new
// connections are still accepted and served, and only after the delay do
// the workers drain; herd then exits 0.
func TestServeDrainDelayKeepsServingWithReadinessFailing(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--drain-delay", "5s")
	p.WaitReady(30 * time.Second)
	if code, err := freshGet(p.URL + "/readyz"); err != nil || code != 200 {
		t.Fatalf("/readyz before the stop = %d, %v", code, err)
	}
	termAt := time.Now()
	p.Signal(syscall.SIGTERM)

	// Readiness fails in every worker (both answer: X-Worker-Id tells).
	notReady := map[string]bool{}
	p.Eventually(10*time.Second, "/readyz 503 from both workers", func() bool {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}).Get(p.URL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain delay: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 {
			notReady[resp.Header.Get("X-Worker-Id")] = true
		}
		return len(notReady) == 2
	})
	// New connections are still accepted and served.
	for i := range 20 {
		code, err := freshGet(p.URL + "/")
		if err != nil || code != 200 {
			t.Fatalf("request %d during the drain delay: %d, %v", i, code, err)
		}
	}
	if len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "drain delay over; draining workers" })) > 0 {
		t.Fatalf("the drain began before the requests of the delay were done (%s after SIGTERM): the test proved nothing", time.Since(termAt))
	}
	p.WaitMsg(30*time.Second, "drain delay over; draining workers")
	if code := p.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if d := time.Since(termAt); d < 5*time.Second {
		t.Fatalf("herd exited %s after SIGTERM, before its 5s drain delay", d)
	}
	// Each worker heard of the stop (and logged it) before it drained.
	if n := len(p.Find(func(r herdtest.Record) bool { return r.Msg() == "primary is stopping: readiness fails from now on" })); n != 2 {
		t.Fatalf("%d workers logged the stop announcement, want 2", n)
	}
}

// TestServeDrainDelaySecondSignalDrainsAtOnce: a second SIGTERM during a
// long drain delay ends it.
func TestServeDrainDelaySecondSignalDrainsAtOnce(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1", "--drain-delay", "10m")
	p.WaitReady(30 * time.Second)
	p.Signal(syscall.SIGTERM)
	p.WaitMsg(10*time.Second, "drain delay: readiness fails now, workers keep serving until the drain")
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// TestServeDrainDelayBadValue: one line naming the setting, exit 2.
func TestServeDrainDelayBadValue(t *testing.T) {
	for _, v := range []string{"soon", "-1s", "2h"} {
		cmd := exec.Command(herdtest.Binary(t), "serve", "--port", "0", "--drain-delay", v)
		cmd.Env = herdtest.CleanEnv()
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
			t.Fatalf("--drain-delay %s: %v, want exit 2\n%s", v, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if want := fmt.Sprintf("invalid --drain-delay %q", v); len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Fatalf("--drain-delay %s: want one line with %s, got %q", v, want, out)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.

// TestServeSocketActivation runs the real binary under
// systemd-socket-activate, which opens the socket, waits for a first
// connection, and execs herd with LISTEN_FDS=1 and LISTEN_PID set: herd
// must serve on that socket (the first connection included) instead of
// binding its own port.
func TestServeSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("this test needs systemd-socket-activate (Debian package systemd; make test installs it): %v", err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// It hands herd only the environment it is told to (-E).
	ctl := filepath.Join(t.TempDir(), "herd.sock")
	p := herdtest.Start(t, herdtest.Options{Binary: sa, ControlSocket: ctl},
		"-l", addr, "--fdname=http", "-E", "CONTROL_SOCKET="+ctl, herdtest.Binary(t), "serve", "--workers", "2")
	// systemd-socket-activate listens first and starts herd on the first
	// connection, which herd must then answer.
	var code int
	herdtest.WaitUntil(t, 20*time.Second, "the first connection answered", func() bool {
		code, err = freshGet("http://" + addr + "/")
		return err == nil
	})
	if code != 200 {
		t.Fatalf("first GET / = %d", code)
	}
	p.WaitReady(30 * time.Second)
	act := p.WaitMsg(5*time.Second, "socket activation: serving on the socket the service manager passed")
	if act.Str("addr") != addr || act.Str("name") != "http" {
		t.Fatalf("activation log %v, want addr %s name http", act, addr)
	}
	if p.Addr != addr {
		t.Fatalf("herd listens on %s, want the activated %s (its --port 0 must be ignored)", p.Addr, addr)
	}
	seen := map[string]bool{}
	herdtest.WaitUntil(t, 20*time.Second, "both workers answering on the activated socket", func() bool {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
		if err == nil {
			seen[resp.Header.Get("X-Worker-Id")] = resp.StatusCode == 200
			resp.Body.Close()
		}
		return seen["1"] && seen["2"]
	})
	p.Signal(syscall.SIGTERM)
	if c := p.Wait(30 * time.Second); c != 0 {
		t.Fatalf("exit code %d after SIGTERM", c)
	}
}

// TestServeIgnoresListenFDsForAnotherProcess: LISTEN_FDS meant for another
// pid (a parent that did not clean its environment) is not ours: herd binds
// its own port.
func TestServeIgnoresListenFDsForAnotherProcess(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{Env: []string{"LISTEN_FDS=1", "LISTEN_PID=1"}}, "serve", "--workers", "1")
	p.WaitReady(30 * time.Second)
	if n := len(p.Find(func(r herdtest.Record) bool { return strings.HasPrefix(r.Msg(), "socket activation") })); n != 0 {
		t.Fatalf("herd took LISTEN_FDS for another pid as its own")
	}
	if code, _, _ := p.Do("GET", "/", ""); code != 200 {
		t.Fatalf("GET / = %d", code)
	}
}

// notifyMsg is one datagram herd sent to the stand-in for systemd.
type notifyMsg struct {
	at     time.Time
	fields map[string]string
	raw    string
}

// fakeSystemd is a unixgram socket standing in for systemd's notify socket.
type fakeSystemd struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	dir, err := os.MkdirTemp("", "herd-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &fakeSystemd{path: path, conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := notifyMsg{at: time.Now(), fields: map[string]string{}, raw: string(buf[:n])}
			for _, line := range strings.Split(m.raw, "\n") {
				k, v, _ := strings.Cut(line, "=")
				m.fields[k] = v
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *fakeSystemd) all() []notifyMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]notifyMsg(nil), s.msgs...)
}

// wait returns the first message at or after index from that has key, and
// its index.
func (s *fakeSystemd) wait(t *testing.T, from int, key string) (notifyMsg, int) {
	t.Helper()
	var got notifyMsg
	idx := -1
	herdtest.WaitUntil(t, 60*time.Second, "notify message with "+key, func() bool {
		for i, m := range s.all() {
			if _, ok := m.fields[key]; ok && i >= from {
				got, idx = m, i
				return true
			}
		}
		return false
	})
	return got, idx
}

func monotonicNowUSec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestServeNotifiesSystemd runs the real binary with NOTIFY_SOCKET and
// WATCHDOG_USEC pointing at a socket of the test, and checks the messages
// and their order through a whole life: READY=1 only once every worker is
// ready, watchdog pings, RELOADING=1 + MONOTONIC_USEC and READY=1 around a
// reload, MAINPID= and READY=1 from the new primary after an upgrade (and
// no STOPPING=1 from the old one), STOPPING=1 on SIGTERM.
func TestServeNotifiesSystemd(t *testing.T) {
	sd := newFakeSystemd(t)
	ctl := filepath.Join(filepath.Dir(sd.path), "control.sock")
	p := herdtest.Start(t, herdtest.Options{Env: []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=1000000"}},
		"serve", "--workers", "2", "--control-socket", ctl)
	ready, ri := sd.wait(t, 0, "READY")
	// READY=1 came after every worker was ready: the primary says so now.
	st := statusAt(t, ctl)
	n := 0
	for _, w := range st.Workers {
		if w.State == cluster.StateReady {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("READY=1 sent with %d of 2 workers ready (status %+v)", n, st)
	}
	if ready.fields["STATUS"] != "2 of 2 workers ready" {
		t.Errorf("READY message %q, want STATUS=2 of 2 workers ready", ready.raw)
	}
	// Watchdog pings keep coming, at least once per WATCHDOG_USEC/2.
	_, wi := sd.wait(t, ri, "WATCHDOG")
	_, wi2 := sd.wait(t, wi+1, "WATCHDOG")
	if wi2 <= wi {
		t.Fatal("one watchdog ping only")
	}

	// Reload: RELOADING=1 with the monotonic clock, then READY=1 once done.
	before := monotonicNowUSec(t)
	p.Signal(syscall.SIGHUP)
	rel, reli := sd.wait(t, wi2, "RELOADING")
	after := monotonicNowUSec(t)
	mono, err := strconv.ParseInt(rel.fields["MONOTONIC_USEC"], 10, 64)
	if err != nil || mono < before || mono > after {
		t.Errorf("RELOADING message %q: MONOTONIC_USEC not between %d and %d", rel.raw, before, after)
	}
	reready, rri := sd.wait(t, reli+1, "READY")
	// The primary logs the completion before it sends READY=1; the log
	// reaches this test through a pipe, a moment after the datagram. No
	// such line within 5 s: READY=1 came before the reload completed.
	p.WaitLog(5*time.Second, fmt.Sprintf("the reload's completion logged before READY=1 (%q)", reready.raw),
		func(r herdtest.Record) bool { return r.Msg() == "rolling reload complete" })

	// Upgrade: the new primary says MAINPID= and READY=1; the old one
	// stops without STOPPING=1 (the service goes on).
	oldPID := p.Cmd.Process.Pid
	p.Signal(syscall.SIGUSR2)
	up, upi := sd.wait(t, rri+1, "MAINPID")
	newPID, _ := strconv.Atoi(up.fields["MAINPID"])
	if newPID == 0 || newPID == oldPID {
		t.Fatalf("MAINPID message %q: want the new primary's pid (old %d)", up.raw, oldPID)
	}
	if _, ok := up.fields["READY"]; !ok {
		t.Errorf("MAINPID message %q without READY=1", up.raw)
	}
	if c := p.Wait(60 * time.Second); c != 0 {
		t.Fatalf("old primary exit code %d", c)
	}
	for _, m := range sd.all()[rri:] {
		if _, ok := m.fields["STOPPING"]; ok {
			t.Fatalf("STOPPING=1 during an upgrade: %q", m.raw)
		}
	}
	if !procstat.Alive(newPID) {
		t.Fatalf("new primary %d is not running", newPID)
	}
	// The new primary pings the watchdog although WATCHDOG_PID would name
	// the old one under systemd.
	sd.wait(t, upi+1, "WATCHDOG")

	if err := syscall.Kill(newPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stop, _ := sd.wait(t, upi+1, "STOPPING")
	if !strings.Contains(stop.fields["STATUS"], "stopping") {
		t.Errorf("STOPPING message %q without a STATUS", stop.raw)
	}
	herdtest.WaitUntil(t, 60*time.Second, "the new primary to exit", func() bool { return !procstat.Alive(newPID) })
}

// controlStatus asks the primary for its status over its control socket.
func statusAt(t *testing.T, path string) cluster.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := admin.NewClient(path).Status(ctx)
	if err != nil {
		t.Fatalf("status over the control socket: %v", err)
	}
	return s
}
