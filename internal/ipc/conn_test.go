package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// echo answers "echo" with its body, "fail" with an error, "slow" after
// its context ends or a second, and records notifications.
type echo struct {
	mu       sync.Mutex
	notified []string
}

func (e *echo) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	switch method {
	case "echo":
		return json.RawMessage(body), nil
	case "fail":
		return nil, errors.New("store: it failed")
	case "slow":
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown %s", method)
}

func (e *echo) HandleNotify(method string, body []byte) {
	e.mu.Lock()
	e.notified = append(e.notified, method+string(body))
	e.mu.Unlock()
}

// pair returns two connected Conns over a real socketpair, served.
func pair(t testing.TB, ha, hb Handler) (*Conn, *Conn) {
	t.Helper()
	ca, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	cb, err := FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewConn(ca, ha), NewConn(cb, hb)
	go a.Serve() //nolint:errcheck // ends with the connection when the test closes it
	go b.Serve() //nolint:errcheck // ends with the connection when the test closes it
	t.Cleanup(func() { a.Close(); b.Close(); <-a.Done(); <-b.Done() })
	return a, b
}

func TestCallReply(t *testing.T) {
	a, _ := pair(t, &echo{}, &echo{})
	var got map[string]int
	if err := a.Call(context.Background(), "echo", map[string]int{"n": 7}, &got); err != nil {
		t.Fatal(err)
	}
	if got["n"] != 7 {
		t.Errorf("echo: got %v, want n=7", got)
	}
	err := a.Call(context.Background(), "fail", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "store: it failed" {
		t.Errorf("fail: got %v, want RemoteError with the handler's text", err)
	}
}

func TestConcurrentCallsGetTheirOwnReplies(t *testing.T) {
	a, _ := pair(t, &echo{}, &echo{})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got int
			if err := a.Call(context.Background(), "echo", i, &got); err != nil {
				errs <- err
			} else if got != i {
				errs <- fmt.Errorf("call %d got reply %d", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNotifyInOrder(t *testing.T) {
	h := &echo{}
	a, _ := pair(t, &echo{}, h)
	for i := range 50 {
		if err := a.Notify("n", i); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.notified)
		got := append([]string(nil), h.notified...)
		h.mu.Unlock()
		if n == 50 {
			for i, s := range got {
				if want := fmt.Sprintf("n%d", i); s != want {
					t.Fatalf("notification %d = %q, want %q", i, s, want)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of 50 notifications", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPeerGoneFailsPendingCalls(t *testing.T) {
	a, b := pair(t, &echo{}, &echo{})
	errC := make(chan error, 1)
	go func() { errC <- a.Call(context.Background(), "slow", nil, nil) }()
	time.Sleep(50 * time.Millisecond) // let the request leave; the outcome is the same either way
	b.Close()
	select {
	case err := <-errC:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("pending call after peer closed: got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call did not fail after the peer closed")
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the peer closed")
	}
	if err := a.Call(context.Background(), "echo", 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after close: got %v, want ErrClosed", err)
	}
}

func TestCallHonoursContext(t *testing.T) {
	a, _ := pair(t, &echo{}, &echo{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Call(ctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want DeadlineExceeded", err)
	}
}

func TestGarbageFromPeerEndsServeWithError(t *testing.T) {
	ca, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := NewConn(ca, &echo{})
	errC := make(chan error, 1)
	go func() { errC <- c.Serve() }()
	_, _ = raw.Write([]byte{0, 0, 0, 20, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7})
	select {
	case err := <-errC:
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Serve returned %v, want ErrMalformed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept reading after a malformed frame")
	}
}

func BenchmarkCallRoundTrip(b *testing.B) {
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", par), func(b *testing.B) {
			a, _ := pair(b, &echo{}, &echo{})
			body := map[string]string{"key": "cluster:bench"}
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var out map[string]string
				for pb.Next() {
					if err := a.Call(context.Background(), "echo", body, &out); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkFrameEncodeDecode(b *testing.B) {
	m := Message{Kind: KindRequest, ID: 99, Method: "store.get", Body: []byte(`{"key":"cluster:counter"}`)}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], m)
		if _, err := Decode(buf[4:]); err != nil {
			b.Fatal(err)
		}
	}
}

// holder answers "hold" only when released, and says when a request
// arrived.
type holder struct {
	echo
	got chan struct{}
}

func (h *holder) HandleRequest(ctx context.Context, method string, body []byte) (any, error) {
	if method != "hold" {
		return h.echo.HandleRequest(ctx, method, body)
	}
	h.got <- struct{}{}
	<-ctx.Done()
	return nil, nil
}

// A call the peer received and never answered has an unknown outcome: not
// ErrNotSent. A call on a closed connection, or whose write fails, was
// never sent: ErrNotSent.
func TestCallSaysWhetherTheRequestWasSent(t *testing.T) {
	h := &holder{got: make(chan struct{}, 1)}
	a, b := pair(t, &echo{}, h)
	errC := make(chan error, 1)
	go func() { errC <- a.Call(context.Background(), "hold", nil, nil) }()
	select {
	case <-h.got:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer never received the request")
	}
	b.Close()
	if err := <-errC; !errors.Is(err, ErrClosed) || errors.Is(err, ErrNotSent) {
		t.Errorf("call received by the peer, which then closed: got %v, want ErrClosed and not ErrNotSent", err)
	}
	<-a.Done()
	if err := a.Call(context.Background(), "echo", 1, nil); !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrClosed) {
		t.Errorf("call after the connection closed: got %v, want ErrNotSent and ErrClosed", err)
	}

	// The peer is gone and this side has not read the EOF yet (no Serve):
	// the write itself fails.
	ca, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := NewConn(ca, &echo{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Call(ctx, "echo", 1, nil); !errors.Is(err, ErrNotSent) {
		t.Errorf("call whose write failed: got %v, want ErrNotSent", err)
	}
}
