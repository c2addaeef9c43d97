// Package storetest is the conformance suite every store.Store backend
// passes: the same behaviour whether the data lives in the primary's memory,
// in a bbolt file, behind the worker's IPC channel or in Redis.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/store"
)

// Run runs the conformance suite. Subtests run in parallel and call
// newStore once each; it may return a new store or the same shared one,
// since every subtest keeps to keys under its own prefix. newStore owns what
// it returns: it closes it with t.Cleanup if it needs closing.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, p string)
	}{
		{"GetSetOverwrite", testGetSetOverwrite},
		{"Delete", testDelete},
		{"EmptyKeyRejected", testEmptyKey},
		{"EmptyValue", testEmptyValue},
		{"BinaryValue", testBinaryValue},
		{"LargeValue", testLargeValue},
		{"UnicodeKey", testUnicodeKey},
		{"TTLExpiry", testTTLExpiry},
		{"NegativeTTL", testNegativeTTL},
		{"IncrFromAbsent", testIncrFromAbsent},
		{"IncrNotInteger", testIncrNotInteger},
		{"IncrConcurrent", testIncrConcurrent},
		{"SetGetConcurrent", testSetGetConcurrent},
		{"KeysByPrefix", testKeysByPrefix},
		{"KeysGlobCharacters", testKeysGlob},
		{"ContextCanceled", testContextCanceled},
		{"Backend", testBackend},
		{"ApplyIncrOnce", testApplyIncrOnce},
		{"ApplySetOnce", testApplySetOnce},
		{"ApplyDeleteOnce", testApplyDeleteOnce},
		{"ApplyKeyReusedForAnotherWrite", testApplyConflict},
		{"ApplyConcurrentSameKey", testApplyConcurrent},
		{"ApplyFailedWriteNotRecorded", testApplyFailedNotRecorded},
		{"ApplyBadInput", testApplyBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			tc.fn(t, s, "st:"+t.Name()+":")
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustSet(t *testing.T, s store.Store, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(ctx(t), key, value, ttl); err != nil {
		t.Fatalf("Set(%q, %d bytes, ttl %v): %v", key, len(value), ttl, err)
	}
}

func mustGet(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %d bytes", key, err, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, clip(got), clip(want))
	}
}

func mustNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	got, err := s.Get(ctx(t), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, clip(got), err)
	}
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}

// waitFor polls cond until it returns true or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testGetSetOverwrite(t *testing.T, s store.Store, p string) {
	k := p + "k"
	mustNotFound(t, s, k)
	v1 := []byte("first")
	mustSet(t, s, k, v1, 0)
	v1[0] = 'X' // Set must not retain the caller's slice
	mustGet(t, s, k, []byte("first"))
	mustSet(t, s, k, []byte("second, longer value"), 0)
	mustGet(t, s, k, []byte("second, longer value"))
	mustSet(t, s, k, []byte("3"), 0)
	got, err := s.Get(ctx(t), k)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'Z' // Get must return the caller's own copy
	mustGet(t, s, k, []byte("3"))
	mustNotFound(t, s, p+"other")
}

func testDelete(t *testing.T, s store.Store, p string) {
	k := p + "k"
	if err := s.Delete(ctx(t), k); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(absent) = %v, want ErrNotFound", err)
	}
	mustSet(t, s, k, []byte("v"), 0)
	mustSet(t, s, p+"keep", []byte("v"), 0)
	if err := s.Delete(ctx(t), k); err != nil {
		t.Fatalf("Delete(present) = %v, want nil", err)
	}
	mustNotFound(t, s, k)
	if err := s.Delete(ctx(t), k); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	mustGet(t, s, p+"keep", []byte("v"))
}

func testEmptyKey(t *testing.T, s store.Store, _ string) {
	if err := s.Set(ctx(t), "", []byte("v"), 0); err == nil {
		t.Fatal(`Set("") = nil, want an error`)
	}
	if _, err := s.Get(ctx(t), ""); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf(`Get("") = %v, want an error other than ErrNotFound`, err)
	}
}

