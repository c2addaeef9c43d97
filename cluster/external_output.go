package cluster

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// maxLine is the longest line relayed whole; a longer one (or output that
// never ends a line) is relayed in pieces of this size, so that a program's
// output costs the primary bounded memory.
const maxLine = 64 << 10

// tailLines is how many of a program's last stderr lines a failed start
// reports, each cut to tailLineMax bytes.
const (
	tailLines   = 10
	tailLineMax = 512
)

// relayOutput re-emits each line r carries as one "worker output" record
// with the worker's id and pid and the stream's name, so that lines of
// different workers never mix mid-line. Lines go to tail too, if not nil.
func relayOutput(log *slog.Logger, id, pid int, stream string, r io.ReadCloser, tail *tail) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			line := strings.TrimRight(string(b), "\r\n")
			log.Info("worker output", "worker", id, "pid", pid, "stream", stream, "line", line)
			if tail != nil {
				tail.add(line)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tail keeps the last lines written to it. Safe for concurrent use.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTail(n int) *tail { return &tail{max: n} }

func (t *tail) add(line string) {
	if len(line) > tailLineMax {
		line = line[:tailLineMax] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// String returns the lines kept, joined by newlines.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
