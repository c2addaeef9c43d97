package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrOutcomeUnknown wraps errors of a write that was sent to the backend
// but whose answer never came (the primary paused or died, Redis stopped
// answering mid-command): it may or may not have happened. Such errors wrap
// ErrUnavailable too; callers check ErrOutcomeUnknown first, must not tell
// their client to simply retry, and retry only with the same idempotency
// key (see Store.Apply), which applies the write at most once.
var ErrOutcomeUnknown = errors.New("store: outcome of the write is unknown")

// ErrIdempotencyConflict is returned by Apply when the idempotency key was
// already used, within its lifetime, for a different write.
var ErrIdempotencyConflict = errors.New("store: idempotency key already used for a different write")

// Limits of idempotency keys.
const (
	// IdempotencyTTL is how long a backend remembers the outcome of a
	// write made with an idempotency key.
	IdempotencyTTL = 24 * time.Hour
	// MaxIdempotencyKeys is how many outcomes the in-memory backend
	// remembers at most; beyond it, it forgets the oldest first. (bbolt
	// and Redis keep every key for IdempotencyTTL.)
	MaxIdempotencyKeys = 100_000
	// MaxIdempotencyKeyLen is the longest idempotency key, in bytes.
	MaxIdempotencyKeyLen = 255
	// RedisIdempotencyPrefix is put before an idempotency key to name the
	// Redis key that records its outcome.
	RedisIdempotencyPrefix = "herd:idempotency:"
)

// Op is the kind of a Write.
type Op string

// The writes Apply makes: those of Set, Delete and Incr.
const (
	OpSet    Op = "set"
	OpDelete Op = "delete"
	OpIncr   Op = "incr"
)

// Write is one change for Apply to make.
type Write struct {
	Op    Op
	Key   string
	Value []byte        // OpSet only
	TTL   time.Duration // OpSet only: 0 for no expiry
}

// Result is what a write did.
type Result struct {
	// N is OpIncr's new value.
	N int64
	// NotFound says OpDelete found no key (Delete's ErrNotFound).
	NotFound bool
	// Replayed says the write was not made again: the result is the one
	// recorded by an earlier Apply with the same idempotency key.
	Replayed bool
}

var (
	errBadOp     = errors.New("store: unknown write op")
	errBadIdemID = fmt.Errorf("store: idempotency key longer than %d bytes", MaxIdempotencyKeyLen)
)

// checkApply validates the arguments of Apply.
func checkApply(id string, w Write) error {
	if len(id) > MaxIdempotencyKeyLen {
		return errBadIdemID
	}
	if w.Key == "" {
		return errEmptyKey
	}
	switch w.Op {
	case OpSet:
		return checkTTL(w.TTL)
	case OpDelete, OpIncr:
		return nil
	default:
		return fmt.Errorf("%w %q", errBadOp, w.Op)
	}
}

// fingerprint identifies a write, so that a key reused for another write
// is told apart from a retry.
func (w Write) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00", w.Op, len(w.Key), w.TTL, w.Key)
	if w.Op == OpSet {
		h.Write(w.Value)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// encodeOutcome is the record of a write's result that every backend keeps
// under its idempotency key: "fingerprint n notfound".
func encodeOutcome(fp string, r Result) string {
	nf := "0"
	if r.NotFound {
		nf = "1"
	}
	return fp + " " + strconv.FormatInt(r.N, 10) + " " + nf
}

// decodeOutcome parses encodeOutcome's text.
func decodeOutcome(s string) (fp string, r Result, err error) {
	parts := strings.Split(s, " ")
	if len(parts) != 3 || len(parts[0]) != 32 || (parts[2] != "0" && parts[2] != "1") {
		return "", Result{}, fmt.Errorf("store: corrupt idempotency record %q", clipText(s))
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", Result{}, fmt.Errorf("store: corrupt idempotency record %q", clipText(s))
	}
	return parts[0], Result{N: n, NotFound: parts[2] == "1"}, nil
}

// replay returns the recorded result of rec for the write with
// fingerprint fp.
func replay(rec, fp string) (Result, error) {
	recFP, r, err := decodeOutcome(rec)
	if err != nil {
		return Result{}, err
	}
	if recFP != fp {
		return Result{}, ErrIdempotencyConflict
	}
	r.Replayed = true
	return r, nil
}

func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
