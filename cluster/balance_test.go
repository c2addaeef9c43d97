package cluster

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/listen"
)

// acceptN dials n connections to addr, one after the other, and accepts
// them from acc; it returns the time between one accept and the next, for
// each, and the accepted connections.
func acceptN(t *testing.T, addr string, acc net.Listener, n int) ([]time.Duration, []net.Conn) {
	t.Helper()
	errC := make(chan error, 1)
	var clients []net.Conn
	go func() {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errC <- err
				return
			}
			clients = append(clients, c)
		}
		errC <- nil
	}()
	var got []net.Conn
	var gaps []time.Duration
	last := time.Now()
	for range n {
		c, err := acc.Accept()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		gaps = append(gaps, now.Sub(last))
		last = now
		got = append(got, c)
	}
	if err := <-errC; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range append(got, clients...) {
			c.Close()
		}
	})
	return gaps, got
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// The listener Serve accepts from under BalanceShared takes new connections
// as fast with 1,000 idle connections open as with none. (The fairListener
// it replaces slept up to 1 ms before each accept once its worker held
// connections: about ten times slower here, which this test catches.)
func TestSharedListenerIdleConnectionsDoNotSlowAccept(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	w := &Worker{ln: tl, opts: Options{Balance: BalanceShared}}
	var open atomic.Int64
	ln := w.serveListener(&open)
	addr := tl.Addr().String()

	// The median time per accept: a busy machine stalls a few of them
	// (the fairListener slept before every one).
	// A busy machine can stall a whole timing run: the best of three
	// pairs counts (the fairListener made every pair slow).
	acceptN(t, addr, ln, 100) // warm up
	var without, with time.Duration
	ratio := 0.0
	for range 3 {
		open.Store(0)
		gaps, _ := acceptN(t, addr, ln, 500)
		wo := median(gaps)
		_, idle := acceptN(t, addr, ln, 1000)
		open.Store(int64(len(idle)))
		gaps, _ = acceptN(t, addr, ln, 500)
		wi := median(gaps)
		for _, c := range idle {
			c.Close()
		}
		if r := wo.Seconds() / wi.Seconds(); r > ratio {
			without, with, ratio = wo, wi, r
		}
		t.Logf("median time per accept: %v without idle connections, %v with 1,000 (rate ratio %.2f)", wo, wi, wo.Seconds()/wi.Seconds())
		if ratio >= 0.5 {
			break
		}
	}
	if ratio < 0.5 {
		t.Fatalf("1,000 idle connections slowed accepting from %v to %v each (rate ratio %.2f, want at least 0.5)", without, with, ratio)
	}
}

// otherErrListener fails its first accepts with an error that more waiting
// does not cure.
type otherErrListener struct {
	net.Listener
	fails atomic.Int64
}

func (l *otherErrListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: &net.AddrError{}}
	}
	return l.Listener.Accept()
}

// emfileErrListener fails its first accepts with EMFILE, as a process out
// of descriptors does.
type emfileErrListener struct {
	net.Listener
	fails atomic.Int64
}

func (l *emfileErrListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Out of descriptors, a worker's accept backs off and retries instead of
// returning the error (net/http would log a line per attempt) or spinning,
// and counts the failures for its heartbeat. Other errors pass through.
func TestSharedListenerBacksOffWhenOutOfDescriptors(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	fl := &emfileErrListener{Listener: tl}
	fl.fails.Store(3)
	w := &Worker{ln: fl}
	var open atomic.Int64
	ln := w.serveListener(&open)
	go func() {
		if c, err := net.Dial("tcp", tl.Addr().String()); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	start := time.Now()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v, want a connection after the descriptors came back", err)
	}
	c.Close()
	if d := time.Since(start); d < acceptBackoffMin+2*acceptBackoffMin {
		t.Errorf("three failed accepts retried within %v: no back-off", d)
	}
	if got := w.accept.errors.Load(); got != 3 {
		t.Errorf("accept errors counted: %d, want 3", got)
	}
	if !strings.Contains(w.accept.lastError(), syscall.EMFILE.Error()) {
		t.Errorf("last accept error not recorded")
	}

	other := &otherErrListener{Listener: tl}
	other.fails.Store(1)
	w2 := &Worker{ln: other}
	if _, err := w2.serveListener(&open).Accept(); err == nil {
		t.Fatal("an accept error other than running out of descriptors was swallowed")
	}
}

// A worker at Options.MaxConns does not accept until one of its
// connections closes.
func TestSharedListenerWaitsAtMaxConns(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	w := &Worker{ln: tl, opts: Options{MaxConns: 2}}
	var open atomic.Int64
	open.Store(2)
	ln := w.serveListener(&open)
	c, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan net.Conn, 1)
	go func() {
		if a, err := ln.Accept(); err == nil {
			got <- a
		}
	}()
	select {
	case a := <-got:
		a.Close()
		t.Fatal("accepted a third connection at --max-conns 2")
	case <-time.After(100 * time.Millisecond):
	}
	open.Add(-1)
	select {
	case a := <-got:
		a.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no accept once a connection closed")
	}
}