func testEmptyValue(t *testing.T, s store.Store, p string) {
	k := p + "k"
	mustSet(t, s, k, nil, 0)
	mustGet(t, s, k, []byte{})
	got, _ := s.Get(ctx(t), k)
	if got == nil {
		t.Fatal("Get of an empty value = nil slice, want empty non-nil")
	}
}

func testBinaryValue(t *testing.T, s store.Store, p string) {
	v := make([]byte, 0, 512)
	for i := range 256 {
		v = append(v, byte(i))
	}
	v = append(v, 0xff, 0xfe, 0x00, 0x00, '\r', '\n', 0xc3, 0x28) // invalid UTF-8 too
	mustSet(t, s, p+"bin", v, 0)
	mustGet(t, s, p+"bin", v)
}

func testLargeValue(t *testing.T, s store.Store, p string) {
	v := make([]byte, 64<<10)
	if _, err := rand.Read(v); err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, p+"big", v, 0)
	mustGet(t, s, p+"big", v)
	v2 := bytes.Repeat([]byte{'a'}, 64<<10+1)
	mustSet(t, s, p+"big", v2, 0)
	mustGet(t, s, p+"big", v2)
}

func testUnicodeKey(t *testing.T, s store.Store, p string) {
	k := p + "ключ-🔑-键 with spaces\tand\nnewline"
	mustSet(t, s, k, []byte("v"), 0)
	mustGet(t, s, k, []byte("v"))
	keys, err := s.Keys(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{k}) {
		t.Fatalf("Keys(%q) = %q, want %q", p, keys, []string{k})
	}
}

func testTTLExpiry(t *testing.T, s store.Store, p string) {
	const short = 150 * time.Millisecond
	mustSet(t, s, p+"long", []byte("L"), time.Hour)
	mustSet(t, s, p+"short", []byte("S"), short)
	mustSet(t, s, p+"cleared", []byte("C1"), short)
	mustSet(t, s, p+"cleared", []byte("C2"), 0) // Set replaces the TTL too
	mustSet(t, s, p+"counter", []byte("5"), 2*time.Second)
	if n, err := s.Incr(ctx(t), p+"counter"); err != nil || n != 6 {
		t.Fatalf("Incr of a key with a TTL = %d, %v; want 6", n, err)
	}
	mustGet(t, s, p+"long", []byte("L"))

	waitFor(t, 10*time.Second, "key with a 150ms TTL still readable", func() bool {
		_, err := s.Get(ctx(t), p+"short")
		return errors.Is(err, store.ErrNotFound)
	})
	keys, err := s.Keys(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	// The counter's own TTL may have run out too on a very slow machine.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == p+"counter" })
	if want := []string{p + "cleared", p + "long"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys after expiry = %q, want %q (and maybe the counter)", keys, want)
	}
	mustGet(t, s, p+"cleared", []byte("C2"))
	if err := s.Delete(ctx(t), p+"short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(expired) = %v, want ErrNotFound", err)
	}
	// Incr kept the counter's TTL: it expires too, and counts afresh.
	waitFor(t, 15*time.Second, "counter with a 2s TTL never expired after Incr", func() bool {
		_, err := s.Get(ctx(t), p+"counter")
		return errors.Is(err, store.ErrNotFound)
	})
	if n, err := s.Incr(ctx(t), p+"counter"); err != nil || n != 1 {
		t.Fatalf("Incr of an expired key = %d, %v; want 1", n, err)
	}
	mustGet(t, s, p+"long", []byte("L"))
	// Setting an expired key afresh works and has no TTL left over.
	mustSet(t, s, p+"short", []byte("S2"), 0)
	mustGet(t, s, p+"short", []byte("S2"))
}

