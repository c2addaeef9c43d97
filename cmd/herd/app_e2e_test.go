package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/procstat"
	"github.com/herd-go/herd/internal/tmpfs"
)

// request sends one request with headers and returns status, headers and
// body; a transport error fails the test.
func request(t *testing.T, method, url, body string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := herdtest.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}

func jsonField(t *testing.T, body []byte, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %q", body)
	}
	return string(m[name])
}

// TestPausedPrimaryWriteIsUnknownAndARetryWithTheKeyCountsOnce: with the
// primary stopped (SIGSTOP) a counter POST cannot know whether it counted:
// 504, never "retry". Once the primary resumes, the same POST with the
// same Idempotency-Key answers the first count, and the counter went up
// by exactly one.
func TestPausedPrimaryWriteIsUnknownAndARetryWithTheKeyCountsOnce(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1")
	p.WaitReady(30 * time.Second)
	if code, _, body := request(t, "POST", p.URL+"/cluster/counter", "", nil); code != 200 || jsonField(t, body, "counter") != "1" {
		t.Fatalf("first POST /cluster/counter = %d %s, want 200 counter 1", code, body)
	}
	primary := p.Cmd.Process.Pid
	if err := syscall.Kill(primary, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(primary, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	t.Cleanup(resume) // a stopped primary could not be stopped cleanly
	// Every thread: until then the primary may still answer the call.
	herdtest.WaitUntil(t, 10*time.Second, "the primary stopped", func() bool { return procstat.Stopped(primary) })

	key := map[string]string{"Idempotency-Key": "e2e-paused-1"}
	code, hdr, body := request(t, "POST", p.URL+"/cluster/counter", "", key)
	if code != http.StatusGatewayTimeout {
		t.Fatalf("POST /cluster/counter with the primary stopped = %d %s, want 504", code, body)
	}
	msg := jsonField(t, body, "error")
	if !strings.Contains(msg, "may or may not") || strings.Contains(strings.ToLower(msg), "retry later") || hdr.Get("Retry-After") != "" {
		t.Errorf("504 error %s (Retry-After %q): want it to say the outcome is unknown, and no plain retry", msg, hdr.Get("Retry-After"))
	}

	resume()
	// The retry may reach the primary before or after the paused request:
	// either way the key makes one increment, and both answer the same.
	var replayCounter string
	herdtest.WaitUntil(t, 30*time.Second, "a retry with the same key to succeed", func() bool {
		code, _, body := request(t, "POST", p.URL+"/cluster/counter", "", key)
		if code == 200 {
			replayCounter = jsonField(t, body, "counter")
		}
		return code == 200
	})
	if replayCounter != "2" {
		t.Errorf("retry with the same key answered counter %s, want 2", replayCounter)
	}
	code, _, body = request(t, "GET", p.URL+"/cluster/shared-state/counter", "", nil)
	if code != 200 || jsonField(t, body, "value") != "2" {
		t.Fatalf("counter after the paused POST and its retry = %d %s, want 2: counted once", code, body)
	}
	// Once more for good measure: still replayed, still 2.
	code, hdr, body = request(t, "POST", p.URL+"/cluster/counter", "", key)
	if code != 200 || jsonField(t, body, "counter") != "2" || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("third POST with the key = %d %s (replayed %q), want 200 counter 2 replayed", code, body, hdr.Get("Idempotent-Replayed"))
	}
}

// TestFullDiskAnswers507 runs herd with its state file on a small tmpfs
// and fills it: writes answer 507 with a JSON error saying the store is
// out of space, reads and deletes go on working, and writes work again
// once space is freed.
func TestFullDiskAnswers507(t *testing.T) {
	dir := tmpfs.Mount(t, 8<<20)
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--state-file", filepath.Join(dir, "state.db"))
	p.WaitReady(30 * time.Second)
	// Keys to read and delete later, and pages freed by overwrites, which
	// a delete on a full disk reuses (bbolt copies the pages it changes).
	for i := range 60 {
		body := fmt.Sprintf(`{"key":"k%d","value":"%s"}`, i%20, strings.Repeat("v", 200))
		if code, _, b := request(t, "POST", p.URL+"/cluster/shared-state", body, nil); code != 200 {
			t.Fatalf("POST before the disk is full = %d %s", code, b)
		}
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	big := fmt.Sprintf(`{"key":"big%%d","value":"%s"}`, strings.Repeat("b", 60<<10))
	var code int
	var body []byte
	for i := 0; i < 20; i++ { // the first may still fit in free pages
		code, _, body = request(t, "POST", p.URL+"/cluster/shared-state", fmt.Sprintf(big, i), nil)
		if code != 200 {
			break
		}
	}
	if code != http.StatusInsufficientStorage {
		t.Fatalf("POST on a full disk = %d %s, want 507", code, body)
	}
	full := bytes.TrimSpace(body)
	if msg := jsonField(t, body, "error"); !strings.Contains(msg, "out of space") {
		t.Errorf("507 error %s does not say the store is out of space", msg)
	}
	if code, _, b := request(t, "POST", p.URL+"/cluster/counter", "", nil); code != 200 && code != http.StatusInsufficientStorage {
		t.Errorf("POST /cluster/counter on a full disk = %d %s, want 200 or 507", code, b)
	}
	if code, _, b := request(t, "GET", p.URL+"/cluster/shared-state/k3", "", nil); code != 200 {
		t.Errorf("GET on a full disk = %d %s, want 200", code, b)
	}
	if code, _, b := request(t, "DELETE", p.URL+"/cluster/shared-state/k3", "", nil); code != 204 {
		t.Errorf("DELETE on a full disk = %d %s, want 204", code, b)
	}
	if recs := p.Find(func(r herdtest.Record) bool { return r.Msg() == "shared state backend out of space" }); len(recs) == 0 {
		t.Errorf("no warning in the log says the store is out of space")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, _, b := request(t, "POST", p.URL+"/cluster/shared-state", fmt.Sprintf(big, 99), nil); code != 200 {
		t.Errorf("POST once space is freed = %d %s, want 200", code, b)
	}
	t.Logf("chaos: full disk (8 MB tmpfs, --state-file): a write answered 507 %s; GET and DELETE answered on the full disk; writes 200 again once space was freed", full)
}

// postRaw sends POST path with no body on rc and returns the status, the
// Retry-After header and the body.
func postRaw(t *testing.T, rc *rawConn, path string) (int, string, string) {
	t.Helper()
	_ = rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(rc.c, "POST %s HTTP/1.1\r\nHost: herd\r\nContent-Length: 0\r\n\r\n", path); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// TestPrimaryGoneWriteIsNotSentAnd503: with the primary gone (SIGKILL), a
// worker finishing its connections cannot send a write to the primary at
// all: the write was certainly not made, so the answer is 503 "retry
// later" with Retry-After, not 504 (outcome unknown), which is kept for a
// write the primary received and never answered (the paused-primary test
// above).
func TestPrimaryGoneWriteIsNotSentAnd503(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "1")
	p.WaitReady(30 * time.Second)
	rc := dialFrom(t, p.Addr, "")
	if code, _, body := postRaw(t, rc, "/cluster/counter"); code != 200 {
		t.Fatalf("POST /cluster/counter = %d %s, want 200", code, body)
	}
	p.Signal(syscall.SIGKILL)
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the primary did not die of SIGKILL")
	}
	// The worker keeps its connections for a moment (to finish in-flight
	// requests) before it exits: a request on this one reaches it.
	defer func() {
		if t.Failed() {
			t.Logf("herd's output:\n%s", p.Output())
		}
	}()
	code, retry, body := postRaw(t, rc, "/cluster/counter")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("POST /cluster/counter with the primary gone = %d %s, want 503 (the write was never sent)", code, body)
	}
	if msg := jsonField(t, []byte(body), "error"); !strings.Contains(msg, "retry later") || retry == "" || strings.Contains(msg, "may or may not") {
		t.Errorf("503 error %q (Retry-After %q): want it to say retry later, with Retry-After", msg, retry)
	}
	t.Logf("chaos: SIGKILL primary, then a write on a worker's open connection: %d %s (Retry-After %s): never sent, so not 504", code, strings.TrimSpace(body), retry)
}
