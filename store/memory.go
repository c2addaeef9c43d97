package store

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultSweepInterval is how often the embedded backends drop expired keys
// from memory or disk. Expired keys are invisible at once; the sweep only
// reclaims their space.
const DefaultSweepInterval = time.Minute

// memory is the embedded store held in the primary's memory.
type memory struct {
	sweepEvery time.Duration
	now        func() time.Time
	idemMax    int // MaxIdempotencyKeys; smaller in tests

	mu        sync.RWMutex
	data      map[string]memEntry
	idem      map[string]memEntry // idempotency key → outcome record
	idemOrder []idemRef           // idem's keys, oldest first
	lastSweep time.Time
	closed    bool
}

// idemRef is one idempotency record in the order it was made.
type idemRef struct {
	id      string
	expires time.Time
}

type memEntry struct {
	value   []byte
	expires time.Time // zero: never
}

func (e memEntry) live(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

// NewMemory returns the embedded store's in-memory form, which the primary
// hosts when no state file is configured. Its data lives only as long as the
// process: nothing is written anywhere. Every method is safe for concurrent
// use and never blocks on anything but a short in-process lock. Expired keys
// are invisible at once and reclaimed by a sweep that runs, inside a write,
// at most every DefaultSweepInterval. Backend reports "embedded (memory)".
func NewMemory() Store {
	return &memory{
		sweepEvery: DefaultSweepInterval,
		now:        time.Now,
		idemMax:    MaxIdempotencyKeys,
		data:       make(map[string]memEntry),
		idem:       make(map[string]memEntry),
		lastSweep:  time.Now(),
	}
}

func (m *memory) Backend() string { return "embedded (memory)" }

func (m *memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	e, ok := m.data[key]
	if !ok || !e.live(now) {
		return nil, ErrNotFound
	}
	return slices.Clone(e.value), nil
}

func (m *memory) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now := m.now()
	e := memEntry{value: slices.Clone(value)}
	if e.value == nil {
		e.value = []byte{}
	}
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.data[key] = e
	m.maybeSweepLocked(now)
	return nil
}

func (m *memory) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	e, ok := m.data[key]
	if !ok {
		return ErrNotFound
	}
	delete(m.data, key)
	if !e.live(now) {
		return ErrNotFound
	}
	return nil
}

func (m *memory) Incr(ctx context.Context, key string) (int64, error) {
	if err := checkCall(ctx, key); err != nil {
		return 0, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	n, err := m.incrLocked(key, now)
	m.maybeSweepLocked(now)
	return n, err
}

func (m *memory) incrLocked(key string, now time.Time) (int64, error) {
	e, ok := m.data[key]
	if !ok || !e.live(now) {
		e = memEntry{}
	}
	n, v, err := incrValue(e.value)
	if err != nil {
		return 0, err
	}
	e.value = v
	m.data[key] = e
	return n, nil
}

// Apply makes w once per id; see Store. It remembers at most
// MaxIdempotencyKeys outcomes, forgetting the oldest first.
func (m *memory) Apply(ctx context.Context, id string, w Write) (Result, error) {
	if err := checkCtx(ctx); err != nil {
		return Result{}, err
	}
	if err := checkApply(id, w); err != nil {
		return Result{}, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{}, ErrClosed
	}
	fp := w.fingerprint()
	if id != "" {
		if rec, ok := m.idem[id]; ok && rec.live(now) {
			return replay(string(rec.value), fp)
		}
	}
	var r Result
	switch w.Op {
	case OpSet:
		e := memEntry{value: slices.Clone(w.Value)}
		if e.value == nil {
			e.value = []byte{}
		}
		if w.TTL > 0 {
			e.expires = now.Add(w.TTL)
		}
		m.data[w.Key] = e
	case OpDelete:
		e, ok := m.data[w.Key]
		delete(m.data, w.Key)
		r.NotFound = !ok || !e.live(now)
	case OpIncr:
		n, err := m.incrLocked(w.Key, now)
		if err != nil {
			return Result{}, err
		}
		r.N = n
	}
	if id != "" {
		m.recordLocked(id, encodeOutcome(fp, r), now)
	}
	m.maybeSweepLocked(now)
	return r, nil
}

// recordLocked remembers an outcome under id and forgets the expired and
// the oldest beyond MaxIdempotencyKeys. Records share one lifetime, so the
// order they were made in is the order they expire in.
func (m *memory) recordLocked(id, outcome string, now time.Time) {
	exp := now.Add(IdempotencyTTL)
	m.idem[id] = memEntry{value: []byte(outcome), expires: exp}
	m.idemOrder = append(m.idemOrder, idemRef{id: id, expires: exp})
	drop := 0
	for drop < len(m.idemOrder) {
		old := m.idemOrder[drop]
		if len(m.idemOrder)-drop <= m.idemMax && now.Before(old.expires) {
			break
		}
		if e, ok := m.idem[old.id]; ok && e.expires.Equal(old.expires) {
			delete(m.idem, old.id)
		}
		drop++
	}
	if drop > 0 {
		// Copy rather than reslice once in a while, so that the dropped
		// head's memory is released.
		if drop > len(m.idemOrder)/2 {
			m.idemOrder = append([]idemRef(nil), m.idemOrder[drop:]...)
		} else {
			m.idemOrder = m.idemOrder[drop:]
		}
	}
}

func (m *memory) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	keys := []string{}
	for k, e := range m.data {
		if strings.HasPrefix(k, prefix) && e.live(now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// maybeSweepLocked drops expired entries when the last sweep is old enough.
// It costs one pass over the map, at most once per sweepEvery.
func (m *memory) maybeSweepLocked(now time.Time) {
	if now.Sub(m.lastSweep) < m.sweepEvery {
		return
	}
	m.lastSweep = now
	for k, e := range m.data {
		if !e.live(now) {
			delete(m.data, k)
		}
	}
}

// Close drops the data. It is safe to call twice.
func (m *memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.data = nil
	m.idem = nil
	m.idemOrder = nil
	return nil
}
