package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// runLoadtest calls cmdLoadtest as main would and returns its exit code and
// outputs.
func runLoadtest(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = cmdLoadtest(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func loadtestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL + "/"
}

func TestLoadtestCmdCount(t *testing.T) {
	var served atomic.Int64
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Id", strconv.FormatInt(served.Add(1)%2, 10))
	})
	// Flags after the URL as well as before it.
	code, out, errOut := runLoadtest(t, "-c", "5", url, "-n", "50")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, errOut)
	}
	if served.Load() != 50 {
		t.Errorf("server saw %d requests, want 50", served.Load())
	}
	for _, want := range []string{"· 5 connections ·", "Requests  50 in ", "Status    200: 50\n", "Workers   balanced"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "histogram") || strings.Contains(errOut, "\r") {
		t.Errorf("piped output has terminal decorations:\nstdout %q\nstderr %q", out, errOut)
	}
}

func TestLoadtestCmdDuration(t *testing.T) {
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {})
	start := time.Now()
	code, out, _ := runLoadtest(t, url, "-d", "300ms", "-c", "2")
	if took := time.Since(start); code != exitOK || took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("exit %d after %v, want 0 after about 300ms\n%s", code, took, out)
	}
}

func TestLoadtestCmdNon2xx(t *testing.T) {
	var n atomic.Int64
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	code, out, errOut := runLoadtest(t, url, "-n", "20", "-c", "2")
	if code != exitFail {
		t.Errorf("exit %d, want %d for 500s", code, exitFail)
	}
	if !strings.Contains(out, "500: 4") || !strings.Contains(errOut, "4 of 20 requests failed") {
		t.Errorf("stdout:\n%s\nstderr: %q; want 4 500s reported", out, errOut)
	}
	code, _, errOut = runLoadtest(t, url, "-n", "20", "-c", "2", "--allow-errors")
	if code != exitOK || errOut != "" {
		t.Errorf("--allow-errors: exit %d stderr %q, want 0 and nothing", code, errOut)
	}
}

func TestLoadtestCmdConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close()
	// --allow-errors tolerates some failures, not a run that measured nothing.
	code, out, errOut := runLoadtest(t, url, "-n", "6", "-c", "2", "--json", "--allow-errors")
	var rep struct {
		Requests, Succeeded, Failed int64
		RPS                         float64
		CompletedRPS                float64 `json:"completed_rps"`
		Errors                      struct{ Connect, Client int64 }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if code != exitFail || rep.Requests != 6 || rep.Errors.Connect != 6 || rep.Errors.Client != 0 || rep.Succeeded != 0 || rep.Failed != 6 {
		t.Errorf("exit %d, %+v; want 1 and 6 connect errors, none the client's", code, rep)
	}
	if rep.RPS != 0 || rep.CompletedRPS <= 0 {
		t.Errorf("rps %v, completed_rps %v; want 0 (no success) and above 0", rep.RPS, rep.CompletedRPS)
	}
	if want := "herd loadtest: all 6 requests failed: nothing was measured\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}

	code, out, _ = runLoadtest(t, url, "-n", "6", "-c", "2")
	for _, want := range []string{"ALL 6 REQUESTS FAILED", "Rate      0 req/s succeeded", "server: connect 6 ·"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	if code != exitFail {
		t.Errorf("text: exit %d, want %d", code, exitFail)
	}
}

// The real binary with few file descriptors: the dials that fail for want
// of one are the client's failures, reported apart from the server's.
func TestLoadtestCmdClientSideErrors(t *testing.T) {
	var served atomic.Int64
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ulimit -n sets the hard limit too, which Go would raise the soft one to.
	cmd := exec.CommandContext(ctx, "sh", "-c", `ulimit -n 24 && exec "$0" "$@"`,
		herdtest.Binary(t), "loadtest", url, "-c", "40", "-n", "400", "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFail {
		t.Fatalf("herd loadtest under ulimit -n 24: %v, want exit %d\nstdout %s\nstderr %s", err, exitFail, out, stderr.String())
	}
	var rep struct {
		Requests, Succeeded int64
		Errors              struct{ Connect, Timeout, Reset, Other, Client int64 }
		Samples             map[string]string `json:"error_samples"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	e := rep.Errors
	if rep.Requests != 400 || e.Client == 0 || e.Connect+e.Timeout+e.Reset+e.Other != 0 || rep.Succeeded+e.Client != 400 || served.Load() != rep.Succeeded {
		t.Errorf("got %+v, server saw %d; want 400 requests, the failed ones all the client's", rep, served.Load())
	}
	if s := rep.Samples["client"]; !strings.Contains(s, "too many open files") {
		t.Errorf("client error sample %q, want it to say too many open files", s)
	}
	if msg := stderr.String(); !strings.Contains(msg, fmt.Sprintf("%d of them on this machine", e.Client)) || strings.Count(msg, "\n") != 1 {
		t.Errorf("stderr %q, want one line saying the %d failures were this machine's", msg, e.Client)
	}
}

// --mix sends a weighted mix and reports each kind apart.
func TestLoadtestCmdMix(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
	})
	code, out, errOut := runLoadtest(t, url, "-n", "1000", "-c", "4", "--mix", "90%:/,10%:/api/7", "--seed", "5", "--json")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	var rep struct {
		Mix struct {
			Seed  uint64
			Kinds []struct {
				Path             string
				Requests, Failed int64
				RPS              float64
				Latency          struct{ P50, P99 float64 } `json:"latency_ms"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	k := rep.Mix.Kinds
	if rep.Mix.Seed != 5 || len(k) != 2 || k[0].Path != "/" || k[1].Path != "/api/7" {
		t.Fatalf("mix %+v", rep.Mix)
	}
	mu.Lock()
	defer mu.Unlock()
	if k[0].Requests+k[1].Requests != 1000 || k[1].Requests < 50 || k[1].Requests > 150 || int64(seen["/api/7"]) != k[1].Requests {
		t.Errorf("kinds %+v, server saw %v; want about 900 and 100, as served", k, seen)
	}
	for _, kind := range k {
		if kind.Failed != 0 || kind.RPS <= 0 || kind.Latency.P50 <= 0 || kind.Latency.P99 < kind.Latency.P50 {
			t.Errorf("kind %+v: want no failure, a rate and latency percentiles", kind)
		}
	}
}

func TestLoadtestCmdTimeout(t *testing.T) {
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	code, out, _ := runLoadtest(t, url, "-n", "2", "-c", "2", "--timeout", "100ms")
	if code != exitFail || !strings.Contains(out, "timeout 2 ·") {
		t.Errorf("exit %d, want 1 with 2 timeouts:\n%s", code, out)
	}
}

func TestLoadtestCmdJSON(t *testing.T) {
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Worker-Id", "3") })
	code, out, errOut := runLoadtest(t, "--json", url, "-n", "10", "-c", "2")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	for _, k := range []string{"url", "requests", "rps", "latency_ms", "status", "errors", "workers", "duration_s", "failed"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if doc["requests"] != 10.0 || doc["url"] != url {
		t.Errorf("requests %v url %v, want 10 and %s", doc["requests"], doc["url"], url)
	}
	w, _ := doc["workers"].(map[string]any)
	if w["verdict"] != "one worker: worker 3 served 100%" {
		t.Errorf("workers: %v", w)
	}
}

func TestLoadtestCmdPOST(t *testing.T) {
	type seen struct{ method, body, ctype, auth string }
	var mu sync.Mutex
	var got []seen
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, string(b), r.Header.Get("Content-Type"), r.Header.Get("Authorization")})
		mu.Unlock()
	})
	code, _, errOut := runLoadtest(t, url, "-n", "3", "-c", "1", "-m", "POST", "-b", `{"k":"v"}`,
		"-H", "Content-Type: application/json", "-H", "Authorization:Bearer x")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := seen{"POST", `{"k":"v"}`, "application/json", "Bearer x"}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(got))
	}
	for _, g := range got {
		if g != want {
			t.Errorf("server saw %+v, want %+v", g, want)
		}
	}
}

