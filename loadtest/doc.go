// Package loadtest sends closed-loop HTTP load to one URL and reports
// latency, throughput, errors and how the responses spread over the
// server's workers. It is what "herd loadtest" runs.
//
// # Load
//
// Config.Concurrency workers each own one connection and send requests back
// to back: a new request leaves as soon as the previous response is read
// (closed loop, like wrk and hey). Connections are kept alive unless
// Config.DisableKeepAlive. The run ends after Config.Requests requests or
// Config.Duration, or when the context given to Run ends; requests cut off
// by the end are not counted.
//
// With Config.Mix, each request picks one of several paths by weight. The
// i-th request's kind is a function of Config.Seed and i alone, so a
// count-bounded run with the same seed sends exactly the same requests, and
// the Result reports each kind's rate, errors and latency apart.
//
// # Closing connections
//
// Whichever side of a TCP connection closes first keeps it in TIME_WAIT for
// a minute. A client that opens thousands of connections a second and
// closes them first ties up its own local ports and ends up failing to
// connect (or searching long for a port). So a connection that will carry
// no more requests is ended the way that leaves no TIME_WAIT here: when the
// server said Connection: close (it does, to the client's Connection:
// close), the client waits for the server's FIN, at most 250 ms, and then
// closes; otherwise, or if the FIN does not come, it resets the connection
// (SO_LINGER 0) once the response is complete. The wait is not part of the
// request's latency.
//
// Requests are serialized once and responses parsed by a small HTTP/1.1
// reader rather than net/http's client: the client costs about as much CPU
// per request as a Go server does, and on a small machine the load tester
// would measure itself. Only HTTP/1.x is spoken (https:// included, with
// ALPN forced to http/1.1). Latencies go into one HDR histogram
// (microseconds, 3 significant digits) in batches, with no lock per request.
//
// # Errors
//
// A request fails either without a response, counted by kind — connect
// (could not open a connection: refused, unreachable, timed out or TLS
// handshake failed), timeout (no complete response within Config.Timeout),
// reset (the server reset or closed the connection mid-exchange), other
// (anything else, such as a malformed response), client (this machine
// failed, not the server: no local port, no file descriptor, no buffer or
// memory, a name that does not resolve, or a connect reported timed out
// before its deadline, after 5 retries) — or with a non-2xx status, counted
// by status code. The rate (Result.RPS, "rps") counts succeeded (2xx)
// requests only. An idempotent request (GET, HEAD, OPTIONS, TRACE)
// whose reused keep-alive connection turns out closed before any byte of
// the response is resent once on a new connection, as net/http does.
//
// # Worker distribution
//
// Each response's X-Worker-Id header names the worker that served it. The
// report gives requests per worker, Jain's fairness index (Σx)²/(n·Σx²)
// over the n workers seen, and a verdict: "balanced" when every worker
// served within ±BalanceTolerance (10%) of the mean share 1/n (45–55% each
// over two workers), else "skewed: worker W served P%, outside L–H" naming
// the worker furthest from the mean; "one worker: ..." when only one
// answered, and VerdictUnknown when no response carried the header.
//
// # JSON document
//
// Result.JSON returns one object whose field names are stable:
//
//	url                string   the target
//	method             string   request method
//	concurrency        int      workers (connections)
//	keepalive          bool     false with --no-keepalive
//	target_requests    int      requested count, 0 when bounded by time
//	target_duration_s  number   requested duration, 0 when bounded by count
//	duration_s         number   wall time of the run
//	interrupted        bool     the run was stopped early (SIGINT)
//	requests           int      completed requests: responses plus errors
//	succeeded          int      2xx responses
//	failed             int      errors plus non-2xx responses
//	resent             int      idempotent requests resent after the server
//	                            closed their kept-alive connection unanswered
//	rps                number   succeeded / duration_s (earlier versions
//	                            counted failed requests too: completed_rps)
//	completed_rps      number   requests / duration_s, failed ones included
//	bytes_read         int      response body bytes
//	latency_ms         object   min, mean, p50, p90, p95, p99, p99_9, max in
//	                            milliseconds, over requests with a response
//	status             object   status code (as a string) -> count
//	errors             object   connect, timeout, reset, other, non_2xx, and
//	                            client (this machine's failures) -> count
//	error_samples      object   kind -> first error message (omitted if none)
//	workers            object   requests: worker id -> count;
//	                            no_header: responses without X-Worker-Id;
//	                            untracked: responses from ids beyond MaxWorkerIDs;
//	                            fairness: Jain's index, null when unknown;
//	                            verdict: the verdict in words;
//	                            balanced: the verdict as a bool, null with
//	                            fewer than two workers;
//	                            tolerance: BalanceTolerance (0.1)
//	mix                object   only with Config.Mix: seed, and kinds, an
//	                            array in the mix's order of path, uri,
//	                            weight, share (expected fraction), requests,
//	                            succeeded, failed, rps (succeeded/s),
//	                            latency_ms, status, errors as above
package loadtest
