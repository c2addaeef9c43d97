package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/herd-go/herd/internal/ipc"
)

// The IPC methods Serve answers and the remote store calls.
const (
	MethodGet     = "store.get"
	MethodSet     = "store.set"
	MethodDelete  = "store.delete"
	MethodIncr    = "store.incr"
	MethodKeys    = "store.keys"
	MethodBackend = "store.backend"
	MethodApply   = "store.apply"
)

// ErrNotSent may be wrapped by a Caller's error to say that the request
// certainly never reached the primary, so a write failing with it was not
// made. The ipc package's own ErrNotSent, which cluster.Worker.Call's
// error wraps, counts the same. Without it (and without an *ipc.RemoteError, the primary's own
// refusal) a failed write's outcome is unknown: see ErrOutcomeUnknown.
var ErrNotSent = errors.New("store: request not sent")

// ErrUnknownMethod is wrapped by the error Serve's handler returns for a
// method it does not answer.
var ErrUnknownMethod = errors.New("store: unknown method")

// Requests and replies on the wire. Values are []byte, which encoding/json
// writes as base64. A store error travels inside the reply (wireError), so
// that ErrNotFound, ErrNotInteger and ErrUnavailable survive the trip; the
// handler's error return is kept for requests it cannot read.
type (
	keyRequest struct {
		Key string `json:"key"`
	}
	setRequest struct {
		Key   string `json:"key"`
		Value []byte `json:"value,omitempty"`
		TTLNs int64  `json:"ttlNs,omitempty"`
	}
	keysRequest struct {
		Prefix string `json:"prefix"`
	}
	applyRequest struct {
		ID    string `json:"id,omitempty"`
		Op    Op     `json:"op"`
		Key   string `json:"key"`
		Value []byte `json:"value,omitempty"`
		TTLNs int64  `json:"ttlNs,omitempty"`
	}

	wireError struct {
		Code  string `json:"code,omitempty"`  // one of the code* constants; empty: no error
		Error string `json:"error,omitempty"` // the primary's error text
	}
	getReply struct {
		wireError
		Found bool   `json:"found"`
		Value []byte `json:"value,omitempty"`
	}
	setReply struct {
		wireError
	}
	deleteReply struct {
		wireError
		Found bool `json:"found"`
	}
	incrReply struct {
		wireError
		Value int64 `json:"value"`
	}
	keysReply struct {
		wireError
		Keys []string `json:"keys"`
	}
	applyReply struct {
		wireError
		N        int64 `json:"n,omitempty"`
		NotFound bool  `json:"notFound,omitempty"`
		Replayed bool  `json:"replayed,omitempty"`
	}
	backendReply struct {
		Backend string `json:"backend"`
	}
)

const (
	codeFailed      = "failed"      // any other error
	codeUnavailable = "unavailable" // ErrUnavailable, or the primary is stopping
	codeClosed      = "closed"      // ErrClosed
	codeNotInteger  = "not_integer" // ErrNotInteger
	codeInvalid     = "invalid"     // a bad key or ttl
	codeNoSpace     = "no_space"    // ErrNoSpace
	codeConflict    = "conflict"    // ErrIdempotencyConflict
)

func toWire(err error) wireError {
	if err == nil {
		return wireError{}
	}
	code := codeFailed
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = codeUnavailable
	case errors.Is(err, ErrClosed):
		code = codeClosed
	case errors.Is(err, ErrNotInteger):
		code = codeNotInteger
	case errors.Is(err, ErrNoSpace):
		code = codeNoSpace
	case errors.Is(err, ErrIdempotencyConflict):
		code = codeConflict
	case errors.Is(err, errEmptyKey), errors.Is(err, errNegativeTTL), errors.Is(err, errBadOp), errors.Is(err, errBadIdemID):
		code = codeInvalid
	}
	return wireError{Code: code, Error: err.Error()}
}

