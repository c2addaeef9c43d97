package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults of BoltOptions.
const (
	// DefaultLockTimeout is how long OpenBolt waits for another process to
	// release the state file.
	DefaultLockTimeout = 2 * time.Second
	// DefaultMaxBatchDelay is how long a write waits for others to share its
	// transaction and fsync. It bounds the latency a lone writer pays for
	// group commit.
	DefaultMaxBatchDelay = time.Millisecond
	// DefaultMaxBatchSize is how many writes one transaction holds at most;
	// a full batch commits at once, without waiting for MaxBatchDelay.
	DefaultMaxBatchSize = 256
)

// BoltOptions tune OpenBolt. The zero value is valid.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file lock that another process
	// (another primary) holds. Default DefaultLockTimeout; it cannot be
	// made infinite.
	LockTimeout time.Duration
	// MaxBatchDelay is the longest a write waits to be grouped with
	// concurrent writes into one transaction and one fsync. Default
	// DefaultMaxBatchDelay.
	MaxBatchDelay time.Duration
	// MaxBatchSize caps the writes grouped in one transaction. Default
	// DefaultMaxBatchSize.
	MaxBatchSize int
}

// boltBucket holds every key. A record is recordVersion, the expiry as
// big-endian Unix nanoseconds (0: never), then the value.
var boltBucket = []byte("kv")

// boltIdemBucket holds the outcomes of writes made with an idempotency
// key, as records of the same form: the outcome (encodeOutcome) as value,
// expiring IdempotencyTTL after the write.
var boltIdemBucket = []byte("idempotency")

const (
	recordVersion = 1
	recordHeader  = 9
)

func encodeRecord(value []byte, expires int64) []byte {
	rec := make([]byte, recordHeader+len(value))
	rec[0] = recordVersion
	binary.BigEndian.PutUint64(rec[1:recordHeader], uint64(expires)) //nolint:gosec // G115: stores the int64's bits; decodeRecord converts back
	copy(rec[recordHeader:], value)
	return rec
}

// decodeRecord returns the value (aliasing rec) and the expiry of rec.
func decodeRecord(rec []byte) (value []byte, expires int64, err error) {
	if len(rec) < recordHeader || rec[0] != recordVersion {
		return nil, 0, errors.New("store: bbolt: corrupt record")
	}
	return rec[recordHeader:], int64(binary.BigEndian.Uint64(rec[1:recordHeader])), nil //nolint:gosec // G115: the bits encodeRecord stored from an int64
}

func expired(expires int64, now time.Time) bool {
	return expires != 0 && now.UnixNano() >= expires
}

// boltStore is the embedded store persisted in a bbolt file.
type boltStore struct {
	db         *bolt.DB
	path       string
	sweepEvery time.Duration
	lastSweep  atomic.Int64 // Unix nanoseconds
	sweeping   atomic.Bool

	mu      sync.Mutex // guards closed and wg.Add against Close
	closed  bool
	wg      sync.WaitGroup
	closeMu sync.Once
}

// OpenBolt opens (creating if needed) the state file at path: the embedded
// store persisted with bbolt, which the primary hosts when --state-file is
// set. The directory must exist. A second process opening the same file
// fails after opts.LockTimeout with an error saying the file is locked.
//
// Set, Incr and Delete return only once their change is committed and
// fsync'd: whatever they acknowledged survives a SIGKILL of the process or a
// crash of the machine. Concurrent writes share a transaction and an fsync
// (bbolt's DB.Batch: group commit), so a lone write pays up to
// opts.MaxBatchDelay of extra latency and many concurrent writers cost about
// as much as one. The context is checked before a write is queued, not
// while it waits for its batch. Keys are 1 to 32768 bytes; values up to
// about 2 GB. Reads never wait for writes. Expired keys are invisible at
// once and deleted from the file by a background sweep at most every
// DefaultSweepInterval. A write that finds the disk full (ENOSPC) fails
// with an error wrapping ErrNoSpace and changes nothing; reads go on
// working. Close waits for running transactions and closes the file.
// Backend reports "embedded (bbolt)".
func OpenBolt(path string, opts BoltOptions) (Store, error) {
	if path == "" {
		return nil, errors.New("store: state file path is empty")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxBatchDelay <= 0 {
		opts.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: state file %s: directory %s does not exist", path, dir)
		}
		return nil, fmt.Errorf("store: state file %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("store: state file %s: %s is not a directory", path, dir)
	}
	created := false
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("store: state file %s is a directory", path)
	} else if errors.Is(err, fs.ErrNotExist) {
		created = true
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// The freelist is rebuilt at open instead of written at every
		// commit: fewer pages per fsync, same durability (etcd does this).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("store: state file %s is locked by another process (waited %s)", path, opts.LockTimeout)
		}
		return nil, fmt.Errorf("store: open state file %s: %w", path, err)
	}
	db.MaxBatchDelay = opts.MaxBatchDelay
	db.MaxBatchSize = opts.MaxBatchSize
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(boltBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(boltIdemBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: initialize state file %s: %w", path, err)
	}
	if created {
		// The file's directory entry must be durable too.
		if err := syncDir(dir); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("store: state file %s: sync directory: %w", path, err)
		}
	}
	s := &boltStore{db: db, path: path, sweepEvery: DefaultSweepInterval}
	s.lastSweep.Store(time.Now().UnixNano())
	return s, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G304: the directory of the operator's --state-file
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *boltStore) Backend() string { return "embedded (bbolt)" }