func TestParseBalance(t *testing.T) {
	for _, s := range []string{"auto", "least-conn", "shared", "sticky"} {
		if b, err := ParseBalance(s); err != nil || string(b) != s {
			t.Errorf("ParseBalance(%q) = %q, %v", s, b, err)
		}
	}
	if b, err := ParseBalance(""); err != nil || b != DefaultBalance {
		t.Errorf("ParseBalance(\"\") = %q, %v, want the default", b, err)
	}
	if _, err := ParseBalance("round-robin"); err == nil {
		t.Error("ParseBalance accepted round-robin")
	}
}

// newTestDispatcher returns a least-conn dispatcher, not yet running, over
// a new loopback listener, which it also returns (closed at cleanup).
func newTestDispatcher(t *testing.T) (*dispatcher, *net.TCPListener) {
	t.Helper()
	tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	lf, err := listen.Passable(tl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	return newDispatcher(lf, BalanceLeastConn, 0, slog.New(slog.DiscardHandler)), tl
}

// addTestWorker registers an eligible worker pid with d and returns its
// listener (lnFD as newPassedListener takes it).
func addTestWorker(t *testing.T, d *dispatcher, tl *net.TCPListener, pid, lnFD int) *passedListener {
	t.Helper()
	uc, f, err := connPair()
	if err != nil {
		t.Fatal(err)
	}
	d.add(pid, pid, uc)
	pl, err := newPassedListener(f, tl.Addr(), lnFD, &acceptStats{})
	if err != nil {
		t.Fatal(err)
	}
	d.setEligible(pid, true)
	return pl
}

// The dispatcher's no-loss rule, in one process: connections passed to a
// worker that goes away without acknowledging them (its socket closed, as
// when it is SIGKILLed) reach another worker, with what their clients sent.
func TestDispatcherPassesOnWhatAGoneWorkerNeverTook(t *testing.T) {
	d, tl := newTestDispatcher(t)
	gone, alive := addTestWorker(t, d, tl, 1, -1), addTestWorker(t, d, tl, 2, -1)
	go d.run()
	defer func() { d.close(); d.wait(5 * time.Second) }()

	const n = 6
	for i := range n {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[byte]bool{}
	accept := func() {
		type res struct {
			c   net.Conn
			err error
		}
		rc := make(chan res, 1)
		go func() {
			c, err := alive.Accept()
			rc <- res{c, err}
		}()
		var c net.Conn
		select {
		case r := <-rc:
			if r.err != nil {
				t.Fatal(r.err)
			}
			c = r.c
		case <-time.After(10 * time.Second):
			t.Fatalf("after %d connections, none more reached the live worker within 10s", len(got))
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("a passed connection lost its client's byte: %v", err)
		}
		got[b[0]] = true
	}
	// Least-conn gives each worker half; the one that never accepts then
	// goes away.
	for range n / 2 {
		accept()
	}
	gone.uc.Close()
	for range n / 2 {
		accept()
	}
	if len(got) != n {
		t.Fatalf("the live worker got %d distinct connections, want %d: %v", len(got), n, got)
	}
}

// A worker that cannot accept says so in its heartbeats, every second; the
// primary logs it once per worker, not once per heartbeat.
func TestPrimaryLogsAcceptFailuresOnce(t *testing.T) {
	h := newHarness(t, 1)
	pid := h.live(1).pid
	h.p.handle(evReady{pid})
	for i := range 5 {
		h.p.handle(evBeat{pid: pid, hb: Heartbeat{AcceptErrors: uint64(10 * (i + 1)), AcceptError: "accept4: too many open files", AcceptFailing: true}})
	}
	if n := strings.Count(h.logs.String(), "worker cannot accept connections"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, h.logs)
	}
	if !strings.Contains(h.logs.String(), "too many open files") {
		t.Errorf("the log line does not carry the error:\n%s", h.logs)
	}
}

// A worker that refuses a passed connection (out of descriptors: the nack
// record) gets it passed to another worker at once, and is passed nothing
// more until one of its connections closes or nackRetry passes: here it
// refuses everything, and of 40 connections dialled in a row it is
// offered one, plus at most one more per nackRetry (without the rule it
// was offered about every other connection).
func TestDispatcherPassesNothingToAWorkerThatRefused(t *testing.T) {
	d, tl := newTestDispatcher(t)
	uc1, f1, err := connPair()
	if err != nil {
		t.Fatal(err)
	}
	d.add(1, 1, uc1)
	fc, err := net.FileConn(f1)
	f1.Close()
	if err != nil {
		t.Fatal(err)
	}
	refuser := fc.(*net.UnixConn)
	defer refuser.Close()
	uc2, f2, err := connPair()
	if err != nil {
		t.Fatal(err)
	}
	d.add(2, 2, uc2)
	taker, err := newPassedListener(f2, tl.Addr(), -1, &acceptStats{})
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	d.setEligible(1, true)
	d.setEligible(2, true)
	go d.run()
	defer func() { d.close(); d.wait(5 * time.Second) }()

	var offered atomic.Int64
	go func() { // worker 1: refuses every connection it is passed
		buf, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(4*maxBatch))
		for {
			n, oobn, _, _, err := refuser.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			closeAll(rights(oob[:oobn]))
			if n != batchLen {
				continue // the shared page
			}
			offered.Add(1)
			var rec [recLen]byte
			rec[0] = recNack
			copy(rec[1:9], buf[:8])
			copy(rec[9:13], buf[8:12])
			if _, err := refuser.Write(rec[:]); err != nil {
				return
			}
		}
	}()

	const n = 40
	start := time.Now()
	for i := range n {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		type res struct {
			c   net.Conn
			err error
		}
		rc := make(chan res, 1)
		go func() {
			a, err := taker.Accept()
			rc <- res{a, err}
		}()
		select {
		case r := <-rc:
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.c.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d did not reach the worker with room within 10s", i+1)
		}
	}
	took := time.Since(start)
	if got, most := offered.Load(), 2+int64(took/nackRetry); got > most {
		t.Fatalf("the refusing worker was offered %d of %d connections in %v, want at most %d", got, n, took, most)
	}
	t.Logf("the refusing worker was offered %d of %d connections in %v", offered.Load(), n, took)
}

