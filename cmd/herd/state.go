package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/store"
)

// openEmbedded opens the store the primary hosts: bbolt when a state file
// is set, memory otherwise. A bad state file is a configuration error.
func openEmbedded(cfg serveConfig) (store.Store, error) {
	if cfg.StateFile == "" {
		return store.NewMemory(), nil
	}
	st, err := store.OpenBolt(cfg.StateFile, store.BoltOptions{})
	if err != nil {
		return nil, badSetting(cfg.from.setting("state-file"), cfg.from.get("state-file"), err.Error())
	}
	return st, nil
}

// redisCheckTimeout bounds the primary's check of Redis at start.
const redisCheckTimeout = 3 * time.Second

// checkRedis checks cfg.RedisURL once, in the primary at start. A
// malformed URL, credentials Redis refuses (NOAUTH, WRONGPASS) or a
// database it does not have are bad settings: a *configError naming the
// setting, with the password redacted. Redis merely unreachable is one
// warning on log and herd serves: the shared-state routes answer 503 until
// it is back.
func checkRedis(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	s, v := cfg.from.setting("redis-url"), cfg.from.get("redis-url")
	shown := store.RedactURL(cfg.RedisURL)
	st, err := store.NewRedis(cfg.RedisURL, store.RedisOptions{})
	if err != nil {
		return badSettingShown(s, v, shown, strings.TrimPrefix(err.Error(), "store: "))
	}
	st.Close()
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil { // NewRedis parsed it; this cannot fail
		return badSettingShown(s, v, shown, "want redis://[user:password@]host:port[/db]")
	}
	opts.DialTimeout = time.Second
	opts.MaxRetries = -1
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	client := redis.NewClient(opts)
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, redisCheckTimeout)
	defer cancel()
	err = client.Ping(ctx).Err()
	var rerr redis.Error
	switch {
	case err == nil:
		return nil
	case redis.IsAuthError(err) || redis.IsPermissionError(err):
		return badSettingShown(s, v, shown, "Redis refused the credentials: "+redisReply(err, opts.Password))
	case errors.As(err, &rerr) && !redisBusy(err):
		// Any other refusal while setting up the connection (a database
		// index Redis does not have, a password it has no users for) is
		// the URL's fault too.
		return badSettingShown(s, v, shown, "Redis refused the connection: "+redisReply(err, opts.Password))
	}
	log.Warn("redis unreachable at start; serving, and the shared-state routes answer 503 until it is back",
		"redis", shown, "err", err)
	return nil
}

// redisBusy reports whether a Redis error reply means "not now" rather
// than "not with this URL".
func redisBusy(err error) bool {
	return redis.IsLoadingError(err) || redis.IsTryAgainError(err) || redis.IsClusterDownError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) || strings.HasPrefix(err.Error(), "BUSY")
}

// redisReply is the first line of Redis's error reply, with the password
// redacted should Redis ever quote it.
func redisReply(err error, password string) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "xxxxx")
	}
	return msg
}

// lateStore is the primary's embedded store during a binary upgrade: the
// old primary holds the bbolt file lock until the new one is ready, so the
// new one opens the file in the background, and calls wait for it (within
// their own deadline) rather than fail.
type lateStore struct {
	readyC chan struct{}
	mu     sync.Mutex
	st     store.Store // set once readyC is closed
	closed bool
}

func openLate(ctx context.Context, cfg serveConfig, log *slog.Logger) *lateStore {
	l := &lateStore{readyC: make(chan struct{})}
	go func() {
		for {
			st, err := store.OpenBolt(cfg.StateFile, store.BoltOptions{LockTimeout: time.Second})
			if err == nil {
				l.mu.Lock()
				if l.closed {
					st.Close()
				} else {
					l.st = st
				}
				l.mu.Unlock()
				close(l.readyC)
				log.Info("state file opened after the previous primary released it", "path", cfg.StateFile)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return l
}

// get waits until the store is open or ctx ends.
func (l *lateStore) get(ctx context.Context) (store.Store, error) {
	select {
	case <-l.readyC:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.st == nil {
			return nil, store.ErrClosed
		}
		return l.st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the state file is still held by the previous primary", store.ErrUnavailable)
	}
}

func (l *lateStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.st != nil {
		return l.st.Close()
	}
	return nil
}

// primaryCalls answers workers' store calls in the primary. After a
// handover (released true) the new primary owns the store: calls from this
// primary's draining workers fail as unavailable.
func primaryCalls(get func(ctx context.Context) (store.Store, error), released *atomic.Bool) cluster.CallHandler {
	return func(ctx context.Context, method string, body json.RawMessage) (any, error) {
		if released.Load() {
			return nil, fmt.Errorf("%w: handed over to the new primary", store.ErrUnavailable)
		}
		st, err := get(ctx)
		if err != nil {
			// The remote side turns any failure into ErrUnavailable: a 503.
			return nil, err
		}
		return store.Serve(st)(ctx, method, body)
	}
}