func testNegativeTTL(t *testing.T, s store.Store, p string) {
	if err := s.Set(ctx(t), p+"k", []byte("v"), -time.Second); err == nil {
		t.Fatal("Set with a negative TTL = nil, want an error")
	}
	mustNotFound(t, s, p+"k")
}

func testIncrFromAbsent(t *testing.T, s store.Store, p string) {
	k := p + "n"
	for want := int64(1); want <= 3; want++ {
		got, err := s.Incr(ctx(t), k)
		if err != nil || got != want {
			t.Fatalf("Incr #%d = %d, %v; want %d", want, got, err, want)
		}
	}
	mustGet(t, s, k, []byte("3"))
	mustSet(t, s, k, []byte("41"), 0)
	if got, err := s.Incr(ctx(t), k); err != nil || got != 42 {
		t.Fatalf("Incr after Set 41 = %d, %v; want 42", got, err)
	}
	mustSet(t, s, k, []byte("-7"), 0)
	if got, err := s.Incr(ctx(t), k); err != nil || got != -6 {
		t.Fatalf("Incr after Set -7 = %d, %v; want -6", got, err)
	}
}

func testIncrNotInteger(t *testing.T, s store.Store, p string) {
	for _, v := range []string{"abc", "1.5", "", " 1", "99999999999999999999"} {
		k := p + "k"
		mustSet(t, s, k, []byte(v), 0)
		n, err := s.Incr(ctx(t), k)
		if !errors.Is(err, store.ErrNotInteger) {
			t.Fatalf("Incr of %q = %d, %v; want ErrNotInteger", v, n, err)
		}
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Incr of %q: %v also wraps ErrUnavailable or ErrNotFound", v, err)
		}
		mustGet(t, s, k, []byte(v)) // unchanged
	}
}

func testIncrConcurrent(t *testing.T, s store.Store, p string) {
	const goroutines, each = 50, 20
	k := p + "counter"
	var (
		mu   sync.Mutex
		got  []int64
		wg   sync.WaitGroup
		errs = make(chan error, goroutines)
	)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				n, err := s.Incr(ctx(t), k)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Incr: %v", err)
	}
	slices.Sort(got)
	for i, n := range got {
		if n != int64(i+1) {
			t.Fatalf("concurrent Incr values, sorted: position %d holds %d, want %d (duplicate or gap)", i, n, i+1)
		}
	}
	if len(got) != goroutines*each {
		t.Fatalf("got %d values, want %d", len(got), goroutines*each)
	}
	mustGet(t, s, k, []byte(strconv.Itoa(goroutines*each)))
}

func testSetGetConcurrent(t *testing.T, s store.Store, p string) {
	const goroutines, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("%sg%02d", p, g)
			for i := range each {
				v := fmt.Appendf(nil, "%d/%d", g, i)
				if err := s.Set(ctx(t), k, v, 0); err != nil {
					errs <- err
					return
				}
				got, err := s.Get(ctx(t), k)
				if err != nil || !bytes.Equal(got, v) {
					errs <- fmt.Errorf("Get(%q) = %q, %v after Set %q", k, got, err, v) //nolint:errorlint // may be nil (exit 0, or a wrong value): printed, not wrapped
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx(t), p)
	if err != nil || len(keys) != goroutines {
		t.Fatalf("Keys = %d keys, %v; want %d", len(keys), err, goroutines)
	}
}

func testKeysByPrefix(t *testing.T, s store.Store, p string) {
	// Inserted out of order; Keys sorts.
	for _, k := range []string{"user:2", "user:10", "user:1", "users", "use", "other:1", "user:1:x"} {
		mustSet(t, s, p+k, []byte("v"), 0)
	}
	check := func(prefix string, want ...string) {
		t.Helper()
		got, err := s.Keys(ctx(t), p+prefix)
		if err != nil {
			t.Fatalf("Keys(%q): %v", prefix, err)
		}
		for i := range want {
			want[i] = p + want[i]
		}
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Keys(%q) = %q, want %q", p+prefix, got, want)
		}
	}
	// Bytewise order: '0' < ':'.
	check("user:", "user:1", "user:10", "user:1:x", "user:2")
	check("user", "user:1", "user:10", "user:1:x", "user:2", "users")
	check("use", "use", "user:1", "user:10", "user:1:x", "user:2", "users")
	check("user:1", "user:1", "user:10", "user:1:x")
	check("nothing")
	check("", "other:1", "use", "user:1", "user:10", "user:1:x", "user:2", "users")
	if err := s.Delete(ctx(t), p+"user:10"); err != nil {
		t.Fatal(err)
	}
	check("user:1", "user:1", "user:1:x")
}

