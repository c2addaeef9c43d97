package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/store"
)

func TestBoltReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := context.Background()
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "cluster:a", []byte("A"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "cluster:ttl", []byte("T"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "cluster:gone", []byte("G"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Incr(ctx, "cluster:counter"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if _, err := s.Get(ctx, "cluster:a"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}

	s, err = store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.Keys(ctx, "cluster:")
	if err != nil {
		t.Fatal(err)
	}
	if want := "[cluster:a cluster:counter cluster:ttl]"; fmt.Sprint(keys) != want {
		t.Fatalf("Keys after reopen = %v, want %s (the 1ms TTL key expired)", keys, want)
	}
	if n, err := s.Incr(ctx, "cluster:counter"); err != nil || n != 4 {
		t.Fatalf("Incr after reopen = %d, %v; want 4", n, err)
	}
	if s.Backend() != "embedded (bbolt)" {
		t.Fatalf("Backend() = %q", s.Backend())
	}
}

func TestOpenBoltErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "plainfile")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, path, want string }{
		{"empty path", "", "empty"},
		{"missing directory", filepath.Join(dir, "nope", "state.db"), "does not exist"},
		{"parent is a file", filepath.Join(notDir, "state.db"), "not a directory"},
		{"path is a directory", dir, "is a directory"},
		{"not a bbolt file", garbage, "invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := store.OpenBolt(c.path, store.BoltOptions{})
			if err == nil {
				s.Close()
				t.Fatalf("OpenBolt(%q) = nil error", c.path)
			}
			if !strings.HasPrefix(err.Error(), "store: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("OpenBolt(%q) = %q, want a store: error saying %q", c.path, err, c.want)
			}
		})
	}
}

func TestOpenBoltLockedFailsQuickly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	s2, err := store.OpenBolt(path, store.BoltOptions{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBolt of a locked file = nil error")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second OpenBolt = %q, want it to say the file is locked", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("second OpenBolt took %v", took)
	}
	// Released at Close: the next opener succeeds.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatalf("OpenBolt after the first closed: %v", err)
	}
	s3.Close()
}

// The durability test: a child process writes to a state file and prints
// each acknowledged write; the parent SIGKILLs it mid-stream, reopens the
// file and finds every acknowledged write.

const helperEnv = "HERD_STORE_TEST_WRITER" // the state file the helper writes to

// TestHelperWriter is the child: not a test on its own (it returns at once
// without helperEnv).
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ack := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // the line leaves the process only after the write is durable
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("cluster:w%02d:%06d", w, i)
				if err := s.Set(ctx, key, durableValue(key), 0); err != nil {
					ack("error %v", err)
					os.Exit(3)
				}
				ack("set %s", key)
				if i%4 == 0 {
					n, err := s.Incr(ctx, "cluster:counter")
					if err != nil {
						ack("error %v", err)
						os.Exit(3)
					}
					ack("incr %d", n)
				}
			}
		}()
	}
	wg.Wait() // never: the parent kills us
}

func durableValue(key string) []byte {
	return []byte(strings.Repeat(key+";", 8))
}

func TestBoltDurableAcrossSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	var keys []string
	var maxIncr int64
	const killAfter = 400 // acknowledged sets
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "set "):
			keys = append(keys, strings.TrimPrefix(line, "set "))
		case strings.HasPrefix(line, "incr "):
			n, err := strconv.ParseInt(strings.TrimPrefix(line, "incr "), 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			maxIncr = max(maxIncr, n)
		case strings.HasPrefix(line, "error "):
			t.Fatalf("child: %s", line)
		default:
			// the test framework's own lines
		}
		if len(keys) == killAfter && !killed {
			// Mid-stream: writes are in flight right now.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// Lines the child printed before it died are acknowledgements too.
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before %d writes: %v; stderr: %s", killAfter, err, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}

	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, k := range keys {
		got, err := s.Get(ctx, k)
		if err != nil || string(got) != string(durableValue(k)) {
			t.Fatalf("acknowledged key %s after SIGKILL: %q, %v", k, got, err)
		}
	}
	got, err := s.Get(ctx, "cluster:counter")
	if err != nil {
		t.Fatalf("counter after SIGKILL: %v", err)
	}
	if n, _ := strconv.ParseInt(string(got), 10, 64); n < maxIncr {
		t.Fatalf("counter after SIGKILL = %d, want at least the %d acknowledged", n, maxIncr)
	}
	t.Logf("%d acknowledged sets and a counter at %d all present after SIGKILL", len(keys), maxIncr)
}
