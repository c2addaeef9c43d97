package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/store"
)

// Limits and names of the shared-state routes.
const (
	// MaxSharedKeyLen is the longest key the shared-state routes accept,
	// without the "cluster:" prefix.
	MaxSharedKeyLen = 256
	// MaxSharedValue is the largest value, as compact JSON, that POST
	// /cluster/shared-state stores (413 above).
	MaxSharedValue = 64 << 10
	// SharedKeyPrefix is put before every key the routes touch, in every
	// backend, so that they share a Redis with other users safely.
	SharedKeyPrefix = "cluster:"
	// CounterKey is the store key of POST /cluster/counter.
	CounterKey = SharedKeyPrefix + "counter"

	// maxSharedBody caps the request body: the value plus room for the key,
	// the JSON around them and some whitespace.
	maxSharedBody = MaxSharedValue + 4<<10
	// storeTimeout bounds one store call, so that a hung backend turns into
	// a 503 rather than a hung request.
	storeTimeout = 5 * time.Second
	// IdempotencyKeyHeader names the request header that makes a write
	// happen at most once however often it is sent (within
	// store.IdempotencyTTL): POST /cluster/shared-state, POST
	// /cluster/counter and DELETE /cluster/shared-state/{key} accept it.
	IdempotencyKeyHeader = "Idempotency-Key"
	// ReplayedHeader is set to "true" on the answer to a write that was
	// not made again: it repeats the first answer with the same key.
	ReplayedHeader = "Idempotent-Replayed"

	// unavailableLogEvery spaces out "backend unavailable" log lines: when
	// Redis is down every request would log one.
	unavailableLogEvery = 5 * time.Second
)

// sharedState serves the shared-state routes of one App.
type sharedState struct {
	a          *App
	lastWarn   atomic.Int64 // Unix nanoseconds of the last unavailability log line
	suppressed atomic.Int64 // unavailability log lines not written since then
}

// sharedStateRoutes registers the shared-state routes (issue 3): the store
// that every worker sees, under keys prefixed "cluster:".
//
//	POST   /cluster/shared-state        {"key","value"} → 200 stored
//	GET    /cluster/shared-state/{key}  → 200 found, 404 not found
//	DELETE /cluster/shared-state/{key}  → 204, 404
//	POST   /cluster/counter             → 200 {"counter": n}, atomically
//
// The writes accept an Idempotency-Key header: made at most once per key
// (store.Store.Apply), a repeat answering the first result with
// Idempotent-Replayed: true, a key reused for another write 422.
// Without a store they answer 503; with the backend unreachable, 503 and a
// Retry-After (the write was not made); a write sent but unanswered, 504
// (it may have been made); the backend out of space, 507; bad input, 4xx
// with {"error": ...}.
func (a *App) sharedStateRoutes(mux *http.ServeMux) {
	s := &sharedState{a: a}
	mux.HandleFunc("POST /cluster/shared-state", s.set)
	mux.HandleFunc("GET /cluster/shared-state/{key}", s.get)
	mux.HandleFunc("DELETE /cluster/shared-state/{key}", s.delete)
	mux.HandleFunc("POST /cluster/counter", s.counter)
}

// validKey reports why k is not a valid shared-state key, or "".
func validKey(k string) string {
	if k == "" {
		return "key is empty: it must be 1 to 256 characters of A-Z a-z 0-9 . _ : -"
	}
	if len(k) > MaxSharedKeyLen {
		return fmt.Sprintf("key is %d characters long: it must be 1 to 256 characters of A-Z a-z 0-9 . _ : -", len(k))
	}
	if k == "." || k == ".." {
		// A URL path cleans these away: GET /cluster/shared-state/. could
		// never read the key back.
		return fmt.Sprintf("key %q names no key in a URL: it must be 1 to 256 characters of A-Z a-z 0-9 . _ : -, other than . and ..", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') { //nolint:staticcheck // QF1001: reads as "not one of the allowed characters"
			return fmt.Sprintf("key has a character not allowed at position %d: it must be 1 to 256 characters of A-Z a-z 0-9 . _ : -", i+1)
		}
	}
	return ""
}

// store returns the store, or answers 503 and returns nil.
func (s *sharedState) store(w http.ResponseWriter) store.Store {
	st := s.a.opts.Store
	if st == nil {
		writeError(w, http.StatusServiceUnavailable, "shared state is not configured")
	}
	return st
}

