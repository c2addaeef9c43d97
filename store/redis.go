package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of RedisOptions. They are short so that a dead Redis turns into a
// quick 503, never a hung request.
const (
	// DefaultRedisTimeout bounds one operation (one round trip; for Keys,
	// each SCAN round trip), including the wait for a connection.
	DefaultRedisTimeout = 2 * time.Second
	// DefaultRedisDialTimeout bounds one connection attempt.
	DefaultRedisDialTimeout = time.Second
	// DefaultRedisIOTimeout bounds one socket read or write.
	DefaultRedisIOTimeout = time.Second
)

// RedisOptions tune NewRedis. The zero value is valid. A field left zero
// takes the value the URL's query sets (go-redis's names: dial_timeout,
// read_timeout, write_timeout, pool_size), else the default.
type RedisOptions struct {
	// Timeout bounds each operation. Default DefaultRedisTimeout.
	Timeout time.Duration
	// DialTimeout bounds one connection attempt. Default
	// DefaultRedisDialTimeout.
	DialTimeout time.Duration
	// IOTimeout bounds one socket read or write. Default
	// DefaultRedisIOTimeout.
	IOTimeout time.Duration
	// PoolSize is the most connections kept open. Default go-redis's,
	// 10 per CPU.
	PoolSize int
}

// quietRedis turns go-redis's own logger off, once per process: it writes
// a line to stderr for every failed connection attempt, so a Redis that is
// down would flood the log with lines that repeat the ErrUnavailable errors
// the store returns, which its callers report (herd's app rate-limits them).
var quietRedis sync.Once

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// redisStore is the Redis backend.
type redisStore struct {
	client  *redis.Client
	addr    string // host:port or socket path, for errors: never the password
	timeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

// NewRedis returns the Redis backend for rawURL
// (redis://[user:password@]host:port[/db], rediss:// for TLS, unix://).
// It parses the URL but does not connect: a Redis that is down at start is
// not an error, operations return errors wrapping ErrUnavailable until it is
// up, and the client reconnects by itself (within about a second) once it is.
// A bad URL is an error whose text never holds the password.
//
// Keys are passed through as they are; the caller adds its own prefix. Get,
// Set, Delete and Incr are one command each (GET, SET with PX, DEL, INCR);
// Keys is SCAN MATCH with the prefix's glob characters escaped. A command
// whose reply is lost is not retried (a retried INCR could count twice): it
// fails with ErrUnavailable. Each operation gives up after opts.Timeout.
// Safe for concurrent use. Backend reports "redis". The first call turns
// go-redis's own process-wide logger off: its lines repeat the errors the
// store returns.
func NewRedis(rawURL string, opts RedisOptions) (Store, error) {
	quietRedis.Do(func() { redis.SetLogger(discardRedisLog{}) })
	if rawURL == "" {
		return nil, errors.New("store: redis url is empty")
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, invalidURLError(rawURL, err)
	}
	pick := func(opt, fromURL, def time.Duration) time.Duration {
		switch {
		case opt > 0:
			return opt
		case fromURL != 0:
			return fromURL
		default:
			return def
		}
	}
	ro.DialTimeout = pick(opts.DialTimeout, ro.DialTimeout, DefaultRedisDialTimeout)
	ro.ReadTimeout = pick(opts.IOTimeout, ro.ReadTimeout, DefaultRedisIOTimeout)
	ro.WriteTimeout = pick(opts.IOTimeout, ro.WriteTimeout, DefaultRedisIOTimeout)
	if opts.PoolSize > 0 {
		ro.PoolSize = opts.PoolSize
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = timeout
	}
	ro.MaxRetries = -1   // a retried INCR whose reply was lost would count twice
	ro.DialerRetries = 1 // one attempt per call; the pool re-probes every second
	ro.ContextTimeoutEnabled = true
	ro.DisableIdentity = true // no CLIENT SETINFO round trip per connection
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return &redisStore{client: redis.NewClient(ro), addr: ro.Addr, timeout: timeout}, nil
}

// invalidURLError describes a URL go-redis rejected without quoting a
// password: url.Parse's errors quote the whole URL, so a URL that may hold
// credentials gets no details.
func invalidURLError(rawURL string, err error) error {
	var ue *url.Error
	if strings.Contains(rawURL, "@") || errors.As(err, &ue) {
		return fmt.Errorf("store: invalid redis url %s: want redis://[user:password@]host:port[/db]", RedactURL(rawURL))
	}
	return fmt.Errorf("store: invalid redis url %s: %w", RedactURL(rawURL), err)
}

// RedactURL returns rawURL with its password replaced by "xxxxx", for logs
// and error messages. When rawURL does not parse as a URL, everything that
// could be credentials (up to the last "@") is replaced.
func RedactURL(rawURL string) string {
	if !strings.Contains(rawURL, "@") {
		return rawURL // no userinfo, so no password
	}
	u, err := url.Parse(rawURL)
	if err == nil && u.Opaque == "" && !strings.Contains(u.Host+u.Path+u.RawPath+u.RawQuery+u.Fragment, "@") {
		return u.Redacted()
	}
	at := strings.LastIndex(rawURL, "@")
	start := 0
	if i := strings.Index(rawURL, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return rawURL[:start] + "xxxxx" + rawURL[at:]
}

func (r *redisStore) Backend() string { return "redis" }

// op returns the context for one round trip.
func (r *redisStore) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// unavailablePrefixes are Redis error replies meaning "not now" or "not
// configured right": the app answers 503 for them.
var unavailablePrefixes = []string{
	"LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "READONLY",
	"NOAUTH", "WRONGPASS", "NOPERM", "MISCONF", "NOREPLICAS",
}

// wrap turns a go-redis error into the store's vocabulary. ctx is the
// caller's context, not the per-operation one.
func (r *redisStore) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("store: redis: %w", cerr)
	}
	if errors.Is(err, redis.ErrClosed) {
		return ErrClosed
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		if strings.Contains(msg, "not an integer") {
			return fmt.Errorf("%w: redis: %s", ErrNotInteger, msg)
		}
		if strings.HasPrefix(msg, "OOM") { // at maxmemory: writes are refused
			return fmt.Errorf("%w: redis %s: %s", ErrNoSpace, r.addr, msg)
		}
		for _, p := range unavailablePrefixes {
			if strings.HasPrefix(msg, p) {
				return fmt.Errorf("%w: redis %s: %s", ErrUnavailable, r.addr, msg)
			}
		}
		return fmt.Errorf("store: redis %s: %s", r.addr, msg)
	}
	// Network errors, timeouts, pool exhaustion: Redis cannot be reached.
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, r.addr, err)
}

