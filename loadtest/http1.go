package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Why not net/http's client: on a 2-core machine its two goroutines per
// connection, channel hand-offs and ~40 allocations per request cost as much
// CPU as the server under test, and it reached about half of wrk's
// requests/s. This reader parses just what a load test needs from an
// HTTP/1.1 response, without allocating.

// errMalformed marks a response the reader could not parse; it counts as an
// "other" error.
var errMalformed = errors.New("malformed response")

// errNoResponse means the connection ended before the first byte of a
// response: on a reused keep-alive connection the server most likely closed
// it while idle, and an idempotent request may be resent.
var errNoResponse = errors.New("connection closed before any response")

// maxHeaderBytes bounds a response head, so that a server streaming
// endless headers cannot hold a worker forever.
const maxHeaderBytes = 1 << 20

// respReader reads responses from one connection. br buffers raw; large
// bodies bypass br and are read straight from raw into scratch.
type respReader struct {
	br      *bufio.Reader
	raw     io.Reader
	scratch []byte
	// workerID holds the X-Worker-Id value of the last response, reusing
	// its storage between responses.
	workerID []byte
	// read counts body bytes read, for the report.
	read int64
}

// response is what the load test keeps of a response.
type response struct {
	status    int
	keepAlive bool // the connection may carry another request
	eof       bool // the body was delimited by the end of the connection, read to it
}

// readResponse reads one response for a request (head: the request was
// HEAD), skipping interim 1xx responses, and discards its body.
func (rr *respReader) readResponse(head bool) (response, error) {
	first := true
	for {
		resp, bodyKind, length, err := rr.readHead(first)
		if err != nil {
			return resp, err
		}
		first = false
		if resp.status >= 100 && resp.status < 200 && resp.status != 101 {
			continue // 100 Continue, 103 Early Hints: the real one follows
		}
		if head || resp.status == 204 || resp.status == 304 || resp.status == 101 {
			if resp.status == 101 {
				resp.keepAlive = false // the connection is no longer HTTP
			}
			return resp, nil
		}
		switch bodyKind {
		case bodyLength:
			err = rr.discard(length)
		case bodyChunked:
			err = rr.discardChunked()
		case bodyUntilClose:
			resp.keepAlive = false
			err = rr.discardUntilEOF()
			resp.eof = err == nil
		}
		return resp, err
	}
}

type bodyKind int

const (
	bodyLength bodyKind = iota
	bodyChunked
	bodyUntilClose
)

// readHead reads a status line and headers. first: no byte of this
// exchange has been read yet, so an EOF means errNoResponse.
func (rr *respReader) readHead(first bool) (resp response, kind bodyKind, length int64, err error) {
	line, err := rr.br.ReadSlice('\n')
	if err != nil {
		if first && len(line) == 0 && (errors.Is(err, io.EOF) || isReset(err)) {
			return resp, 0, 0, errNoResponse
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			err = errMalformed
		}
		return resp, 0, 0, err
	}
	// "HTTP/1.x SSS reason"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return resp, 0, 0, errMalformed
	}
	minor := line[7]
	if minor != '0' && minor != '1' {
		return resp, 0, 0, errMalformed
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return resp, 0, 0, errMalformed
		}
		resp.status = resp.status*10 + int(c-'0')
	}
	if resp.status < 100 || (len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return resp, 0, 0, errMalformed
	}
	resp.keepAlive = minor == '1'

	rr.workerID = rr.workerID[:0]
	length = -1
	chunked, otherCoding := false, false
	total := len(line)
	for {
		line, err = rr.br.ReadSlice('\n')
		total += len(line)
		if total > maxHeaderBytes {
			return resp, 0, 0, errMalformed
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: not one of the short headers
			// this reader looks at (they would be malformed that long).
			if name, _, ok := splitHeader(line); ok && interesting(name) {
				return resp, 0, 0, errMalformed
			}
			if err = rr.skipLine(&total); err != nil {
				return resp, 0, 0, err
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return resp, 0, 0, err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			break // the empty line ending the head
		}
		name, value, ok := splitHeader(line)
		if !ok {
			return resp, 0, 0, errMalformed
		}
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok || (length >= 0 && n != length) {
				return resp, 0, 0, errMalformed
			}
			length = n
		case equalFold(name, "transfer-encoding"):
			// Only the last coding decides the framing (RFC 9112 6.3).
			last := value
			if i := bytes.LastIndexByte(value, ','); i >= 0 {
				last = trimSpace(value[i+1:])
			}
			if equalFold(last, "chunked") {
				chunked = true
			} else {
				otherCoding = true
			}
		case equalFold(name, "connection"):
			if hasToken(value, "close") {
				resp.keepAlive = false
			} else if minor == '0' && hasToken(value, "keep-alive") {
				resp.keepAlive = true
			}
		case equalFold(name, "x-worker-id"):
			rr.workerID = append(rr.workerID, value...)
		}
	}
	switch {
	case otherCoding:
		return resp, bodyUntilClose, 0, nil
	case chunked:
		return resp, bodyChunked, 0, nil
	case length >= 0:
		return resp, bodyLength, length, nil
	default:
		return resp, bodyUntilClose, 0, nil
	}
}

