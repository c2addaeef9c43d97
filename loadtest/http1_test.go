package loadtest

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func newTestReader(s string, bufSize int) *respReader {
	r := strings.NewReader(s)
	return &respReader{br: bufio.NewReaderSize(r, bufSize), raw: r, scratch: make([]byte, 7)}
}

// next is a second response after each case: reading it proves the first
// one's body was consumed exactly.
const next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestLoadtestReadResponse(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name      string
		in        string
		head      bool
		status    int
		keepAlive bool
		workerID  string
		bodyBytes int64
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Worker-Id: 3\r\n\r\nhello", false, 200, true, "3", 5},
		{"header case and spacing", "HTTP/1.1 201 Created\r\ncontent-LENGTH:3\r\nx-worker-id:   12  \r\n\r\nabc", false, 201, true, "12", 3},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\n\nz", false, 200, true, "", 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\n" + strings.Repeat("y", 26) + "\r\n0\r\nTrailer: t\r\n\r\n", false, 200, true, "", 31},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false, 200, true, "", 2},
		{"no body 204", "HTTP/1.1 204 No Content\r\nX-Worker-Id: w\r\n\r\n", false, 204, true, "w", 0},
		{"no body 304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, 304, true, "", 0},
		{"HEAD ignores length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, 200, true, "", 0},
		{"100 continue skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", false, 503, true, "", 0},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n", false, 200, false, "", 0},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, 200, true, "", 0},
		{"HTTP/1.0 closes by default", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, 200, false, "", 0},
		{"long header skipped", "HTTP/1.1 200 OK\r\nSet-Cookie: " + long + "\r\nX-Worker-Id: 7\r\nContent-Length: 0\r\n\r\n", false, 200, true, "7", 0},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 200, true, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.keepAlive {
				in += next
			}
			rr := newTestReader(in, 64)
			resp, err := rr.readResponse(tt.head)
			if err != nil {
				t.Fatalf("readResponse: %v", err)
			}
			if resp.status != tt.status || resp.keepAlive != tt.keepAlive || string(rr.workerID) != tt.workerID || rr.read != tt.bodyBytes {
				t.Errorf("got status %d keepAlive %v worker %q body %d, want %d %v %q %d",
					resp.status, resp.keepAlive, rr.workerID, rr.read, tt.status, tt.keepAlive, tt.workerID, tt.bodyBytes)
			}
			if !tt.keepAlive {
				return
			}
			resp, err = rr.readResponse(false)
			if err != nil || resp.status != 200 || len(rr.workerID) != 0 {
				t.Errorf("next response: status %d worker %q err %v; the first one was not consumed exactly", resp.status, rr.workerID, err)
			}
		})
	}
}

func TestLoadtestReadResponseUntilClose(t *testing.T) {
	rr := newTestReader("HTTP/1.1 200 OK\r\n\r\n"+strings.Repeat("b", 1000), 64)
	resp, err := rr.readResponse(false)
	if err != nil || resp.status != 200 || resp.keepAlive || rr.read != 1000 {
		t.Errorf("got %+v read %d err %v, want 200, not keep-alive, 1000 bytes", resp, rr.read, err)
	}
}

func TestLoadtestReadResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", errNoResponse},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", errMalformed},
		{"http/2 line", "HTTP/2 200\r\n\r\n", errMalformed},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", errMalformed},
		{"status too long", "HTTP/1.1 2000 OK\r\n\r\n", errMalformed},
		{"truncated head", "HTTP/1.1 200 OK\r\nContent-Len", io.ErrUnexpectedEOF},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", io.ErrUnexpectedEOF},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", errMalformed},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", errMalformed},
		{"no colon", "HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", errMalformed},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", errMalformed},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", errMalformed},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n", errMalformed},
		{"truncated chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhi", io.ErrUnexpectedEOF},
		{"long content-length line", "HTTP/1.1 200 OK\r\nContent-Length: " + strings.Repeat("1", 100) + "\r\n\r\n", errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestReader(tt.in, 64).readResponse(false)
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzLoadtestReadResponse checks that no server reply makes the reader panic or
// loop: it must return a response or an error.
func FuzzLoadtestReadResponse(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Worker-Id: 3\r\n\r\nhello", false)
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false)
	f.Add("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n", true)
	f.Fuzz(func(t *testing.T, in string, head bool) {
		rr := newTestReader(in, 32)
		for range 4 { // a few responses in a row, as on a keep-alive connection
			resp, err := rr.readResponse(head)
			if err != nil {
				return
			}
			if resp.status < 100 || resp.status > 999 {
				t.Fatalf("status %d accepted", resp.status)
			}
			if rr.read > int64(len(in)) {
				t.Fatalf("read %d body bytes from %d input bytes", rr.read, len(in))
			}
		}
	})
}