// wrap turns a bbolt error into the store's vocabulary.
func (s *boltStore) wrap(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrNotInteger), errors.Is(err, ErrIdempotencyConflict):
		return err
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return ErrClosed
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: bbolt %s: %w", ErrNoSpace, s.path, err)
	default:
		return fmt.Errorf("store: bbolt %s: %w", s.path, err)
	}
}

func (s *boltStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		rec := tx.Bucket(boltBucket).Get([]byte(key))
		if rec == nil {
			return ErrNotFound
		}
		v, exp, err := decodeRecord(rec)
		if err != nil {
			return err
		}
		if expired(exp, time.Now()) {
			return ErrNotFound
		}
		out = slices.Clone(v) // bbolt's memory is valid only inside the tx
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	return out, nil
}

func (s *boltStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	var exp int64
	if ttl > 0 {
		exp = time.Now().Add(ttl).UnixNano()
	}
	rec := encodeRecord(value, exp)
	k := []byte(key)
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBucket).Put(k, rec)
	})
	s.maybeSweep()
	return s.wrap(err)
}

func (s *boltStore) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	// A key that is absent now needs no write transaction: that read is
	// the Delete's moment.
	if _, err := s.Get(ctx, key); err != nil {
		return err
	}
	k := []byte(key)
	var found bool
	// DB.Batch may run fn more than once; found reflects the run that
	// committed. "Not found" is not returned from fn: an error would make
	// bbolt re-run the whole batch and this call alone.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		found = false
		rec := b.Get(k)
		if rec == nil {
			return nil
		}
		if _, exp, err := decodeRecord(rec); err == nil && expired(exp, time.Now()) {
			return nil
		}
		found = true
		return b.Delete(k)
	})
	if err != nil {
		return s.wrap(err)
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

func (s *boltStore) Incr(ctx context.Context, key string) (int64, error) {
	if err := checkCall(ctx, key); err != nil {
		return 0, err
	}
	k := []byte(key)
	var n int64
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		var cur []byte
		var exp int64
		if rec := b.Get(k); rec != nil {
			v, e, err := decodeRecord(rec)
			if err != nil {
				return err
			}
			if !expired(e, time.Now()) {
				cur, exp = v, e
			}
		}
		next, v, err := incrValue(cur)
		if err != nil {
			return err // rare: bbolt re-runs this call alone and returns err
		}
		n = next
		return b.Put(k, encodeRecord(v, exp))
	})
	s.maybeSweep()
	if err != nil {
		return 0, s.wrap(err)
	}
	return n, nil
}

