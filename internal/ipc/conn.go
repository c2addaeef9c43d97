package ipc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by calls on a Conn that has been closed or whose peer
// has gone away.
var ErrClosed = errors.New("ipc: connection closed")

// ErrNotSent is wrapped by Call's error when the request was certainly
// never written whole to the peer (the connection was already closed, or
// the write failed and closed it): the peer cannot have acted on it.
var ErrNotSent = errors.New("ipc: request not sent")

// RemoteError is the error a peer's request handler returned, as text.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Handler receives what the peer sends. HandleRequest runs in its own
// goroutine per request, so it may block; its result is JSON-encoded as the
// reply, and a non-nil error travels back as a RemoteError. A request
// carrying Data (Conn.CallData) goes to a DataHandler's HandleDataRequest;
// a Handler that is not one refuses it rather than drop the bytes.
// HandleNotify runs on the reading goroutine, in arrival order, and must
// not block.
type Handler interface {
	HandleRequest(ctx context.Context, method string, body []byte) (any, error)
	HandleNotify(method string, body []byte)
}

// DataHandler is a Handler that also answers requests carrying Data (see
// Conn.CallData). HandleDataRequest gets every request that came with
// Data, as HandleRequest gets the others, in its own goroutine; data
// aliases nothing and may be kept. The reply is encoded as JSON, and
// replyData (nil for none) travels beside it as bytes.
type DataHandler interface {
	Handler
	HandleDataRequest(ctx context.Context, method string, body, data []byte) (reply any, replyData []byte, err error)
}

// WriteTimeout bounds one write so that a stopped peer (SIGSTOP) with a full
// socket buffer cannot block the writer forever.
const WriteTimeout = 5 * time.Second

// Conn is one end of an IPC channel. It is safe for concurrent use: any
// number of goroutines may Call and Notify at once. The Conn owns c and
// closes it.
type Conn struct {
	c       net.Conn
	handler Handler

	wmu  sync.Mutex // guards w and wbuf, and orders frames on the wire
	w    *bufio.Writer
	wbuf []byte

	mu      sync.Mutex // guards pending and err
	pending map[uint64]chan Message
	err     error

	nextID    atomic.Uint64
	closeOnce sync.Once
	doneC     chan struct{} // closed when the read loop has ended
	ctx       context.Context
	cancel    context.CancelFunc
}

// NewConn wraps c. Call Serve to start reading; until then replies to Call
// are not received.
func NewConn(c net.Conn, h Handler) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		c:       c,
		handler: h,
		w:       bufio.NewWriterSize(c, 64<<10),
		pending: make(map[uint64]chan Message),
		doneC:   make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
}

// Serve reads frames until the peer closes the connection or a frame is
// malformed, dispatching them to the Handler and to waiting callers. It
// returns nil on a clean EOF. When it returns, every pending Call fails with
// ErrClosed and Done is closed. Serve must be called once.
func (c *Conn) Serve() error {
	err := c.readLoop()
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	c.cancel()
	c.c.Close()
	close(c.doneC)
	return err
}

func (c *Conn) readLoop() error {
	r := bufio.NewReaderSize(c.c, 64<<10)
	var buf []byte
	for {
		m, b, err := ReadFrame(r, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		switch m.Kind {
		case KindNotify:
			c.handler.HandleNotify(m.Method, m.Body)
			buf = b // the handler does not keep Body
		case KindReply:
			if m.Data != nil {
				m, _ = Decode(append([]byte(nil), b...)) // Body and Data in one copy
			} else {
				m.Body = append([]byte(nil), m.Body...)
			}
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			buf = b
		case KindRequest:
			// One copy for both: buf is reused for the next frame.
			all := append([]byte(nil), b...)
			rm, _ := Decode(all) // decoded once already
			go c.serveRequest(rm)
			buf = b
		}
	}
}

func (c *Conn) serveRequest(m Message) {
	id, method := m.ID, m.Method
	var (
		res      any
		err      error
		respData []byte
	)
	dh, ok := c.handler.(DataHandler)
	switch {
	case m.Data == nil:
		res, err = c.handler.HandleRequest(c.ctx, method, m.Body)
	case ok:
		res, respData, err = dh.HandleDataRequest(c.ctx, method, m.Body, m.Data)
	default:
		// Answering without the bytes would lose them (a value stored as
		// empty): refuse.
		err = fmt.Errorf("ipc: %s carries data and this peer takes none", method)
	}
	reply := Message{Kind: KindReply, ID: id, Data: respData}
	if err != nil {
		reply.Data = nil
		reply.Err = err.Error()
		if reply.Err == "" {
			reply.Err = "ipc: handler failed"
		}
	} else if res != nil {
		b, jerr := json.Marshal(res)
		if jerr != nil {
			reply.Err = fmt.Sprintf("ipc: encoding the reply to %s: %v", method, jerr)
		} else {
			reply.Body = b
		}
	}
	_ = c.send(reply) // the peer may be gone; its Call then fails on its side
}

// Call sends a request and waits for its reply, decoding the reply's body
// into resp (which may be nil). It returns a *RemoteError when the peer's
// handler failed, ErrClosed when the connection ends first, or ctx.Err().
// An error wrapping ErrNotSent (and ErrClosed, when closed) means the
// request never reached the peer; after any other failure the peer may
// have received it and may act on it.
func (c *Conn) Call(ctx context.Context, method string, req, resp any) error {
	_, err := c.call(ctx, method, req, nil, resp)
	return err
}

// CallData is Call with a byte payload: data (which must not be nil; an
// empty slice is an empty payload) travels beside the JSON-encoded req as
// it is, to the peer's DataHandler, and the reply's own bytes are returned
// (nil when the reply carried none). Errors as Call's.
func (c *Conn) CallData(ctx context.Context, method string, req any, data []byte, resp any) ([]byte, error) {
	if data == nil {
		data = []byte{}
	}
	return c.call(ctx, method, req, data, resp)
}

func (c *Conn) call(ctx context.Context, method string, req any, data []byte, resp any) ([]byte, error) {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return nil, fmt.Errorf("ipc: encoding %s request: %w", method, err)
		}
	}
	id := c.nextID.Add(1)
	ch := make(chan Message, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.send(Message{Kind: KindRequest, ID: id, Method: method, Body: body, Data: data}); err != nil {
		// A frame cut short by a failed write closes the connection: the
		// peer never reads it whole, so never acts on it.
		c.forget(id)
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if m.Err != "" {
			return nil, &RemoteError{Msg: m.Err}
		}
		if resp != nil && len(m.Body) > 0 {
			if err := json.Unmarshal(m.Body, resp); err != nil {
				return nil, fmt.Errorf("ipc: decoding %s reply: %w", method, err)
			}
		}
		return m.Data, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// Notify sends a one-way message with body JSON-encoded (nil for none).
func (c *Conn) Notify(method string, body any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("ipc: encoding %s: %w", method, err)
		}
	}
	return c.send(Message{Kind: KindNotify, Method: method, Body: b})
}

func (c *Conn) send(m Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.wbuf, err = AppendFrame(c.wbuf[:0], m)
	if err != nil {
		return err
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(WriteTimeout))
	if _, err = c.w.Write(c.wbuf); err == nil {
		err = c.w.Flush()
	}
	if err != nil {
		c.w.Reset(c.c) // drop the partial frame; the connection is unusable now
		c.Close()
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// Close closes the connection. Pending and later Calls fail with ErrClosed.
// It is safe to call more than once and concurrently.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.c.Close() })
	return nil
}

// Done is closed when Serve has returned: the peer is gone or Close was called.
func (c *Conn) Done() <-chan struct{} { return c.doneC }
