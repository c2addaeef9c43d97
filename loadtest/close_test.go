package loadtest

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timeWait counts the IPv4 TCP sockets of this network namespace in
// TIME_WAIT to (client side) and from (server side) port, read from
// /proc/net/tcp.
func timeWait(t *testing.T, port int) (client, server int) {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("counting TIME_WAIT sockets: %v", err)
	}
	defer f.Close()
	hexPort := func(addr string) int {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.ParseInt(p, 16, 32)
		return int(n)
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "06" { // 06: TCP_TIME_WAIT
			continue
		}
		switch {
		case hexPort(f[2]) == port:
			client++
		case hexPort(f[1]) == port:
			server++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return client, server
}

func serverPort(t *testing.T, s *server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// A new connection per request leaves the TIME_WAIT state with the
// server, which closes first, not with the client: tens of thousands of
// connections do not tie up the client's ports, and none fails for want
// of one.
func TestLoadtestNoKeepAliveNoClientTimeWait(t *testing.T) {
	s := newServer(t, hello)
	port := serverPort(t, s)
	n := int64(20000)
	if raceEnabled {
		n = 8000 // about 1,000 connections a second under the race detector
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, Config{URL: s.URL, Requests: n, Concurrency: 50, DisableKeepAlive: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, server := timeWait(t, port)
	t.Logf("%d requests in %v (%.0f/s); TIME_WAIT: %d on the client side, %d on the server side; errors %+v %v",
		res.Requests, res.Duration, res.RPS(), client, server, res.Errors, res.ErrorSamples)
	if res.Status[200] != n || res.Failed() != 0 || res.Errors.Client != 0 || res.Interrupted {
		t.Errorf("got status %v errors %+v (%v); want %d 200s, no failure, none the client's", res.Status, res.Errors, res.ErrorSamples, n)
	}
	if got := s.conns.Load(); got != n {
		t.Errorf("server accepted %d connections, want %d: one per request", got, n)
	}
	// A few may linger from a FIN that came late (the client then resets,
	// which leaves none either); tens of thousands did before.
	if int64(client) > n/1000 {
		t.Errorf("%d client-side sockets in TIME_WAIT after %d requests, want at most %d: the client closed first", client, n, n/1000)
	}
}

// A server that ignores Connection: close and keeps the connection open
// is not waited for: the client resets it once the response is complete,
// and leaves no TIME_WAIT either.
func TestLoadtestNoKeepAliveServerKeepsOpen(t *testing.T) {
	s := newServer(t, hijack(t, func(rw *bufio.ReadWriter) {
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		rw.Flush()
		_, _ = rw.ReadString('\n') // until the client resets or closes
	}))
	port := serverPort(t, s)
	res := run(t, Config{URL: s.URL, Requests: 200, Concurrency: 4, DisableKeepAlive: true})
	if res.Status[200] != 200 || res.Failed() != 0 {
		t.Errorf("got status %v errors %+v, want 200 200s", res.Status, res.Errors)
	}
	if res.Duration > 5*time.Second {
		t.Errorf("200 requests took %v: the client must not wait for a close that does not come", res.Duration)
	}
	if client, _ := timeWait(t, port); client != 0 {
		t.Errorf("%d client-side sockets in TIME_WAIT, want 0: connections the server keeps open are reset", client)
	}
}

// A server that answers with Connection: close on its own, to a client
// that did not ask, is also left to close first.
func TestLoadtestServerCloseNoClientTimeWait(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		hello(w, r)
	})
	port := serverPort(t, s)
	res := run(t, Config{URL: s.URL, Requests: 2000, Concurrency: 10})
	client, _ := timeWait(t, port)
	if res.Status[200] != 2000 || client > 2 {
		t.Errorf("got status %v errors %+v, %d client-side TIME_WAIT; want 2000 200s and none", res.Status, res.Errors, client)
	}
}

// Under TLS too, the client waits for the server's close (after its
// close_notify) and keeps no TIME_WAIT.
func TestLoadtestNoKeepAliveTLS(t *testing.T) {
	s := &server{Server: httptest.NewUnstartedServer(http.HandlerFunc(hello))}
	s.StartTLS()
	t.Cleanup(s.Close)
	port := serverPort(t, s)
	res := run(t, Config{URL: s.URL, Requests: 200, Concurrency: 4, DisableKeepAlive: true,
		TLS: s.Client().Transport.(*http.Transport).TLSClientConfig})
	client, _ := timeWait(t, port)
	t.Logf("200 requests in %v, latency %+v", res.Duration, res.Latency)
	if res.Status[200] != 200 || res.Failed() != 0 || client > 2 {
		t.Errorf("got status %v errors %+v %v, %d client-side TIME_WAIT; want 200 200s and none", res.Status, res.Errors, res.ErrorSamples, client)
	}
}
