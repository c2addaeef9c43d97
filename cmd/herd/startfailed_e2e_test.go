package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
)

// A real program whose every worker fails at start exits with
// cluster.ExitStartFailed (3), promptly, once, leaving no worker behind.
//
// herd serve itself has no such failure left to reach: its workers take
// the configuration the primary already checked (over IPC), the store is
// the primary's or a Redis the primary checked, and nothing else is opened
// per worker. So the test builds examples/hello, a library user's program,
// and points its documented HELLO_GREETING_FILE, which each worker reads
// at start, at a file that does not exist.
func TestProgramWhoseWorkersCannotStartExits3(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, "github.com/herd-go/herd/examples/hello")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/hello: %v\n%s", err, out)
	}
	missing := filepath.Join(dir, "no-such-greeting")
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(herdtest.CleanEnv(), "HELLO_ADDR=127.0.0.1:0", "HELLO_GREETING_FILE="+missing, "GOMAXPROCS=2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitC := make(chan error, 1)
	go func() { waitC <- cmd.Wait() }()
	var err error
	select {
	case err = <-waitC:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-waitC //nolint:errcheck // killed on purpose: its exit status is that
		t.Fatalf("still running after 30 s: it restarts its failing workers instead of stopping\n%s", out.String())
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cluster.ExitStartFailed {
		t.Fatalf("exit: %v, want exit code %d (ExitStartFailed)\n%s", err, cluster.ExitStartFailed, out.String())
	}
	log := out.String()
	if n := strings.Count(log, "workers failed at start; the primary is stopping"); n != 1 {
		t.Errorf("%d lines saying the workers failed at start, want exactly 1\n%s", n, log)
	}
	if !strings.Contains(log, "HELLO_GREETING_FILE: open "+missing+": no such file or directory") {
		t.Errorf("the log does not say why the workers could not start (the missing greeting file)\n%s", log)
	}
	// No endless restart: each of the 2 slots started a few times at most.
	pids := regexp.MustCompile(`msg="?worker started"? worker=\d+ pid=(\d+)|INFO worker started worker=\d+ pid=(\d+)`).FindAllStringSubmatch(log, -1)
	if len(pids) < 2 || len(pids) > 6 {
		t.Errorf("%d workers started, want 2 to 6 (one per slot, a backoff retry or two)\n%s", len(pids), log)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1] + m[2])
		if herdtest.Alive(pid) {
			t.Errorf("worker pid %d still alive after the program exited", pid)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("the greeting file exists; the test needs it missing")
	}
	t.Logf("chaos: every worker fails at start (examples/hello, HELLO_GREETING_FILE missing): exit code 3 after %v, %d worker starts, 1 \"workers failed at start\" line, no worker left", took.Round(time.Millisecond), len(pids))
}
