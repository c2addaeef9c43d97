// Package store is herd's shared state: one Store interface that every
// worker of a cluster sees the same way, whatever holds the data.
//
// # Backends
//
// The embedded store is the default: the primary holds the data and workers
// reach it over their IPC channel to the primary (Remote on the worker,
// NewHost's DataCalls on the primary, values as bytes; NewRemote and
// Serve speak the older JSON protocol, values base64'd). Because it lives in the primary, it survives the
// crash of any worker. It comes in two forms:
//
//   - NewMemory keeps it in the primary's memory. Nothing is written
//     anywhere: when the primary stops, the data is gone.
//   - OpenBolt persists it in a bbolt file (the --state-file). A write is
//     acknowledged only once it is committed and fsync'd, and concurrent
//     writes share one transaction and one fsync (group commit), so
//     everything acknowledged survives a SIGKILL of the primary, or a
//     machine crash, and a restart.
//
// NewRedis uses a Redis server instead: the backend for several machines
// or pods. Keys are passed through as they are (the app prefixes
// "cluster:"). Writes are as durable as the server's own configuration
// (RDB, AOF) makes them. A Redis that is down at start or goes away later
// makes operations fail fast with ErrUnavailable, and they succeed again by
// themselves once Redis is back; nothing crashes. No error or log line holds
// the password of the URL (see RedactURL).
//
// # Contracts
//
// Every Store is safe for concurrent use; Incr is atomic across all workers
// and processes that share the backend. Calls block for at most one round
// trip to the backend (the primary or Redis) and, for bbolt writes, one
// group commit. Errors wrap sentinels for errors.Is: ErrNotFound (Get and
// Delete of an absent or expired key), ErrUnavailable (the backend or the
// primary cannot be reached: answer 503 and retry), ErrNotInteger (Incr of a
// value that is not a decimal integer), ErrClosed (after Close), and the
// context's error when the caller's context is done. TTLs are enforced on
// read: an expired key is invisible at once, in every backend.
//
// The package storetest holds the conformance suite that every backend,
// and the remote adapter over each embedded form, passes.
package store
