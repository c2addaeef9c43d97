package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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
