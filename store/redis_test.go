package store_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/redistest"
	"github.com/herd-go/herd/store"
)

func urlPort(t *testing.T, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitUntil polls cond every 20ms until it is true or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: %v", within, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkUnavailable runs every operation and wants each to fail quickly with
// ErrUnavailable and without secret in its text.
func checkUnavailable(t *testing.T, s store.Store, secret string) {
	t.Helper()
	ctx := context.Background()
	ops := []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "cluster:k"); return err }},
		{"Set", func() error { return s.Set(ctx, "cluster:k", []byte("v"), 0) }},
		{"Delete", func() error { return s.Delete(ctx, "cluster:k") }},
		{"Incr", func() error { _, err := s.Incr(ctx, "cluster:n"); return err }},
		{"Keys", func() error { _, err := s.Keys(ctx, "cluster:"); return err }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.do()
		took := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis down = %v, want ErrUnavailable", op.name, err)
		}
		if took > 3*time.Second {
			t.Errorf("%s with Redis down took %v, want a quick failure", op.name, took)
		}
		if secret != "" && err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s error %q holds the password", op.name, err)
		}
	}
}

func TestRedisDownThenBack(t *testing.T) {
	const password = "pw-Sup3rSecret"
	u, stop := redistest.StartWith(t, redistest.Options{Password: password})
	s, err := store.NewRedis(u, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Set(ctx, "cluster:k", []byte("before"), 0); err != nil {
		t.Fatal(err)
	}

	stop()
	checkUnavailable(t, s, password)

	// A new server on the same port: the client reconnects by itself.
	redistest.StartWith(t, redistest.Options{Port: urlPort(t, u), Password: password})
	waitUntil(t, 10*time.Second, "Set after Redis came back", func() error {
		return s.Set(ctx, "cluster:k", []byte("after"), 0)
	})
	if got, err := s.Get(ctx, "cluster:k"); err != nil || string(got) != "after" {
		t.Fatalf("Get after recovery = %q, %v", got, err)
	}
	if n, err := s.Incr(ctx, "cluster:n"); err != nil || n != 1 {
		t.Fatalf("Incr after recovery = %d, %v", n, err)
	}
}

func TestRedisDownAtStart(t *testing.T) {
	port := freePort(t)
	s, err := store.NewRedis("redis://127.0.0.1:"+strconv.Itoa(port)+"/0", store.RedisOptions{})
	if err != nil {
		t.Fatalf("NewRedis with Redis down = %v, want no error (connect lazily)", err)
	}
	defer s.Close()
	checkUnavailable(t, s, "")
	redistest.StartWith(t, redistest.Options{Port: port})
	waitUntil(t, 10*time.Second, "Incr once Redis is up", func() error {
		_, err := s.Incr(context.Background(), "cluster:n")
		return err
	})
}

// TestRedisHungServer: a server that accepts connections and never answers
// must not hang a request.
func TestRedisHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	s, err := store.NewRedis("redis://"+l.Addr().String(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = s.Get(context.Background(), "cluster:k")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get from a hung server = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > store.DefaultRedisTimeout+time.Second {
		t.Fatalf("Get from a hung server took %v, want at most about %v", took, store.DefaultRedisTimeout)
	}
}

func TestRedisWrongPassword(t *testing.T) {
	u, _ := redistest.StartWith(t, redistest.Options{Password: "right-one"})
	wrong := strings.Replace(u, "right-one", "wr0ng-Passw0rd", 1)
	s, err := store.NewRedis(wrong, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkUnavailable(t, s, "wr0ng-Passw0rd")
}

func TestRedisCallerContextIsNotUnavailable(t *testing.T) {
	u, _ := redistest.Start(t)
	s, err := store.NewRedis(u, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Get(ctx, "k")
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get with a canceled context = %v, want context.Canceled only", err)
	}
	if s.Backend() != "redis" {
		t.Fatalf("Backend() = %q", s.Backend())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}

func TestNewRedisBadURL(t *testing.T) {
	for _, raw := range []string{
		"",
		"http://127.0.0.1:6379",
		"redis://127.0.0.1:6379/notadb",
		"redis://127.0.0.1:6379/0?bogus_option=1",
		"redis://:hunter2@127.0.0.1:6379/0?dial_timeout=soon",
		"redis://:hun/ter2@127.0.0.1:6379/0",
		"redis://user:hunter2@[::1/0",
		"redis://user:hunter2@127.0.0.1:port/0",
	} {
		s, err := store.NewRedis(raw, store.RedisOptions{})
		if err == nil {
			s.Close()
			t.Errorf("NewRedis(%q) = nil error, want one", raw)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "store: ") {
			t.Errorf("NewRedis(%q) error %q lacks the store: prefix", raw, msg)
		}
		for _, secret := range []string{"hunter2", "hun/ter2", "ter2"} {
			if strings.Contains(msg, secret) {
				t.Errorf("NewRedis(%q) error %q holds the password", raw, msg)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:hunter2@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"redis://alice:hunter2@redis.internal:6379", "redis://alice:xxxxx@redis.internal:6379"},
		{"rediss://alice:p%40ss@host:6380/1", "rediss://alice:xxxxx@host:6380/1"},
		{"redis://alice@host", "redis://alice@host"},
		{"redis://:p@ss@host:6379", "redis://:xxxxx@host:6379"},
		{"redis://:hun/ter2@host:6379/0", "redis://xxxxx@host:6379/0"},
		{"redis://user:hunter2@[::1/0", "redis://xxxxx@[::1/0"},
		{"user:hunter2@host:6379", "xxxxx@host:6379"},
		{"unix://:hunter2@/run/redis.sock?db=1", "unix://:xxxxx@/run/redis.sock?db=1"},
		{"not a url at all", "not a url at all"},
	} {
		got := store.RedactURL(c.in)
		if got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "hunter2") || strings.Contains(got, "ter2") || strings.Contains(got, "p@ss") {
			t.Errorf("RedactURL(%q) = %q still holds the password", c.in, got)
		}
	}
}