// storeFailed answers a failed store call: 504 when a write was sent but
// not answered (its outcome is unknown), 422 for an idempotency key reused
// for another write, 507 when the backend is out of space, 503 when it
// cannot be reached or did not answer in time (the call was not made),
// 500 otherwise (logged in detail: the
// client gets no internals, and never a URL or password).
func (s *sharedState) storeFailed(w http.ResponseWriter, r *http.Request, op, key string, err error) {
	log := s.a.opts.Logger
	switch {
	case r.Context().Err() != nil:
		// The client is gone; nobody reads this answer.
		writeError(w, http.StatusServiceUnavailable, "request canceled")
	case errors.Is(err, store.ErrOutcomeUnknown):
		// Never "retry": a retry without the key could apply it twice.
		s.warnLimited("shared state write unanswered", op, key, err)
		msg := "the shared store did not answer in time: this write may or may not have been made. " +
			"Read the value before writing again, or retry with the same Idempotency-Key header, which makes it at most once"
		if r.Header.Get(IdempotencyKeyHeader) == "" {
			msg = "the shared store did not answer in time: this write may or may not have been made. " +
				"Read the value before writing again; send an Idempotency-Key header with writes to retry them safely"
		}
		writeError(w, http.StatusGatewayTimeout, msg)
	case errors.Is(err, store.ErrIdempotencyConflict):
		writeError(w, http.StatusUnprocessableEntity,
			"this Idempotency-Key was already used for a different request: use a new key for a new write")
	case errors.Is(err, store.ErrNoSpace):
		s.warnLimited("shared state backend out of space", op, key, err)
		writeError(w, http.StatusInsufficientStorage,
			"the shared store is out of space: this write was not made; reads and deletes still work")
	case errors.Is(err, store.ErrUnavailable):
		s.warnLimited("shared state backend unavailable", op, key, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "shared state backend is unavailable; retry later")
	case errors.Is(err, context.DeadlineExceeded):
		s.warnLimited("shared state backend unavailable", op, key, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable,
			fmt.Sprintf("shared state backend did not answer within %s; retry later", storeTimeout))
	default:
		log.Error("shared state failed", "op", op, "key", key, "backend", s.a.opts.Store.Backend(), "err", err)
		writeError(w, http.StatusInternalServerError, "shared state failed; the server log has the details")
	}
}

// warnLimited logs a failing backend (unavailable, out of space) at most
// once per unavailableLogEvery, with how many such failures it left out.
func (s *sharedState) warnLimited(msg, op, key string, err error) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(unavailableLogEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		s.suppressed.Add(1)
		return
	}
	s.a.opts.Logger.Warn(msg, "op", op, //nolint:sloglint // one of the constant messages of the callers above "key", key, "err", err,
		"suppressed", s.suppressed.Swap(0))
}

// idempotencyKey returns the request's Idempotency-Key ("" when absent),
// or answers 400 and returns ok false when it is not 1 to 255 visible
// ASCII characters.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	vs := r.Header.Values(IdempotencyKeyHeader)
	if len(vs) == 0 {
		return "", true
	}
	if len(vs) > 1 {
		writeError(w, http.StatusBadRequest, "more than one Idempotency-Key header: send one")
		return "", false
	}
	id := vs[0]
	if id == "" || len(id) > store.MaxIdempotencyKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key must be 1 to %d visible ASCII characters, got %d bytes",
			store.MaxIdempotencyKeyLen, len(id)))
		return "", false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key must be 1 to %d visible ASCII characters; it has %q at position %d",
				store.MaxIdempotencyKeyLen, id[i], i+1))
			return "", false
		}
	}
	return id, true
}

// apply makes one write at most once per Idempotency-Key, marking a
// replayed answer.
func (s *sharedState) apply(w http.ResponseWriter, r *http.Request, st store.Store, id string, wr store.Write) (store.Result, error) {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	res, err := st.Apply(ctx, id, wr)
	if err == nil && res.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	return res, err
}

