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
// Without a store they answer 503; with the backend unreachable, 503 and a
// Retry-After; bad input, 4xx with {"error": ...}.
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

// storeFailed answers a failed store call: 503 when the backend cannot be
// reached or did not answer in time, 500 otherwise (logged in detail: the
// client gets no internals, and never a URL or password).
func (s *sharedState) storeFailed(w http.ResponseWriter, r *http.Request, op, key string, err error) {
	log := s.a.opts.Logger
	switch {
	case r.Context().Err() != nil:
		// The client is gone; nobody reads this answer.
		writeError(w, http.StatusServiceUnavailable, "request canceled")
	case errors.Is(err, store.ErrUnavailable):
		s.warnUnavailable(op, key, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "shared state backend is unavailable; retry later")
	case errors.Is(err, context.DeadlineExceeded):
		s.warnUnavailable(op, key, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable,
			fmt.Sprintf("shared state backend did not answer within %s; retry later", storeTimeout))
	default:
		log.Error("shared state failed", "op", op, "key", key, "backend", s.a.opts.Store.Backend(), "err", err)
		writeError(w, http.StatusInternalServerError, "shared state failed; the server log has the details")
	}
}

// warnUnavailable logs an unavailable backend at most once per
// unavailableLogEvery, with how many such failures it left out.
func (s *sharedState) warnUnavailable(op, key string, err error) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(unavailableLogEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		s.suppressed.Add(1)
		return
	}
	s.a.opts.Logger.Warn("shared state backend unavailable", "op", op, "key", key, "err", err,
		"suppressed", s.suppressed.Swap(0))
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
	key, value, ok := decodeSetBody(w, r)
	if !ok {
		return
	}
	full := SharedKeyPrefix + key
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if err := st.Set(ctx, full, value, 0); err != nil {
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
	}{s.a.ref(), "stored", st.Backend(), full, value,
		fmt.Sprintf("Stored %s in shared state: every worker now reads this value", full)})
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
	full := SharedKeyPrefix + key
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	err := st.Delete(ctx, full)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, store.ErrNotFound):
		s.notFound(w, full)
	default:
		s.storeFailed(w, r, "delete", full, err)
	}
}

func (s *sharedState) counter(w http.ResponseWriter, r *http.Request) {
	st := s.store(w)
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	n, err := st.Incr(ctx, CounterKey)
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