func TestLoadtestCmdUsage(t *testing.T) {
	const url = "http://127.0.0.1:1/"
	tests := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"unknown flag", []string{"--bogus"}, "-bogus"},
		{"concurrency 0", []string{"-c", "0", url}, "-c 0"},
		{"concurrency not a number", []string{"-c", "many", url}, "-c"},
		{"requests -1", []string{"-n", "-1", url}, "-n -1"},
		{"requests 0", []string{"-n", "0", url}, "-n 0"},
		{"bad URL", []string{"foo"}, `bad URL "foo"`},
		{"ftp URL", []string{"ftp://host/"}, "bad URL"},
		{"no host", []string{"http://"}, "bad URL"},
		{"bad port", []string{"http://127.0.0.1:70000/"}, "port"},
		{"two URLs", []string{url, url}, "too many arguments"},
		{"bad duration", []string{"-d", "ten", url}, "want a duration"},
		{"zero duration", []string{"-d", "0s", url}, "-d 0s"},
		{"bad timeout", []string{"--timeout", "0", url}, "--timeout"},
		{"header without colon", []string{"-H", "foo", url}, `"Name: value"`},
		{"header with space in name", []string{"-H", "Bad Name: x", url}, `"Name: value"`},
		{"framing header", []string{"-H", "Content-Length: 3", url}, "Content-Length"},
		{"both -n and -d", []string{"-n", "10", "-d", "1s", url}, "-n and -d"},
		{"bad method", []string{"-m", "GET /x", url}, "method"},
		{"mix without weight", []string{"--mix", "/", url}, "--mix \"/\": entry 1"},
		{"mix weight 0", []string{"--mix", "0:/", url}, "whole number of 1 or more"},
		{"mix percentages short of 100", []string{"--mix", "90%:/,5%:/x", url}, "sum to 95%"},
		{"mix of URLs", []string{"--mix", "1:http://elsewhere/", url}, "not a URL of its own"},
		{"mix empty", []string{"--mix", "", url}, "--mix"},
		{"seed without mix", []string{"--seed", "3", url}, "--seed without --mix"},
		{"seed not a number", []string{"--mix", "1:/", "--seed", "x", url}, "-seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runLoadtest(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") ||
				!strings.HasPrefix(errOut, "herd loadtest: ") || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q, want one line \"herd loadtest: ...%s...\"", errOut, tt.want)
			}
		})
	}
}

func TestLoadtestCmdHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		code, out, errOut := runLoadtest(t, arg)
		if code != exitOK || errOut != "" || !strings.Contains(out, "Usage: herd loadtest [URL]") || !strings.Contains(out, "--allow-errors") {
			t.Errorf("%s: exit %d stderr %q stdout:\n%s", arg, code, errOut, out)
		}
	}
}

// SIGINT stops the run early and the report of what was done is printed.
func TestLoadtestCmdInterrupt(t *testing.T) {
	var served atomic.Int64
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := cmdLoadtest(context.Background(), []string{url, "-d", "30s", "-c", "2"}, &out, &errOut)
		done <- result{code, out.String(), errOut.String()}
	}()
	// cmdLoadtest catches SIGINT before its first request: once the server
	// has seen some, the signal cannot kill the test binary.
	deadline := time.Now().Add(10 * time.Second)
	for served.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatal("no requests within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("returned %v after SIGINT", took)
		}
		if r.code != exitOK || !strings.Contains(r.out, "interrupted after") || !strings.Contains(r.out, "Status    200: ") {
			t.Errorf("exit %d stderr %q, report:\n%s", r.code, r.err, r.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGINT")
	}
}

func TestIsTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		w    io.Writer
	}{
		{"/dev/null, a character device", devNull},
		{"a regular file", file},
		{"a pipe", w},
		{"a buffer", &bytes.Buffer{}},
	} {
		if isTerminal(tc.w) {
			t.Errorf("isTerminal(%s) = true, want false", tc.name)
		}
	}
}