// err turns a reply's error back into one that wraps the right sentinel.
func (w wireError) err() error {
	switch w.Code {
	case "":
		return nil
	case codeUnavailable:
		return fmt.Errorf("%w: primary: %s", ErrUnavailable, w.Error)
	case codeClosed:
		// The primary's store is closed: it is stopping. For this worker,
		// the backend is unavailable, not closed.
		return fmt.Errorf("%w: primary: %s", ErrUnavailable, w.Error)
	case codeNotInteger:
		return fmt.Errorf("%w: primary: %s", ErrNotInteger, w.Error)
	case codeNoSpace:
		return fmt.Errorf("%w: primary: %s", ErrNoSpace, w.Error)
	case codeConflict:
		return fmt.Errorf("%w: primary: %s", ErrIdempotencyConflict, w.Error)
	default:
		return fmt.Errorf("store: primary: %s", w.Error)
	}
}

// Serve returns the primary's handler for the store's IPC methods, which
// answers them from s. The cluster runtime calls it with a request's method
// and raw JSON body and sends back the JSON encoding of the value it returns,
// or the text of the error. It is safe for concurrent use and blocks as long
// as the store call does. The methods, their requests and replies:
//
//	store.get     {"key":k}                      → {"found":true,"value":b64} or {"found":false}
//	store.set     {"key":k,"value":b64,"ttlNs":n} → {}
//	store.delete  {"key":k}                      → {"found":bool}
//	store.incr    {"key":k}                      → {"value":n}
//	store.keys    {"prefix":p}                   → {"keys":[...]}
//	store.backend {}                             → {"backend":name}
//	store.apply   {"id":i,"op":o,"key":k,"value":b64,"ttlNs":n}
//	                                             → {"n":n,"notFound":bool,"replayed":bool}
//
// A failed store call is answered in the reply, as {"code":c,"error":text}
// beside the fields above, with c one of "unavailable", "closed",
// "not_integer", "no_space", "conflict", "invalid", "failed"; "not found" is found:false. The
// handler returns an error only for a request it cannot read, and for any
// other method an error wrapping ErrUnknownMethod.
func Serve(s Store) func(ctx context.Context, method string, body json.RawMessage) (any, error) {
	return func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		reply, _, err := serve(ctx, s, method, body, nil)
		return reply, err
	}
}

// serve answers one request from s. With data nil the request and reply
// carry values inside their JSON (base64); with data non-nil (the
// CallData protocol) the request's value is data and a Get's value is
// returned as the reply's bytes.
func serve(ctx context.Context, s Store, method string, body, data []byte) (any, []byte, error) {
	switch method {
	case MethodGet:
		var req keyRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		v, err := s.Get(ctx, req.Key)
		if errors.Is(err, ErrNotFound) {
			return getReply{}, nil, nil
		}
		if data != nil {
			if err == nil && v == nil {
				v = []byte{}
			}
			return getReply{wireError: toWire(err), Found: err == nil}, v, nil
		}
		return getReply{wireError: toWire(err), Found: err == nil, Value: v}, nil, nil
	case MethodSet:
		var req setRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		if data != nil {
			req.Value = data
		}
		err := s.Set(ctx, req.Key, req.Value, time.Duration(req.TTLNs))
		return setReply{wireError: toWire(err)}, nil, nil
	case MethodDelete:
		var req keyRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		err := s.Delete(ctx, req.Key)
		if errors.Is(err, ErrNotFound) {
			return deleteReply{}, nil, nil
		}
		return deleteReply{wireError: toWire(err), Found: err == nil}, nil, nil
	case MethodIncr:
		var req keyRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		n, err := s.Incr(ctx, req.Key)
		return incrReply{wireError: toWire(err), Value: n}, nil, nil
	case MethodKeys:
		var req keysRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		keys, err := s.Keys(ctx, req.Prefix)
		if keys == nil {
			keys = []string{}
		}
		return keysReply{wireError: toWire(err), Keys: keys}, nil, nil
	case MethodApply:
		var req applyRequest
		if err := decodeRequest(method, body, &req); err != nil {
			return nil, nil, err
		}
		if data != nil && req.Op == OpSet {
			req.Value = data
		}
		res, err := s.Apply(ctx, req.ID, Write{Op: req.Op, Key: req.Key, Value: req.Value, TTL: time.Duration(req.TTLNs)})
		return applyReply{wireError: toWire(err), N: res.N, NotFound: res.NotFound, Replayed: res.Replayed}, nil, nil
	case MethodBackend:
		return backendReply{Backend: s.Backend()}, nil, nil
	default:
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownMethod, method)
	}
}

