// Package cluster runs an http.Handler as a supervised herd of worker
// processes sharing one listening socket, the way Node's cluster module,
// gunicorn's arbiter or nginx's master process do, for Go.
//
// Go cannot fork, so the primary (the process you start) re-executes its own
// binary once per worker with HERD_WORKER_ID in the environment; the same
// main function calls Run in both, and Run tells them apart:
//
//	err := cluster.Run(ctx, cluster.Options{Addr: ":8080"}, func(ctx context.Context, w *cluster.Worker) error {
//		return w.Serve(ctx, handler) // runs in each worker
//	})
//
// The same as a value, for a program that waits for readiness, needs the
// address (port 0) or stops the cluster itself: New, then Run in a
// goroutine, Ready, Addr, Shutdown and Done (see Cluster):
//
//	c, err := cluster.New(cluster.Options{Addr: "127.0.0.1:0"}, serve)
//	go c.Run(ctx)
//	<-c.Ready()                 // every worker is serving at c.Addr()
//	err = c.Shutdown(stopCtx)   // graceful, like http.Server.Shutdown
//
// Errors to match with errors.Is: ErrInUse (the port is taken),
// ErrStartFailed, ErrNoPrimary, ErrClosed (Worker.Call without a primary),
// ErrShutdown and ErrRunning; with errors.As, *RemoteError (the primary's
// Calls handler refused a Worker.Call).
//
// The shared store of package store is hosted by the primary in a line or
// two: Options.DataCalls = h.DataCalls with h from store.NewHost (and
// Options.OnHandover = h.Release for binary upgrades), and store.Remote(w)
// in each worker. Worker.CallData and Options.DataCalls carry bytes beside
// the JSON of a call, as they are.
//
// The primary opens the socket once and every worker inherits it (fd 3,
// named in LISTEN_FDS/LISTEN_FDNAMES), so connections queued in the kernel's
// backlog survive the death of any worker. Each worker also inherits one end
// of a socketpair carrying length-prefixed frames (package internal/ipc):
// ready, heartbeats with the worker's figures, drain commands, and
// request/reply calls from the worker to the primary (Worker.Call, answered
// by Options.Calls).
//
// One supervisor loop in the primary owns the workers' state, and never
// blocks on a worker (writes to workers happen in goroutines of their own
// and report failure back as events). It replaces a worker that exits
// unexpectedly: at once if the worker had been up for Backoff.StableAfter
// or was killed by a signal from outside while serving (the OOM killer, an
// operator); after Backoff.Min if a signal killed it while starting; and
// after an exponentially growing delay for its own failures (an exit
// before ready or soon after), so a broken build never becomes a fork
// storm while a storm of kills never leaves the cluster empty. Workers
// that cannot start at all stop a fresh primary (see ExitStartFailed).
// Workers stopped on purpose
// (shutdown, scale down) are not replaced. SIGTERM or SIGINT (or the end of
// Run's context) drains every worker (see below), waits up to
// Options.ShutdownTimeout and kills what is left; a second SIGINT kills at
// once. SIGTTIN and SIGTTOU add and remove a worker. A worker whose primary
// dies, even by SIGKILL, sees EOF on its IPC socket and exits within about a
// second: no orphans.
//
// Options.Balance chooses who takes each new connection. Under
// BalanceShared the workers accept from that inherited socket, first come
// first served. Under BalanceLeastConn and BalanceSticky the primary
// accepts and passes each connection's descriptor to the chosen worker
// over a SOCK_SEQPACKET socketpair of its own (SCM_RIGHTS), keeps its copy
// until the worker acknowledges it, and passes on to another worker every
// connection a worker that exits or drains never took. BalanceAuto (the
// default) is BalanceLeastConn until connections churn (AutoDirectRate new
// ones a second, at least half as many closing); then the workers accept
// from the shared socket themselves until the churn ends. Either way a
// connection waiting for a worker outlives that worker.
//
// Planned replacements start the new worker first and drain the old one only
// once the new one is ready: a rolling reload (SIGHUP) one worker at a time,
// and recycling after Options.Recycle's limits. A binary upgrade (SIGUSR2)
// starts a new primary from the executable on disk, hands it the listening
// socket (and the control socket), and drains this primary once the new
// one's workers are ready; if the new one fails, this one keeps serving.
// Options.ControlSocket takes the same commands from "herd status", "reload",
// "upgrade", "scale" and "stop", on a Unix socket in a private directory
// (ControlSocketDir); an unusable one is a warning, never a reason not to
// serve. The primary owns the socket; what is said on it is
// Options.ServeControl's (package admin's protocol and its typed client),
// which sees the primary as a Plane.
//
// Draining a worker does not use http.Server.Shutdown, which closes idle
// keep-alive connections at once and so drops a request a client is sending
// on one at that moment: the worker stops accepting, answers the next
// request on each connection with "Connection: close" and closes it after
// that response, closes a connection only once its client has been silent
// for a second, and exits when they are all closed.
//
// Deployment: the default worker count is UsableCPUs().Cores(), the
// affinity mask limited by the cgroup CPU quota (Go's GOMAXPROCS rounds a
// quota below 2 up to 2, so herd reads the quota itself). With
// Options.DrainDelay a graceful stop first closes every worker's
// Worker.Unready (a readiness probe fails) while the workers keep serving,
// and drains after the delay. Started by systemd with a socket (LISTEN_FDS
// with LISTEN_PID naming this process), the primary serves on it instead of
// binding Options.Addr; with NOTIFY_SOCKET it speaks sd_notify: READY=1
// once every worker is ready, RELOADING=1 and READY=1 around a rolling
// reload, STOPPING=1, STATUS=, MAINPID= from a new primary after an
// upgrade, and WATCHDOG=1 from the supervisor loop while a worker is
// healthy.
//
// Options.Exec runs any other program as the workers instead ("herd run"):
// it inherits the socket as fd 3 (with LISTEN_PID its own pid), says it is
// ready with sd_notify's READY=1 or by answering a probe, is stopped with a
// signal, and dies with its children if the primary dies. See Exec.
//
// Signal handling in workers: SIGINT, SIGHUP, SIGTTIN, SIGTTOU and SIGUSR2
// are ignored (the primary orchestrates, and runs its workers in their own
// process group so Ctrl-C reaches only it); SIGTERM drains that worker,
// which the primary then replaces.
package cluster
