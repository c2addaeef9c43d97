package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// Output without newlines is relayed in bounded pieces; lines from the
// stream come out one record each, whole; the tail keeps the last lines.
func TestRelayOutputSplitsLongLinesAndKeepsATail(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tl := newTail(3)
	done := make(chan struct{})
	go func() { relayOutput(log, 7, 1234, "stderr", r, tl); close(done) }()
	long := strings.Repeat("x", 3*maxLine+10) // no newline for 192 KiB
	if _, err := w.WriteString(long + "\nline one\nline two\r\nline three\nlast without newline"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-done
	var pieces []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		if rec["msg"] != "worker output" || rec["worker"] != float64(7) || rec["pid"] != float64(1234) || rec["stream"] != "stderr" {
			t.Errorf("record %v: want worker output with worker 7, pid 1234, stream stderr", rec)
		}
		pieces = append(pieces, rec["line"].(string))
	}
	if len(pieces) != 8 {
		t.Fatalf("%d records, want 4 pieces of the long line and 4 lines", len(pieces))
	}
	if got := strings.Join(pieces[:4], ""); got != long {
		t.Errorf("the long line's pieces do not add up to it (%d bytes, want %d)", len(got), len(long))
	}
	for i, p := range pieces[:3] {
		if len(p) != maxLine {
			t.Errorf("piece %d is %d bytes, want %d", i, len(p), maxLine)
		}
	}
	if want := []string{"line one", "line two", "line three", "last without newline"}; strings.Join(pieces[4:], "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", pieces[4:], want)
	}
	if got := tl.String(); got != "line two\nline three\nlast without newline" {
		t.Errorf("tail %q, want the last three lines", got)
	}
}

func TestExecArgsPlaceholdersAndCheck(t *testing.T) {
	x := Exec{Path: "/bin/prog", Args: []string{"prog{fd}", "--fd", "{fd}", "--listen=:{port}"}}
	got := x.args("8080")
	if want := []string{"prog{fd}", "--fd", "3", "--listen=:8080"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("args = %q, want %q (argv[0] untouched)", got, want)
	}
	for _, bad := range []Exec{{}, {Path: "/bin/prog"}, {Path: "/bin/prog", Args: []string{"prog"}, ReadyProbe: "tcp:80"}} {
		if err := bad.check(); err == nil {
			t.Errorf("check(%+v) = nil, want an error", bad)
		}
	}
	for _, probe := range []string{"", "notify", "tcp", "http:/healthz"} {
		if err := (Exec{Path: "/bin/prog", Args: []string{"prog"}, ReadyProbe: probe}).check(); err != nil {
			t.Errorf("check with ReadyProbe %q: %v", probe, err)
		}
	}
}