func decodeRequest(method string, body json.RawMessage, v any) error {
	if len(body) == 0 {
		return fmt.Errorf("store: %s: empty request", method)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("store: %s: bad request: %w", method, err)
	}
	return nil
}

// remoteBackendTimeout bounds Backend's one question to the primary.
const remoteBackendTimeout = 2 * time.Second

// remote is a worker's view of the primary's store.
type remote struct {
	c  Caller
	dc DataCaller // set by Remote: values travel as bytes

	mu      sync.Mutex
	backend string // the primary's answer, once it gave one
	closed  bool
}

// NewRemote returns the worker's side of the embedded store: every call is a
// request to the primary through c (see Serve for the protocol), so every
// worker sees the same data, and it blocks for that round trip. When c fails
// (the primary is unreachable, or did not answer a request it should) the
// error wraps ErrUnavailable, and the caller's own context errors wrap
// ctx.Err(); a failed write also wraps ErrOutcomeUnknown unless the
// primary refused it or c's error wraps ErrNotSent. Backend asks the primary for its backend's name the first time
// it is called, waiting up to 2 s, and remembers the answer; until the
// primary answers it reports "embedded". Close only stops this value from
// being used; it does not close c, which the cluster runtime owns.
//
// NewRemote speaks the JSON protocol, values base64'd inside it, that Serve
// and Host.Calls answer; Remote is the same over CallData, values as bytes.
func NewRemote(c Caller) Store {
	return &remote{c: c}
}

// DataCaller is a Caller that also sends bytes beside a request's JSON and
// gets bytes back (cluster.Worker.CallData): data is sent as it is, not
// base64'd. It is safe for concurrent use.
type DataCaller interface {
	Caller
	CallData(ctx context.Context, method string, req any, data []byte, resp any) ([]byte, error)
}

// Remote returns the worker's side of the embedded store, as NewRemote
// does (same contracts, same errors), over c's CallData: values travel as
// bytes beside a small JSON header, and the primary answers with
// Host.DataCalls (cluster.Options.DataCalls). In a worker:
//
//	st := store.Remote(w) // w is the *cluster.Worker
func Remote(c DataCaller) Store {
	return &remote{c: c, dc: c}
}

// call makes one request to the primary. A failed read wraps
// ErrUnavailable, or ctx's error when ctx ended. A failed write (write
// true) also wraps ErrOutcomeUnknown unless the primary answered it with an
// error (*ipc.RemoteError: it refused the request) or the Caller says the
// request was never sent (ErrNotSent): a write sent and not answered may
// still be made when a paused primary resumes.
func (r *remote) call(ctx context.Context, method string, write bool, req, resp any) error {
	_, err := r.callData(ctx, method, write, req, nil, resp)
	return err
}

// callData is call with a value: over CallData (Remote) value travels as
// bytes and the reply's bytes are returned; over Call (NewRemote) the
// request already holds it.
func (r *remote) callData(ctx context.Context, method string, write bool, req any, value []byte, resp any) ([]byte, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	var out []byte
	var err error
	if r.dc != nil {
		if value == nil {
			value = []byte{}
		}
		out, err = r.dc.CallData(ctx, method, req, value, resp)
	} else {
		err = r.c.Call(ctx, method, req, resp)
	}
	if err == nil {
		return out, nil
	}
	var refused *ipc.RemoteError
	unknown := write && !errors.As(err, &refused) && !errors.Is(err, ErrNotSent) && !errors.Is(err, ipc.ErrNotSent)
	switch cerr := ctx.Err(); {
	case unknown && cerr != nil:
		return nil, fmt.Errorf("%w: %w: primary did not answer %s: %w", ErrOutcomeUnknown, ErrUnavailable, method, cerr)
	case unknown:
		return nil, fmt.Errorf("%w: %w: primary: %s: %w", ErrOutcomeUnknown, ErrUnavailable, method, err)
	case cerr != nil:
		return nil, fmt.Errorf("store: %s: %w", method, cerr)
	default:
		return nil, fmt.Errorf("%w: primary: %s: %w", ErrUnavailable, method, err)
	}
}