// sent reports whether err may have come after the command reached Redis:
// anything but a failure to get a connection (dial, pool timeout, closed
// client) or an error reply.
func sent(err error) bool {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return false
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.Nil):
		return false
	}
	var rerr redis.Error
	return !errors.As(err, &rerr)
}

// wrapWrite is wrap for a write: one whose command may have reached Redis
// without an answer coming back wraps ErrOutcomeUnknown too.
func (r *redisStore) wrapWrite(ctx context.Context, err error) error {
	werr := r.wrap(ctx, err)
	if werr == nil || !sent(err) {
		return werr
	}
	if !errors.Is(werr, ErrUnavailable) {
		werr = fmt.Errorf("%w: %w", ErrUnavailable, werr)
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, werr)
}

func (r *redisStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	v, err := r.client.Get(octx, key).Bytes()
	if err != nil {
		return nil, r.wrap(ctx, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (r *redisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	if ttl > 0 && ttl < time.Millisecond {
		ttl = time.Millisecond // PX's unit; go-redis would round it down
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	return r.wrapWrite(ctx, r.client.Set(octx, key, value, ttl).Err())
}

func (r *redisStore) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.client.Del(octx, key).Result()
	if err != nil {
		return r.wrapWrite(ctx, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (r *redisStore) Incr(ctx context.Context, key string) (int64, error) {
	if err := checkCall(ctx, key); err != nil {
		return 0, err
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.client.Incr(octx, key).Result()
	if err != nil {
		return 0, r.wrapWrite(ctx, err)
	}
	return n, nil
}

// applyScript makes one write and records its outcome under the
// idempotency key, atomically (a Lua script runs alone in Redis), unless
// the key already holds an outcome, which it returns instead.
// KEYS: data key, record key (empty: no record). ARGV: op, fingerprint,
// record TTL in ms, value, value TTL in ms (0: none).
// The reply: {replayed 0/1, outcome text}. INCR's value is read back with
// GET, as text: Lua's numbers are doubles and would round it.
var applyScript = redis.NewScript(`
local rec_key = KEYS[2]
if rec_key ~= '' then
  local rec = redis.call('GET', rec_key)
  if rec then return {1, rec} end
end
local n, nf = '0', '0'
if ARGV[1] == 'set' then
  if ARGV[5] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
elseif ARGV[1] == 'incr' then
  redis.call('INCR', KEYS[1])
  n = redis.call('GET', KEYS[1])
elseif ARGV[1] == 'delete' then
  if redis.call('DEL', KEYS[1]) == 0 then nf = '1' end
end
local out = ARGV[2] .. ' ' .. n .. ' ' .. nf
if rec_key ~= '' then
  redis.call('SET', rec_key, out, 'PX', ARGV[3])
end
return {0, out}
`)

// Apply makes w once per id with one Lua script (EVALSHA, or EVAL the
// first time); the outcome is kept under RedisIdempotencyPrefix+id for
// IdempotencyTTL. See Store.
func (r *redisStore) Apply(ctx context.Context, id string, w Write) (Result, error) {
	if err := checkCtx(ctx); err != nil {
		return Result{}, err
	}
	if err := checkApply(id, w); err != nil {
		return Result{}, err
	}
	ttl := w.TTL
	if ttl > 0 && ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	recKey := ""
	if id != "" {
		recKey = RedisIdempotencyPrefix + id
	}
	fp := w.fingerprint()
	octx, cancel := r.op(ctx)
	defer cancel()
	reply, err := applyScript.Run(octx, r.client, []string{w.Key, recKey},
		string(w.Op), fp, IdempotencyTTL.Milliseconds(), w.Value, ttl.Milliseconds()).Slice()
	if err != nil {
		return Result{}, r.wrapWrite(ctx, err)
	}
	if len(reply) != 2 {
		return Result{}, fmt.Errorf("store: redis %s: unexpected script reply %v", r.addr, reply)
	}
	replayed, _ := reply[0].(int64)
	out, _ := reply[1].(string)
	if replayed == 1 {
		return replay(out, fp)
	}
	_, res, err := decodeOutcome(out)
	return res, err
}

// globEscaper escapes the characters SCAN's MATCH treats as pattern syntax.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// scanCount is SCAN's COUNT hint: keys examined per round trip.
const scanCount = 1000

func (r *redisStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	match := globEscaper.Replace(prefix) + "*"
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		octx, cancel := r.op(ctx)
		batch, next, err := r.client.Scan(octx, cursor, match, scanCount).Result()
		cancel()
		if err != nil {
			return nil, r.wrap(ctx, err)
		}
		for _, k := range batch {
			if strings.HasPrefix(k, prefix) { // belt and braces over MATCH
				seen[k] = struct{}{} // SCAN may return a key twice
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// Close closes the client's connections. It is safe to call twice.
func (r *redisStore) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.client.Close() })
	return r.closeErr
}
