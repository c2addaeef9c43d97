package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds how much of a response body verify reads.
const maxBody = 1 << 20

// client sends requests to one server, each on a new connection, so that
// the kernel hands each to whichever worker accepts it: a kept-alive
// connection would stay with one worker and hide the distribution.
type client struct {
	base    string
	timeout time.Duration
	tr      *http.Transport
	hc      *http.Client
}

func newClient(base string, timeout time.Duration) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	tr.Proxy = nil // verify talks to the server itself, never through a proxy
	return &client{base: base, timeout: timeout, tr: tr, hc: &http.Client{Transport: tr}}
}

func (c *client) close() { c.tr.CloseIdleConnections() }

// response is an answer, its body read (at most maxBody bytes).
type response struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration // from sending to the end of the body
}

func (r *response) workerID() string { return r.header.Get("X-Worker-Id") }

// workerPID returns X-Worker-Pid, or 0 when absent or not a number.
func (r *response) workerPID() int {
	n, _ := strconv.Atoi(r.header.Get("X-Worker-Pid"))
	return n
}

// who names the worker that answered, for evidence.
func (r *response) who() string {
	id, pid := r.workerID(), r.header.Get("X-Worker-Pid")
	switch {
	case id == "" && pid == "":
		return "a process without X-Worker-Id"
	case pid == "":
		return "worker " + id
	default:
		return "worker " + id + " (pid " + pid + ")"
	}
}

// summary is "503 {"error":"..."}", for evidence.
func (r *response) summary() string { return strconv.Itoa(r.status) + " " + snippet(r.body) }

// snippet shortens a body for evidence: compact JSON as is, anything else
// quoted.
func snippet(b []byte) string {
	const max = 160
	var s string
	var buf bytes.Buffer
	if json.Compact(&buf, b) == nil {
		s = buf.String()
	} else {
		s = strconv.Quote(string(b))
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// do sends one request with a JSON body (when body is not nil) and reads
// the answer within timeout (c.timeout when 0). trace, if not nil, sees the
// request's progress.
func (c *client) do(ctx context.Context, method, path string, body []byte, timeout time.Duration, trace *httptrace.ClientTrace) (*response, error) {
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if trace != nil {
		ctx = httptrace.WithClientTrace(ctx, trace)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", "herd-verify")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, requestError(method, path, timeout, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, requestError(method, path, timeout, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}, nil
}

// requestError says what went wrong in words short enough for evidence.
func requestError(method, path string, timeout time.Duration, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		return fmt.Errorf("%s %s: no answer within %s", method, path, timeout)
	}
	return fmt.Errorf("%s %s: %w", method, path, err)
}

// getJSON decodes r's body into v, saying what was wrong for evidence.
func (r *response) decode(v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("body is not the JSON expected (%w): %s", err, snippet(r.body))
	}
	return nil
}