// testKeysGlob checks that glob characters in a prefix are literal: Redis's
// SCAN MATCH treats them as a pattern unless escaped.
func testKeysGlob(t *testing.T, s store.Store, p string) {
	for _, k := range []string{
		"a*1", "aZ1", "a*b",
		"q?1", "qZ1",
		"r[ab]1", "ra1", "rb1",
		`s\1`, "s1",
		"t^!-]1",
	} {
		mustSet(t, s, p+k, []byte("v"), 0)
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"a*", []string{"a*1", "a*b"}},
		{"q?", []string{"q?1"}},
		{"r[ab]", []string{"r[ab]1"}},
		{"r[", []string{"r[ab]1"}},
		{`s\`, []string{`s\1`}},
		{"t^!-]", []string{"t^!-]1"}},
		{"*", []string{}},
		{"?", []string{}},
	} {
		got, err := s.Keys(ctx(t), p+c.prefix)
		if err != nil {
			t.Fatalf("Keys(%q): %v", c.prefix, err)
		}
		want := make([]string, len(c.want))
		for i, k := range c.want {
			want[i] = p + k
		}
		if !slices.Equal(got, want) {
			t.Errorf("Keys(%q) = %q, want %q", p+c.prefix, got, want)
		}
	}
}

func testContextCanceled(t *testing.T, s store.Store, p string) {
	mustSet(t, s, p+"k", []byte("v"), 0)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, c.want) {
				t.Errorf("%s with a done context = %v, want %v", op, err, c.want)
			}
			if errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s with a done context wraps ErrNotFound: %v", op, err)
			}
		}
		_, err := s.Get(c.ctx, p+"k")
		check("Get", err)
		check("Set", s.Set(c.ctx, p+"k2", []byte("v"), 0))
		check("Delete", s.Delete(c.ctx, p+"k"))
		_, err = s.Incr(c.ctx, p+"n")
		check("Incr", err)
		_, err = s.Keys(c.ctx, p)
		check("Keys", err)
	}
	// Nothing happened.
	mustGet(t, s, p+"k", []byte("v"))
	mustNotFound(t, s, p+"k2")
	mustNotFound(t, s, p+"n")
}

func testBackend(t *testing.T, s store.Store, _ string) {
	switch b := s.Backend(); b {
	case "embedded (memory)", "embedded (bbolt)", "redis":
	default:
		t.Fatalf("Backend() = %q, want one of the documented names", b)
	}
}

func apply(t *testing.T, s store.Store, id string, w store.Write) store.Result {
	t.Helper()
	r, err := s.Apply(ctx(t), id, w)
	if err != nil {
		t.Fatalf("Apply(%q, %s %q): %v", id, w.Op, w.Key, err)
	}
	return r
}

func testApplyIncrOnce(t *testing.T, s store.Store, p string) {
	k := p + "n"
	incr := store.Write{Op: store.OpIncr, Key: k}
	if r := apply(t, s, p+"id-a", incr); r != (store.Result{N: 1}) {
		t.Fatalf("first Apply = %+v, want N 1, not replayed", r)
	}
	for range 3 {
		if r := apply(t, s, p+"id-a", incr); r != (store.Result{N: 1, Replayed: true}) {
			t.Fatalf("Apply again with the same key = %+v, want N 1 replayed", r)
		}
	}
	mustGet(t, s, k, []byte("1"))
	if r := apply(t, s, p+"id-b", incr); r != (store.Result{N: 2}) {
		t.Fatalf("Apply with another key = %+v, want N 2", r)
	}
	// No key: no record, every call counts.
	for want := int64(3); want <= 4; want++ {
		if r := apply(t, s, "", incr); r != (store.Result{N: want}) {
			t.Fatalf("Apply without a key = %+v, want N %d", r, want)
		}
	}
	// Incr and Apply count the same counter.
	if n, err := s.Incr(ctx(t), k); err != nil || n != 5 {
		t.Fatalf("Incr after Apply = %d, %v; want 5", n, err)
	}
	if r := apply(t, s, p+"id-a", incr); r != (store.Result{N: 1, Replayed: true}) {
		t.Fatalf("Apply with the first key at the end = %+v, want its first result", r)
	}
	mustGet(t, s, k, []byte("5"))
}

func testApplySetOnce(t *testing.T, s store.Store, p string) {
	k := p + "k"
	set := store.Write{Op: store.OpSet, Key: k, Value: []byte("first")}
	if r := apply(t, s, p+"id", set); r != (store.Result{}) {
		t.Fatalf("first Apply(set) = %+v, want a zero result", r)
	}
	mustGet(t, s, k, []byte("first"))
	mustSet(t, s, k, []byte("changed since"), 0)
	if r := apply(t, s, p+"id", set); r != (store.Result{Replayed: true}) {
		t.Fatalf("Apply(set) again = %+v, want replayed", r)
	}
	mustGet(t, s, k, []byte("changed since")) // not written again
	// TTL and an empty value through Apply.
	apply(t, s, "", store.Write{Op: store.OpSet, Key: p + "short", Value: nil, TTL: 150 * time.Millisecond})
	mustGet(t, s, p+"short", []byte{})
	waitFor(t, 10*time.Second, "key set by Apply with a 150ms TTL still readable", func() bool {
		_, err := s.Get(ctx(t), p+"short")
		return errors.Is(err, store.ErrNotFound)
	})
}

func testApplyDeleteOnce(t *testing.T, s store.Store, p string) {
	k := p + "k"
	del := store.Write{Op: store.OpDelete, Key: k}
	mustSet(t, s, k, []byte("v"), 0)
	if r := apply(t, s, p+"id", del); r != (store.Result{}) {
		t.Fatalf("Apply(delete) of a present key = %+v, want found", r)
	}
	mustNotFound(t, s, k)
	mustSet(t, s, k, []byte("set again"), 0)
	if r := apply(t, s, p+"id", del); r != (store.Result{Replayed: true}) {
		t.Fatalf("Apply(delete) again = %+v, want the first result (found), replayed", r)
	}
	mustGet(t, s, k, []byte("set again")) // not deleted again
	if r := apply(t, s, p+"id2", store.Write{Op: store.OpDelete, Key: p + "absent"}); r != (store.Result{NotFound: true}) {
		t.Fatalf("Apply(delete) of an absent key = %+v, want NotFound", r)
	}
	mustSet(t, s, p+"absent", []byte("v"), 0)
	if r := apply(t, s, p+"id2", store.Write{Op: store.OpDelete, Key: p + "absent"}); r != (store.Result{NotFound: true, Replayed: true}) {
		t.Fatalf("Apply(delete) again after NotFound = %+v, want NotFound replayed", r)
	}
	mustGet(t, s, p+"absent", []byte("v"))
}

func testApplyConflict(t *testing.T, s store.Store, p string) {
	id := p + "id"
	apply(t, s, id, store.Write{Op: store.OpIncr, Key: p + "a"})
	for _, w := range []store.Write{
		{Op: store.OpIncr, Key: p + "b"},
		{Op: store.OpDelete, Key: p + "a"},
		{Op: store.OpSet, Key: p + "a", Value: []byte("1")},
	} {
		r, err := s.Apply(ctx(t), id, w)
		if !errors.Is(err, store.ErrIdempotencyConflict) {
			t.Fatalf("Apply(%s %q) with a key used for another write = %+v, %v; want ErrIdempotencyConflict", w.Op, w.Key, r, err)
		}
	}
	mustGet(t, s, p+"a", []byte("1"))
	mustNotFound(t, s, p+"b")
	// Same key and op, another value: another write.
	apply(t, s, p+"id2", store.Write{Op: store.OpSet, Key: p + "c", Value: []byte("x")})
	if _, err := s.Apply(ctx(t), p+"id2", store.Write{Op: store.OpSet, Key: p + "c", Value: []byte("y")}); !errors.Is(err, store.ErrIdempotencyConflict) {
		t.Fatalf("Apply(set) with another value = %v, want ErrIdempotencyConflict", err)
	}
	mustGet(t, s, p+"c", []byte("x"))
}

func testApplyConcurrent(t *testing.T, s store.Store, p string) {
	const n = 32
	var wg sync.WaitGroup
	results := make(chan store.Result, n)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Apply(ctx(t), p+"id", store.Write{Op: store.OpIncr, Key: p + "n"})
			if err != nil {
				errs <- err
				return
			}
			results <- r
		}()
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		t.Fatalf("concurrent Apply: %v", err)
	}
	made := 0
	for r := range results {
		if r.N != 1 {
			t.Errorf("concurrent Apply with one key: N = %d, want 1 for every call", r.N)
		}
		if !r.Replayed {
			made++
		}
	}
	if made != 1 {
		t.Errorf("%d of %d concurrent calls with one key made the write, want exactly 1", made, n)
	}
	mustGet(t, s, p+"n", []byte("1"))
}

func testApplyFailedNotRecorded(t *testing.T, s store.Store, p string) {
	k := p + "n"
	mustSet(t, s, k, []byte("abc"), 0)
	if _, err := s.Apply(ctx(t), p+"id", store.Write{Op: store.OpIncr, Key: k}); !errors.Is(err, store.ErrNotInteger) {
		t.Fatalf("Apply(incr) of a non-integer = %v, want ErrNotInteger", err)
	}
	mustSet(t, s, k, []byte("41"), 0)
	if r := apply(t, s, p+"id", store.Write{Op: store.OpIncr, Key: k}); r != (store.Result{N: 42}) {
		t.Fatalf("Apply(incr) with the key of a failed write = %+v, want N 42 made now", r)
	}
}

func testApplyBadInput(t *testing.T, s store.Store, p string) {
	for _, c := range []struct {
		id string
		w  store.Write
	}{
		{p, store.Write{Op: "explode", Key: p + "k"}},
		{p, store.Write{Op: store.OpIncr, Key: ""}},
		{p, store.Write{Op: store.OpSet, Key: p + "k", TTL: -time.Second}},
		{string(bytes.Repeat([]byte{'i'}, store.MaxIdempotencyKeyLen+1)), store.Write{Op: store.OpIncr, Key: p + "k"}},
	} {
		if r, err := s.Apply(ctx(t), c.id, c.w); err == nil {
			t.Errorf("Apply(%d-byte key, %+v) = %+v, nil; want an error", len(c.id), c.w, r)
		}
	}
	mustNotFound(t, s, p+"k")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Apply(canceled, p+"id", store.Write{Op: store.OpIncr, Key: p + "k"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a canceled context = %v, want context.Canceled", err)
	}
	mustNotFound(t, s, p+"k")
	if r := apply(t, s, p+"id", store.Write{Op: store.OpIncr, Key: p + "k"}); r != (store.Result{N: 1}) {
		t.Errorf("Apply after a canceled one with the same key = %+v, want it made now", r)
	}
}
