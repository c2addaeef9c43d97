// Package verify checks that an HTTP server behaves as herd promises: it
// answers, spreads requests over several worker processes, shares state
// through the store but keeps local state per worker, runs CPU-bound
// requests in parallel, replaces a crashed worker and drains in-flight
// requests on SIGTERM. It is what "herd verify" runs.
//
// # Checks
//
// Run performs these checks in order against Options.URL, each ending as a
// Check with a Status (pass, fail or skip) and its evidence in words:
//
//  1. server answers: GET / answers 200 "Hello World!". When the server
//     cannot be reached at all, the remaining checks are skipped.
//  2. requests spread over workers: Options.Requests GET /pid on new
//     connections (a few at a time) are answered by more than one
//     X-Worker-Id, and none fails.
//  3. shared state across workers: a value POSTed to /cluster/shared-state
//     through one worker is read back, equal, through a worker with another
//     X-Worker-Pid; the key is deleted afterwards.
//  4. local state isolated per worker: over sequential GET
//     /cluster/local-state, each worker's counter only ever increases, by no
//     more than the hits that worker itself answered (see JudgeLocalState),
//     and at least two workers answer.
//  5. CPU work runs in parallel: POST /cluster/cpu-intensive is calibrated
//     to take about half a second alone; then W such requests are sent at
//     once, each on its own connection (5 ms apart, so that an idle worker
//     can take the next one rather than the first worker accepting them
//     all in one go), W being the number of workers check 2 saw (at
//     least 2). They must be served by at least two workers and finish in
//     less than ParallelFactor times W requests one after another,
//     estimated from the fastest request sent alone (see JudgeParallel).
//     Up to four attempts within ten seconds absorb scheduling noise, each
//     with one more request alone. On a machine whose cores are busy with
//     other work, parallelism cannot show and this check fails.
//  6. crashed worker replaced: POST /cluster/crash (skipped when it answers
//     404: the endpoint is off unless herd runs with
//     --enable-crash-endpoint), then /cluster/workers must show the same
//     worker id with a new pid in state "ready" within CrashDeadline, and
//     that pid must serve a request.
//  7. graceful shutdown drains: only when Options.Cluster is set (a cluster
//     this process started, see StartCluster): a slow GET /api/5000000000
//     (seconds of work) is sent on a new connection; 300 ms after it is
//     written, time enough for a worker to have read it, SIGTERM goes to the
//     primary; the request must still complete 200 with the right sum, and
//     the primary exit 0.
//
// Every HTTP call has a timeout (Options.Timeout, longer for the slow
// routes). A server that is not herd (no X-Worker-Id, 404 on the /cluster
// routes) makes the herd-specific checks fail or skip with that evidence;
// Run never panics on what a server answers.
//
// Checks 2 to 6 read the server's state as they go, so traffic from other
// clients at the same time can make check 4 fail (a worker's counter then
// grows faster than the hits verify sent it) and check 5 flaky.
//
// # Starting a cluster
//
// StartCluster runs "herd serve" on a free loopback port with the crash
// endpoint enabled and JSON logs, reads the address and readiness from the
// log, and returns a Cluster to verify and then Stop. Kill ends it and the
// workers it logged, on any error path.
package verify
