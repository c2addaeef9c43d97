package cluster

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notifySink is a unixgram socket standing in for systemd.
func notifySink(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "n.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

// drainSink returns the datagrams waiting on c.
func drainSink(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 4096)
	for {
		if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

func countPrefix(msgs []string, prefix string) int {
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) || strings.Contains(m, "\n"+prefix) {
			n++
		}
	}
	return n
}

// TestWatchdogOnlyWithAHealthyWorker: no WATCHDOG=1 while no worker is
// ready, pings once one is, none once every ready worker's heartbeat is
// stale (a hung herd), pings again when one beats.
func TestWatchdogOnlyWithAHealthyWorker(t *testing.T) {
	sink, path := notifySink(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "2000000")
	h := newHarnessWith(t, Options{Workers: 2, WorkerTimeout: 5 * time.Second})
	if err := h.p.startNotify(""); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		h.advance(time.Second)
		h.p.deployTick()
	}
	if msgs := drainSink(t, sink); countPrefix(msgs, "WATCHDOG=1") != 0 {
		t.Fatalf("watchdog pings with no worker ready: %q", msgs)
	}
	h.readyAll()
	msgs := drainSink(t, sink)
	if countPrefix(msgs, "READY=1") != 1 {
		t.Fatalf("want one READY=1 once all are ready, got %q", msgs)
	}
	h.advance(time.Second)
	h.p.deployTick()
	if msgs := drainSink(t, sink); countPrefix(msgs, "WATCHDOG=1") != 1 {
		t.Fatalf("want a watchdog ping with workers ready, got %q", msgs)
	}
	// Heartbeats stop (the workers hang): past WorkerTimeout no ping.
	h.advance(6 * time.Second)
	for range 4 {
		h.advance(time.Second)
		h.p.deployTick()
	}
	if msgs := drainSink(t, sink); countPrefix(msgs, "WATCHDOG=1") != 0 {
		t.Fatalf("watchdog pings with every worker's heartbeat stale: %q", msgs)
	}
	for pid := range h.procs {
		h.p.handle(evBeat{pid: pid})
		break
	}
	h.advance(time.Second)
	h.p.deployTick()
	if msgs := drainSink(t, sink); countPrefix(msgs, "WATCHDOG=1") != 1 {
		t.Fatalf("want a ping once a worker beats again, got %q", msgs)
	}
}

// TestDrainDelayWaitsThenDrains: a graceful stop with a drain delay drains
// nobody until the delay has passed, says STOPPING=1 at once, and a second
// stop request cuts the delay short.
func TestDrainDelayWaitsThenDrains(t *testing.T) {
	sink, path := notifySink(t)
	t.Setenv("NOTIFY_SOCKET", path)
	for _, second := range []bool{false, true} {
		h := newHarnessWith(t, Options{Workers: 2, DrainDelay: 5 * time.Second})
		if err := h.p.startNotify(""); err != nil {
			t.Fatal(err)
		}
		h.readyAll()
		drainSink(t, sink)
		h.p.shutdown("SIGTERM")
		if msgs := drainSink(t, sink); countPrefix(msgs, "STOPPING=1") != 1 {
			t.Fatalf("want STOPPING=1 when the delay starts, got %q", msgs)
		}
		h.advance(4 * time.Second)
		h.p.deployTick()
		for _, f := range h.procs {
			if f.drained {
				t.Fatalf("worker %d drained during the delay", f.id)
			}
		}
		if second {
			h.p.shutdown("SIGTERM")
		} else {
			h.advance(2 * time.Second)
			h.p.deployTick()
		}
		for _, f := range h.procs {
			if !f.drained {
				t.Fatalf("worker %d not drained after the delay (second signal: %v)", f.id, second)
			}
		}
		if msgs := drainSink(t, sink); countPrefix(msgs, "STOPPING=1") != 0 {
			t.Fatalf("STOPPING=1 said twice: %q", msgs)
		}
	}
}
