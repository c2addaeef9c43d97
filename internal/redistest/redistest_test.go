package redistest

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestStartAnswersAndStops(t *testing.T) {
	url, stop := Start(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("url %q: host %q, %v; want 127.0.0.1", url, host, err)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("PING %s: %v", addr, err)
	}
	stop()
	stop() // idempotent
	if err := ping(addr); err == nil {
		t.Fatalf("PING %s after stop succeeded", addr)
	}
}

func TestRestartOnSamePortWithPassword(t *testing.T) {
	url, stop := StartWith(t, Options{Password: "s3cret"})
	if !strings.HasPrefix(url, "redis://:s3cret@127.0.0.1:") {
		t.Fatalf("url = %q, want the password in it", url)
	}
	addr := strings.TrimSuffix(url[strings.LastIndex(url, "@")+1:], "/0")
	_, portStr, _ := net.SplitHostPort(addr)
	stop()
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	url2, _ := StartWith(t, Options{Port: port})
	if want := "redis://" + addr + "/0"; url2 != want {
		t.Fatalf("restart url = %q, want %q", url2, want)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

// fatalRecorder is a testing.TB whose Fatal and Skip record and stop the
// goroutine, as the real ones do.
type fatalRecorder struct {
	testing.TB
	fatal, skip string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *fatalRecorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }
func (r *fatalRecorder) Skip(args ...any) {
	r.skip = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *fatalRecorder) SkipNow()                         { r.Skip("SkipNow") }
func (r *fatalRecorder) Skipf(format string, args ...any) { r.Skip(fmt.Sprintf(format, args...)) }

func TestMissingBinaryFailsNeverSkips(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(r)
	}()
	<-done
	if r.skip != "" {
		t.Fatalf("Start skipped (%q); it must fail", r.skip)
	}
	if r.fatal != NotFoundMessage {
		t.Fatalf("Start failed with %q, want %q", r.fatal, NotFoundMessage)
	}
}
