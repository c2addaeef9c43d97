// Package redistest starts real redis-server processes for tests: one per
// call, on 127.0.0.1, with no persistence, killed when the test ends.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NotFoundMessage is how a test fails when redis-server is not on PATH.
// Tests of the Redis backend never skip.
const NotFoundMessage = "redis-server not found: install it with `apt-get install -y redis-server` (make test does this)"

// readyTimeout bounds the wait for a new server to answer PING.
const readyTimeout = 10 * time.Second

// Options choose how StartWith runs redis-server. The zero value is Start's.
type Options struct {
	// Port to listen on (on 127.0.0.1). 0 picks a free one.
	Port int
	// Password the server requires (requirepass); it appears in the URL.
	// Empty: none.
	Password string
}

// Start runs a redis-server from PATH on a free port of 127.0.0.1, waits
// until it answers PING and returns its URL (redis://127.0.0.1:PORT/0) and a
// function that kills it and waits for it to exit, so that its port is free
// again. stop is idempotent and also runs at t.Cleanup. Without
// redis-server on PATH the test fails (NotFoundMessage); it never skips.
func Start(t testing.TB) (url string, stop func()) {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options: a given port (to restart a server where
// a client expects it) or a password.
func StartWith(t testing.TB, opts Options) (url string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(NotFoundMessage)
	}
	attempts := 1
	if opts.Port == 0 {
		attempts = 5 // a free port may be taken between our check and redis's bind
	}
	var lastErr error
	for range attempts {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
		srv, err := start(t, bin, port, opts.Password)
		if err == nil {
			t.Cleanup(srv.stop)
			userinfo := ""
			if opts.Password != "" {
				userinfo = ":" + opts.Password + "@"
			}
			return fmt.Sprintf("redis://%s127.0.0.1:%d/0", userinfo, port), srv.stop
		}
		lastErr = err
	}
	t.Fatalf("redistest: %v", lastErr)
	return "", nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type server struct {
	cmd     *exec.Cmd
	exitedC chan struct{} // closed when the process has been waited for
	once    sync.Once
}

// stop kills the server by its pid and waits for it.
func (s *server) stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.exitedC
	})
}

// syncBuffer collects the server's output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func start(t testing.TB, bin string, port int, password string) (*server, error) {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
		"--daemonize", "no",
		"--logfile", "",
	}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &server{cmd: cmd, exitedC: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.exitedC)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.exitedC:
			return nil, fmt.Errorf("redis-server on port %d exited at start: %s", port, lastLines(out.String()))
		default:
		}
		if err := ping(addr); err == nil {
			return s, nil
		} else if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING within %v: %w; output: %s", port, readyTimeout, err, lastLines(out.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping asks addr for PING. A server that wants a password (NOAUTH) is up.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return errors.New("not ready: " + strings.TrimSpace(line))
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