// BalanceAuto's switch, in one process with real sockets: two workers'
// listeners serve HTTP while the dispatcher switches between passing and
// the workers accepting from the shared queue 40 times under a load of a
// new connection per request. No request fails; while the workers accept,
// the primary accepts nothing and both workers count what they took in
// their shared pages; once everything is closed no goroutine is left.
func TestDispatcherSwitchesModeUnderLoad(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	d, tl := newTestDispatcher(t)
	var served [2]atomic.Int64
	var pls []*passedListener
	var srvs sync.WaitGroup
	for i := range 2 {
		pl := addTestWorker(t, d, tl, i+1, dupListener(tl))
		pls = append(pls, pl)
		srvs.Add(1)
		go func() {
			defer srvs.Done()
			_ = NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				served[i].Add(1)
				_, _ = io.WriteString(w, "ok")
			})).Serve(pl)
		}()
	}
	go d.run()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	url := "http://" + tl.Addr().String() + "/"
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	for range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 40 {
		d.mu.Lock()
		d.setDirectLocked(i%2 == 0, 0)
		d.mu.Unlock()
		time.Sleep(25 * time.Millisecond)
	}
	// Workers accepting: the primary takes nothing more.
	d.mu.Lock()
	d.setDirectLocked(true, 0)
	d.mu.Unlock()
	// The accept loop leaves the poller (what it took before is passed).
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		left := d.acceptFile == nil
		d.mu.Unlock()
		if left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the accept loop still waits in the poller 10 s after the switch to the workers")
		}
		time.Sleep(5 * time.Millisecond)
	}
	passed := d.passed.Load()
	before := ok.Load()
	deadline = time.Now().Add(10 * time.Second)
	for ok.Load() < before+200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := d.passed.Load(); got != passed {
		t.Errorf("the primary accepted %d connections while the workers were to accept", got-passed)
	}
	d.mu.Lock()
	for _, w := range d.order {
		if w.shm.accepted() == 0 {
			t.Errorf("worker %d counted no connection it accepted itself", w.pid)
		}
	}
	d.mu.Unlock()
	close(stop)
	load.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed across 40 switches; first: %v", f, f+ok.Load(), firstErr.Load())
	}
	if ok.Load() < before+200 {
		t.Fatalf("only %d requests served in 10 s while the workers accepted", ok.Load()-before)
	}
	t.Logf("%d requests, none failed; served %d and %d", ok.Load(), served[0].Load(), served[1].Load())

	d.close()
	d.wait(5 * time.Second)
	for _, pl := range pls {
		pl.Close() // its socket's EOF ends the dispatcher's reader too
	}
	srvs.Wait()
	client.CloseIdleConnections()
	deadline = time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Fatalf("%d goroutines left, %d before the test", n, goroutines)
	}
}