func (r *remote) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	var resp getReply
	v, err := r.callData(ctx, MethodGet, false, keyRequest{Key: key}, nil, &resp)
	if err != nil {
		return nil, err
	}
	if r.dc != nil {
		resp.Value = v
	}
	if err := resp.err(); err != nil {
		return nil, err
	}
	if !resp.Found {
		return nil, ErrNotFound
	}
	if resp.Value == nil {
		resp.Value = []byte{}
	}
	return resp.Value, nil
}

func (r *remote) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	var resp setReply
	req := setRequest{Key: key, Value: value, TTLNs: int64(ttl)}
	data := value
	if r.dc != nil {
		req.Value = nil
		if data == nil {
			data = []byte{}
		}
	}
	if _, err := r.callData(ctx, MethodSet, true, req, data, &resp); err != nil {
		return err
	}
	return resp.err()
}

func (r *remote) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	var resp deleteReply
	if err := r.call(ctx, MethodDelete, true, keyRequest{Key: key}, &resp); err != nil {
		return err
	}
	if err := resp.err(); err != nil {
		return err
	}
	if !resp.Found {
		return ErrNotFound
	}
	return nil
}

func (r *remote) Incr(ctx context.Context, key string) (int64, error) {
	if err := checkCall(ctx, key); err != nil {
		return 0, err
	}
	var resp incrReply
	if err := r.call(ctx, MethodIncr, true, keyRequest{Key: key}, &resp); err != nil {
		return 0, err
	}
	if err := resp.err(); err != nil {
		return 0, err
	}
	return resp.Value, nil
}

func (r *remote) Apply(ctx context.Context, id string, w Write) (Result, error) {
	if err := checkCtx(ctx); err != nil {
		return Result{}, err
	}
	if err := checkApply(id, w); err != nil {
		return Result{}, err
	}
	var resp applyReply
	req := applyRequest{ID: id, Op: w.Op, Key: w.Key, Value: w.Value, TTLNs: int64(w.TTL)}
	var data []byte
	if r.dc != nil {
		data, req.Value = req.Value, nil
	}
	if _, err := r.callData(ctx, MethodApply, true, req, data, &resp); err != nil {
		return Result{}, err
	}
	if err := resp.err(); err != nil {
		return Result{}, err
	}
	return Result{N: resp.N, NotFound: resp.NotFound, Replayed: resp.Replayed}, nil
}

func (r *remote) Keys(ctx context.Context, prefix string) ([]string, error) {
	var resp keysReply
	if err := r.call(ctx, MethodKeys, false, keysRequest{Prefix: prefix}, &resp); err != nil {
		return nil, err
	}
	if err := resp.err(); err != nil {
		return nil, err
	}
	if resp.Keys == nil {
		resp.Keys = []string{}
	}
	return resp.Keys, nil
}

func (r *remote) Backend() string {
	r.mu.Lock()
	name := r.backend
	r.mu.Unlock()
	if name != "" {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteBackendTimeout)
	defer cancel()
	var resp backendReply
	var err error
	if r.dc != nil {
		_, err = r.dc.CallData(ctx, MethodBackend, struct{}{}, []byte{}, &resp)
	} else {
		err = r.c.Call(ctx, MethodBackend, struct{}{}, &resp)
	}
	if err != nil || resp.Backend == "" {
		return "embedded"
	}
	r.mu.Lock()
	r.backend = resp.Backend
	r.mu.Unlock()
	return resp.Backend
}

// Close makes later calls return ErrClosed. It does not close the Caller.
func (r *remote) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}