// skipLine consumes the rest of an over-long header line.
func (rr *respReader) skipLine(total *int) error {
	for {
		line, err := rr.br.ReadSlice('\n')
		*total += len(line)
		if *total > maxHeaderBytes {
			return errMalformed
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return io.ErrUnexpectedEOF
		default:
			return err
		}
	}
}

// discard reads and drops n body bytes: first what br holds, then straight
// from the connection into scratch, so large bodies cost few system calls.
func (rr *respReader) discard(n int64) error {
	for n > 0 {
		if b := rr.br.Buffered(); b > 0 {
			k := int(min(int64(b), n))
			_, _ = rr.br.Discard(k)
			n -= int64(k)
			rr.read += int64(k)
			continue
		}
		buf := rr.scratch
		if int64(len(buf)) > n {
			buf = buf[:n]
		}
		k, err := rr.raw.Read(buf)
		n -= int64(k)
		rr.read += int64(k)
		if err != nil {
			if n > 0 && err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			if n > 0 {
				return err
			}
		}
	}
	return nil
}

func (rr *respReader) discardUntilEOF() error {
	for {
		if b := rr.br.Buffered(); b > 0 {
			_, _ = rr.br.Discard(b)
			rr.read += int64(b)
			continue
		}
		k, err := rr.raw.Read(rr.scratch)
		rr.read += int64(k)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (rr *respReader) discardChunked() error {
	for {
		line, err := rr.br.ReadSlice('\n')
		if err != nil {
			return eofIsUnexpected(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errMalformed
		}
		if size == 0 {
			break
		}
		if err := rr.discard(size); err != nil {
			return err
		}
		// The CRLF after the chunk data.
		line, err = rr.br.ReadSlice('\n')
		if err != nil {
			return eofIsUnexpected(err)
		}
		if len(trimSpace(line)) != 0 {
			return errMalformed
		}
	}
	// Trailers, up to the empty line.
	total := 0
	for {
		line, err := rr.br.ReadSlice('\n')
		total += len(line)
		if err != nil || total > maxHeaderBytes {
			if err == nil {
				err = errMalformed
			}
			return eofIsUnexpected(err)
		}
		if len(trimSpace(line)) == 0 {
			return nil
		}
	}
}

func eofIsUnexpected(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	case errors.Is(err, bufio.ErrBufferFull):
		return errMalformed
	}
	return err
}

// parseChunkSize parses "1a2b[;ext]\r\n".
func parseChunkSize(line []byte) (int64, bool) {
	line = trimSpace(line)
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = trimSpace(line[:i])
	}
	if len(line) == 0 || len(line) > 15 { // 15 hex digits cannot overflow int64
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// parseDecimal parses a Content-Length: digits only, at most 18 of them so
// that it cannot overflow.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// splitHeader splits "Name: value\r\n" into name and trimmed value.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name = line[:i]
	if name[len(name)-1] == ' ' || name[len(name)-1] == '\t' {
		return nil, nil, false // RFC 9112 5.1: no space before the colon
	}
	return name, trimSpace(line[i+1:]), true
}

func interesting(name []byte) bool {
	return equalFold(name, "content-length") || equalFold(name, "transfer-encoding") ||
		equalFold(name, "connection") || equalFold(name, "x-worker-id")
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// equalFold compares b with lower, an ASCII lower-case literal, ignoring
// case, without allocating.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v contains token
// (lower case), ignoring case.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var part []byte
		if i < 0 {
			part, v = v, nil
		} else {
			part, v = v[:i], v[i+1:]
		}
		if equalFold(trimSpace(part), token) {
			return true
		}
	}
	return false
}
