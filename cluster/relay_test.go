package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

// net/http's accept error, as it floods a worker out of descriptors: one
// line each time it retries, with its own time and delay.
func TestRepeatedWorkerLinesAreRateLimitedWithACount(t *testing.T) {
	var in bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&in, "2026/12/01 20:%02d:%02d http: Accept error: accept4: too many open files; retrying in %dms\n", i/60%60, i%60, 5*(1+i%200))
	}
	for range 3 {
		in.WriteString(`{"time":"x","level":"WARN","msg":"store unreachable","err":"dial tcp: refused"}` + "\n")
	}
	in.WriteString(`{"time":"x","level":"INFO","msg":"drain done"}` + "\n")
	var out bytes.Buffer
	relayLogs(slog.New(slog.NewTextHandler(&out, nil)), 1, 42, io.NopCloser(&in))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("relayed %d lines, want 5 (the accept error, its count, the store line, its count, the drain):\n%s", len(lines), out.String())
	}
	for i, want := range []string{
		"accept4: too many open files",
		"repeated=499",
		"store unreachable",
		"repeated=2",
		"drain done",
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s\nwant it to contain %q", i+1, lines[i], want)
		}
	}
	if !strings.Contains(lines[1], `msg="worker log line repeated"`) || !strings.Contains(lines[1], "worker=1 pid=42") {
		t.Errorf("the count line does not say what it counts, for which worker: %s", lines[1])
	}
}

// Different lines are never merged, and a long run is summarised while it
// lasts, not only when it ends.
func TestRepeatsSummariseALongRunPeriodically(t *testing.T) {
	var out bytes.Buffer
	clock := int64(0)
	r := repeats{log: slog.New(slog.NewTextHandler(&out, nil)), id: 1, pid: 2, now: func() time.Time { return time.Unix(clock, 0) }}
	if r.seen("a", slog.LevelWarn, "a") || r.seen("b", slog.LevelWarn, "b") {
		t.Fatal("a line different from the one before was counted as a repeat")
	}
	for i := range 20 {
		clock = int64(i)
		if !r.seen("b", slog.LevelWarn, "b") {
			t.Fatal("a repeat was relayed")
		}
	}
	if n := strings.Count(out.String(), "worker log line repeated"); n < 3 {
		t.Errorf("a run of 20 s was summarised %d times, want one every %v:\n%s", n, repeatEvery, out.String())
	}
	// The same line again after a quiet spell is relayed, not counted.
	clock += int64(2 * repeatEvery / time.Second)
	if r.seen("b", slog.LevelWarn, "b") {
		t.Error("a line that came back after a quiet spell was counted as a repeat")
	}
}

// The primary says at start how many descriptors each worker may open, and
// warns when that is too few for a server. (A test of the logging itself.)
func TestDescriptorLimitIsLoggedAndALowOneWarned(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	logFDLimit(slog.New(slog.NewTextHandler(&out, nil)))
	if !strings.Contains(out.String(), fmt.Sprintf("limit=%d", rl.Cur)) {
		t.Errorf("the log does not give this process's limit %d: %s", rl.Cur, out.String())
	}
	for _, c := range []struct {
		n    uint64
		warn bool
	}{{1024, true}, {LowFDLimit - 1, true}, {LowFDLimit, false}, {1 << 20, false}} {
		out.Reset()
		logFDLimitValue(slog.New(slog.NewTextHandler(&out, nil)), c.n)
		if got := strings.Contains(out.String(), "level=WARN"); got != c.warn {
			t.Errorf("limit %d: warned=%v, want %v: %s", c.n, got, c.warn, out.String())
		}
	}
}
