package loadtest

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// cannedServer answers every request with the same bytes, doing as little
// as a server can, so that a benchmark against it measures the client. It
// expects requests without a body.
func cannedServer(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	reply := []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Worker-Id: 1\r\n\r\nhello\n")
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 { // end of a request head
						if _, err := conn.Write(reply); err != nil {
							return
						}
					}
				}
			})
		}
	})
	return "http://" + ln.Addr().String() + "/"
}

func benchRun(b *testing.B, url string) {
	b.ReportAllocs()
	b.ResetTimer()
	res, err := Run(context.Background(), Config{URL: url, Requests: int64(b.N), Concurrency: 8}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if res.Status[200] != int64(b.N) {
		b.Fatalf("got %v errors %+v, want %d 200s", res.Status, res.Errors, b.N)
	}
	b.ReportMetric(res.RPS(), "req/s")
}

// BenchmarkLoadtestCanned measures the load tester's own cost per request:
// the server side is a few system calls.
func BenchmarkLoadtestCanned(b *testing.B) { benchRun(b, cannedServer(b)) }

// BenchmarkLoadtestHTTPServer is the same against a net/http server, the
// kind of server herd runs.
func BenchmarkLoadtestHTTPServer(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Id", "1")
		_, _ = io.WriteString(w, "hello\n")
	}))
	b.Cleanup(s.Close)
	benchRun(b, s.URL)
}

// BenchmarkLoadtestNetHTTPClientCanned is the baseline the package avoids:
// a tuned net/http client doing the same closed loop against the canned
// server.
func BenchmarkLoadtestNetHTTPClientCanned(b *testing.B) {
	url := cannedServer(b)
	const c = 8
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for left.Add(-1) >= 0 {
				resp, err := client.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