// Apply makes w once per id in one transaction with the record of its
// outcome, so that both are committed, or neither; see Store.
func (s *boltStore) Apply(ctx context.Context, id string, w Write) (Result, error) {
	if err := checkCtx(ctx); err != nil {
		return Result{}, err
	}
	if err := checkApply(id, w); err != nil {
		return Result{}, err
	}
	fp := w.fingerprint()
	k := []byte(w.Key)
	var value []byte
	var exp int64
	if w.Op == OpSet {
		if w.TTL > 0 {
			exp = time.Now().Add(w.TTL).UnixNano()
		}
		value = encodeRecord(w.Value, exp)
	}
	var r Result
	// DB.Batch may run fn more than once: r is the run that committed. An
	// error from fn (conflict, not an integer) makes bbolt re-run this
	// call alone and return it.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		r = Result{}
		now := time.Now()
		idem := tx.Bucket(boltIdemBucket)
		if id != "" {
			if rec := idem.Get([]byte(id)); rec != nil {
				v, e, err := decodeRecord(rec)
				if err != nil {
					return err
				}
				if !expired(e, now) {
					rr, err := replay(string(v), fp)
					r = rr
					return err
				}
			}
		}
		b := tx.Bucket(boltBucket)
		switch w.Op {
		case OpSet:
			if err := b.Put(k, value); err != nil {
				return err
			}
		case OpDelete:
			r.NotFound = true
			if rec := b.Get(k); rec != nil {
				if _, e, err := decodeRecord(rec); err != nil || !expired(e, now) {
					r.NotFound = false
				}
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		case OpIncr:
			var cur []byte
			var e int64
			if rec := b.Get(k); rec != nil {
				v, re, err := decodeRecord(rec)
				if err != nil {
					return err
				}
				if !expired(re, now) {
					cur, e = v, re
				}
			}
			n, v, err := incrValue(cur)
			if err != nil {
				return err
			}
			r.N = n
			if err := b.Put(k, encodeRecord(v, e)); err != nil {
				return err
			}
		}
		if id == "" {
			return nil
		}
		out := encodeRecord([]byte(encodeOutcome(fp, r)), now.Add(IdempotencyTTL).UnixNano())
		return idem.Put([]byte(id), out)
	})
	s.maybeSweep()
	if err != nil {
		return Result{}, s.wrap(err)
	}
	return r, nil
}

func (s *boltStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	keys := []string{}
	p := []byte(prefix)
	err := s.db.View(func(tx *bolt.Tx) error {
		now := time.Now()
		c := tx.Bucket(boltBucket).Cursor()
		for k, rec := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, rec = c.Next() {
			if _, exp, err := decodeRecord(rec); err == nil && expired(exp, now) {
				continue
			}
			keys = append(keys, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	return keys, nil
}

// maybeSweep starts a background sweep of expired keys when one is due and
// none is running.
func (s *boltStore) maybeSweep() {
	now := time.Now().UnixNano()
	if time.Duration(now-s.lastSweep.Load()) < s.sweepEvery || !s.sweeping.CompareAndSwap(false, true) {
		return
	}
	s.lastSweep.Store(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.sweeping.Store(false)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.sweeping.Store(false)
		_, _ = s.sweep() // a failed sweep is retried at the next one
	}()
}

// sweepLimit bounds the keys one sweep deletes, so that its transaction
// stays short.
const sweepLimit = 10000

// sweep deletes expired keys and idempotency records and returns how many
// it deleted.
func (s *boltStore) sweep() (int, error) {
	n, err := s.sweepBucket(boltBucket)
	if err != nil {
		return n, err
	}
	m, err := s.sweepBucket(boltIdemBucket)
	return n + m, err
}

// sweepBucket deletes up to sweepLimit expired records of one bucket.
func (s *boltStore) sweepBucket(bucket []byte) (int, error) {
	var dead [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		now := time.Now()
		return tx.Bucket(bucket).ForEach(func(k, rec []byte) error {
			if _, exp, err := decodeRecord(rec); err == nil && expired(exp, now) && len(dead) < sweepLimit {
				dead = append(dead, slices.Clone(k))
			}
			return nil
		})
	})
	if err != nil || len(dead) == 0 {
		return 0, err
	}
	n := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		now := time.Now()
		b := tx.Bucket(bucket)
		for _, k := range dead {
			// Re-check: the key may have been set again since the scan.
			if rec := b.Get(k); rec != nil {
				if _, exp, err := decodeRecord(rec); err == nil && expired(exp, now) {
					if err := b.Delete(k); err != nil {
						return err
					}
					n++
				}
			}
		}
		return nil
	})
	return n, err
}

// Close waits for running transactions and a running sweep, then closes the
// file. It is safe to call twice; the second call returns nil.
func (s *boltStore) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.wg.Wait()
		err = s.db.Close()
	})
	return err
}