// "herd loadtest > /dev/null" in a terminal, or in a pipeline: /dev/null
// is no terminal, so no progress bar on the stderr that is a file.
func TestLoadtestCmdStdoutDevNull(t *testing.T) {
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {})
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code := cmdLoadtest(ctx, []string{url, "-n", "20", "-c", "2"}, devNull, stderr); code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	if b, err := os.ReadFile(stderr.Name()); err != nil || len(b) != 0 {
		t.Errorf("stderr %q (%v), want nothing", b, err)
	}
}

// The progress bar is drawn on stderr when stderr is a terminal, and the
// histogram is printed on stdout when stdout is one, each decided on its
// own stream.
func TestLoadtestCmdTerminalPerStream(t *testing.T) {
	url := loadtestServer(t, func(w http.ResponseWriter, r *http.Request) {})
	const bar, histogram = "\x1b[K", "Latency histogram" // the bar clears to the end of its line
	tests := []struct {
		name                 string
		stdoutTTY, stderrTTY bool
	}{
		{"neither", false, false},
		{"stdout only", true, false},
		{"stderr only", false, true},
		{"both", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			tty := func(w io.Writer) bool {
				return w == io.Writer(&stdout) && tt.stdoutTTY || w == io.Writer(&stderr) && tt.stderrTTY
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if code := loadtestWith(ctx, []string{url, "-n", "20", "-c", "2"}, &stdout, &stderr, tty); code != exitOK {
				t.Fatalf("exit %d, want 0; stderr %q", code, stderr.String())
			}
			if got := strings.Contains(stderr.String(), bar); got != tt.stderrTTY {
				t.Errorf("progress bar on stderr: %v, want %v; stderr %q", got, tt.stderrTTY, stderr.String())
			}
			if got := strings.Contains(stdout.String(), histogram); got != tt.stdoutTTY {
				t.Errorf("histogram on stdout: %v, want %v:\n%s", got, tt.stdoutTTY, stdout.String())
			}
			if strings.Contains(stdout.String(), bar) {
				t.Errorf("the progress bar went to stdout:\n%q", stdout.String())
			}
		})
	}
}

// clientTimeWait counts the IPv4 sockets of this network namespace in
// TIME_WAIT towards port: the client side of closed connections to it.
func clientTimeWait(t *testing.T, port string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("counting TIME_WAIT sockets: %v", err)
	}
	want, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" { // 06: TCP_TIME_WAIT
			continue
		}
		_, hexPort, _ := strings.Cut(f[2], ":")
		if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == want {
			n++
		}
	}
	return n
}

// The real binary against a real herd: a new connection per request, at
// -c 50 for seconds, fails nothing (earlier versions counted thousands of
// their own failed connects as the server's) and leaves no TIME_WAIT on
// the client side.
func TestLoadtestCmdNoKeepAliveAgainstHerd(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lt := exec.CommandContext(ctx, herdtest.Binary(t), "loadtest", p.URL+"/", "--no-keepalive", "-c", "50", "-d", "8s", "--json")
	lt.Env = herdtest.CleanEnv()
	var stderr bytes.Buffer
	lt.Stderr = &stderr
	out, err := lt.Output()
	var doc struct {
		Requests, Succeeded, Failed int64
		Errors                      map[string]int64
		Samples                     map[string]string `json:"error_samples"`
	}
	if jerr := json.Unmarshal(out, &doc); jerr != nil {
		t.Fatalf("herd loadtest (%v): not one JSON document: %v\nstdout %s\nstderr %s", err, jerr, out, stderr.String())
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.URL, "http://"))
	tw := clientTimeWait(t, port)
	t.Logf("%d requests, errors %v %v; %d client-side sockets in TIME_WAIT", doc.Requests, doc.Errors, doc.Samples, tw)
	if err != nil || doc.Failed != 0 || doc.Requests < 1000 {
		t.Errorf("herd loadtest --no-keepalive: %v, %d of %d requests failed (%v %v); want exit 0, at least 1000 requests, none failed\nstderr %s",
			err, doc.Failed, doc.Requests, doc.Errors, doc.Samples, stderr.String())
	}
	if tw > int(doc.Requests/1000)+2 {
		t.Errorf("%d client-side sockets in TIME_WAIT after %d connections: the client closed first", tw, doc.Requests)
	}
}