// decodeSetBody reads {"key": string, "value": any JSON} from r, answering
// 400 or 413 itself when it cannot. The value comes back compacted.
func decodeSetBody(w http.ResponseWriter, r *http.Request) (key string, value json.RawMessage, ok bool) {
	var req struct {
		Key   *string         `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSharedBody))
	err := dec.Decode(&req)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("unexpected data after the JSON object")
			}
		}
	}
	var (
		tooBig  *http.MaxBytesError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is larger than %d bytes: the value may be at most %d bytes of JSON", maxSharedBody, MaxSharedValue))
		return "", nil, false
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, `request body is empty: want {"key": "...", "value": any JSON}`)
		return "", nil, false
	case errors.As(err, &typeErr) && typeErr.Field == "key":
		writeError(w, http.StatusBadRequest, "key must be a JSON string")
		return "", nil, false
	case errors.As(err, &typeErr):
		writeError(w, http.StatusBadRequest, `request body must be a JSON object: {"key": "...", "value": any JSON}`)
		return "", nil, false
	default:
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return "", nil, false
	}
	if req.Key == nil {
		writeError(w, http.StatusBadRequest, `missing "key": want {"key": "...", "value": any JSON}`)
		return "", nil, false
	}
	if req.Value == nil {
		writeError(w, http.StatusBadRequest, `missing "value": want {"key": "...", "value": any JSON}`)
		return "", nil, false
	}
	if msg := validKey(*req.Key); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return "", nil, false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, req.Value); err != nil { // cannot happen: Decode validated it
		writeError(w, http.StatusBadRequest, "malformed JSON value: "+err.Error())
		return "", nil, false
	}
	if buf.Len() > MaxSharedValue {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("value is %d bytes of JSON: at most %d are allowed", buf.Len(), MaxSharedValue))
		return "", nil, false
	}
	return *req.Key, json.RawMessage(buf.Bytes()), true
}

func (s *sharedState) set(w http.ResponseWriter, r *http.Request) {
	st := s.store(w)
	if st == nil {
		return
	}
	id, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	key, value, ok := decodeSetBody(w, r)
	if !ok {
		return
	}
	full := SharedKeyPrefix + key
	if _, err := s.apply(w, r, st, id, store.Write{Op: store.OpSet, Key: full, Value: value}); err != nil {
		s.storeFailed(w, r, "set", full, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Worker  workerRef       `json:"worker"`
		Action  string          `json:"action"`
		Backend string          `json:"backend"`
		Key     string          `json:"key"`
		Value   json.RawMessage `json:"value"`
		Message string          `json:"message"`
	}{s.a.ref(), storedAction(st), st.Backend(), full, value,
		fmt.Sprintf("Stored %s in shared state: every worker now reads this value", full)})
}

// storedAction is the "action" of a POST /cluster/shared-state answer:
// "stored_in_redis" with Redis, as the reference says, "stored" otherwise.
func storedAction(st store.Store) string {
	if st.Backend() == "redis" {
		return "stored_in_redis"
	}
	return "stored"
}

// pathKey returns the {key} of the request, or answers 400 and returns "".
func pathKey(w http.ResponseWriter, r *http.Request) string {
	key := r.PathValue("key")
	if msg := validKey(key); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return ""
	}
	return key
}

func (s *sharedState) notFound(w http.ResponseWriter, full string) {
	writeJSON(w, http.StatusNotFound, struct {
		Worker  workerRef `json:"worker"`
		Key     string    `json:"key"`
		Found   bool      `json:"found"`
		Error   string    `json:"error"`
		Message string    `json:"message"`
	}{s.a.ref(), full, false, "key not found", fmt.Sprintf("No value under %s in shared state", full)})
}

func (s *sharedState) get(w http.ResponseWriter, r *http.Request) {
	st := s.store(w)
	if st == nil {
		return
	}
	key := pathKey(w, r)
	if key == "" {
		return
	}
	full := SharedKeyPrefix + key
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	v, err := st.Get(ctx, full)
	if errors.Is(err, store.ErrNotFound) {
		s.notFound(w, full)
		return
	}
	if err != nil {
		s.storeFailed(w, r, "get", full, err)
		return
	}
	var value any = json.RawMessage(v)
	if !json.Valid(v) {
		value = string(v) // written by something else than these routes
	}
	writeJSON(w, http.StatusOK, struct {
		Worker  workerRef `json:"worker"`
		Key     string    `json:"key"`
		Value   any       `json:"value"`
		Found   bool      `json:"found"`
		Message string    `json:"message"`
	}{s.a.ref(), full, value, true, fmt.Sprintf("Read %s from shared state: the same value on every worker", full)})
}

func (s *sharedState) delete(w http.ResponseWriter, r *http.Request) {
	st := s.store(w)
	if st == nil {
		return
	}
	key := pathKey(w, r)
	if key == "" {
		return
	}
	id, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	full := SharedKeyPrefix + key
	res, err := s.apply(w, r, st, id, store.Write{Op: store.OpDelete, Key: full})
	switch {
	case err != nil:
		s.storeFailed(w, r, "delete", full, err)
	case res.NotFound:
		s.notFound(w, full)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *sharedState) counter(w http.ResponseWriter, r *http.Request) {
	st := s.store(w)
	if st == nil {
		return
	}
	id, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	res, err := s.apply(w, r, st, id, store.Write{Op: store.OpIncr, Key: CounterKey})
	n := res.N
	if errors.Is(err, store.ErrNotInteger) {
		writeError(w, http.StatusConflict,
			CounterKey+" holds a value that is not an integer; DELETE /cluster/shared-state/counter resets it")
		return
	}
	if err != nil {
		s.storeFailed(w, r, "incr", CounterKey, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Worker  workerRef `json:"worker"`
		Counter int64     `json:"counter"`
		Backend string    `json:"backend"`
	}{s.a.ref(), n, st.Backend()})
}
