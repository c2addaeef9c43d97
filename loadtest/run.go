package loadtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Progress is a snapshot of a run in progress, passed to the progress
// function given to Run.
type Progress struct {
	Done     int64         // requests completed so far, failed ones included
	Total    int64         // Config.Requests; 0 when the run is bounded by time
	Elapsed  time.Duration // since the first request
	Duration time.Duration // the time bound; 0 when bounded by count
}

// Fraction is how far the run is, from 0 to 1.
func (p Progress) Fraction() float64 {
	var f float64
	switch {
	case p.Total > 0:
		f = float64(p.Done) / float64(p.Total)
	case p.Duration > 0:
		f = float64(p.Elapsed) / float64(p.Duration)
	}
	return min(max(f, 0), 1)
}

// progressInterval is how often Run reports progress.
const progressInterval = 100 * time.Millisecond

// latencyBatch is how many latencies a worker buffers before it takes the
// histogram lock: one lock per batch, not one per request, and one shared
// histogram instead of one (~120 KB) per worker.
const latencyBatch = 256

// Run sends the load described by cfg and returns what happened.
//
// It blocks until the request count or the duration is reached, or ctx is
// done; in that last case it returns the requests completed so far with
// Result.Interrupted set, and a nil error. Requests cut off by the end of
// the run (by the duration or by ctx) are not counted. Failed requests are
// results, not errors: Run's error is non-nil only for an invalid cfg
// (wrapping ErrInvalidConfig), in which case nothing was sent.
//
// progress, when not nil, is called about every 100ms and once at the end
// from a single goroutine, never concurrently and never after Run returns.
// It should return quickly. Run is safe to call concurrently.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (*Result, error) {
	t, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	cfg = t.cfg

	n := cfg.Concurrency
	if cfg.Requests > 0 && int64(n) > cfg.Requests {
		n = int(cfg.Requests)
	}
	r := &runner{t: t, hists: make([]*hdrhistogram.Histogram, len(t.kinds))}
	for i := range r.hists {
		r.hists[i] = newHistogram(cfg.Timeout)
	}
	r.maxLatency = r.hists[0].HighestTrackableValue()
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = newWorker(r)
	}

	// The deadline counts from start, as Elapsed and Result.Duration do.
	start := time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithDeadline(ctx, start.Add(cfg.Duration))
		defer cancel()
	}
	r.ctx = runCtx
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(w.run)
	}

	doneC := make(chan struct{})
	var progressWG sync.WaitGroup
	snapshot := func() Progress {
		p := Progress{Total: cfg.Requests, Elapsed: time.Since(start), Duration: cfg.Duration}
		for _, w := range workers {
			p.Done += w.done.Load()
		}
		return p
	}
	if progress != nil {
		progressWG.Go(func() {
			tick := time.NewTicker(progressInterval)
			defer tick.Stop()
			for {
				select {
				case <-doneC:
					return
				case <-tick.C:
					progress(snapshot())
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(doneC)
	progressWG.Wait()
	if progress != nil {
		progress(snapshot())
	}

	res := &Result{
		Config:   cfg,
		Duration: elapsed,
	}
	res.merge(t, workers, r.hists)
	// Interrupted: ctx ended the run before its count or duration did.
	if ctx.Err() != nil {
		if cfg.Requests > 0 {
			res.Interrupted = res.Requests < cfg.Requests
		} else {
			res.Interrupted = elapsed < cfg.Duration
		}
	}
	return res, nil
}

// newHistogram records microseconds from 1µs to a little over the request
// timeout (the longest a request can take) at 3 significant digits.
func newHistogram(timeout time.Duration) *hdrhistogram.Histogram {
	highest := (timeout + time.Second).Microseconds()
	return hdrhistogram.New(1, highest, 3)
}

// runner is the state shared by the workers of one run.
type runner struct {
	t   *target
	ctx context.Context

	issued atomic.Int64 // tickets taken: the count bound, and the mix's sequence

	maxLatency int64
	histMu     sync.Mutex
	hists      []*hdrhistogram.Histogram // one per kind
}

// next takes a ticket for one more request and returns the kind it is
// of, reporting false when the run is over.
func (r *runner) next() (int, bool) {
	if r.ctx.Err() != nil {
		return 0, false
	}
	if n := r.t.cfg.Requests; n > 0 || len(r.t.kinds) > 1 {
		ticket := r.issued.Add(1)
		if n > 0 && ticket > n {
			return 0, false
		}
		return r.t.pick(ticket), true
	}
	return 0, true
}

// pick returns the kind of the ticket-th request: a pure function of the
// seed and the ticket, so that a run's sequence of kinds does not depend
// on which worker takes which ticket.
func (t *target) pick(ticket int64) int {
	if len(t.kinds) == 1 {
		return 0
	}
	u := float64(splitmix64(t.cfg.Seed+uint64(ticket)*0x9e3779b97f4a7c15)>>11) / (1 << 53) //nolint:gosec // G115: bits mixed into a hash; wrap-around is fine
	for i, k := range t.kinds {
		if u < k.cum {
			return i
		}
	}
	return len(t.kinds) - 1
}

// splitmix64 is the finalizer of Steele, Lea and Flood's SplitMix64: it
// turns consecutive inputs into well-mixed, uniformly distributed outputs.
func splitmix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// worker sends requests one after another over its own connection. All its
// fields but done and the conn handover belong to its goroutine.
type worker struct {
	r *runner

	done atomic.Int64 // completed requests, read by the progress reporter

	// mu guards conn and stopped against interrupt, which runs when the
	// run's context ends and unblocks a request in flight.
	mu      sync.Mutex
	conn    net.Conn
	stopped bool

	tcp    *net.TCPConn // conn's TCP connection, under TLS or not
	rr     respReader
	reused bool // conn has carried a complete exchange
	// closeAfter: the last exchange ended the connection's use (the server
	// said close, or DisableKeepAlive); peerClosing: the server said it
	// would close.
	closeAfter, peerClosing bool

	latencies [][]int64     // by kind
	stats     []workerStats // by kind
}

func newWorker(r *runner) *worker {
	n := len(r.t.kinds)
	w := &worker{r: r, latencies: make([][]int64, n), stats: make([]workerStats, n)}
	for i := range n {
		w.latencies[i] = make([]int64, 0, latencyBatch)
		w.stats[i].init()
	}
	w.rr.scratch = make([]byte, 32<<10)
	return w
}

func (w *worker) run() {
	stop := context.AfterFunc(w.r.ctx, w.interrupt)
	defer stop()
	defer w.abortConn()
	defer w.flushLatencies()

	for {
		k, ok := w.r.next()
		if !ok {
			return
		}
		start := time.Now()
		resp, ek, err := w.exchange(start, k)
		elapsed := time.Since(start)
		if err != nil && w.r.ctx.Err() != nil {
			return // cut off by the end of the run: not a result
		}
		if err != nil {
			w.stats[k].addError(ek, err)
		} else {
			w.stats[k].addResponse(resp.status, w.rr.workerID)
			w.record(k, elapsed)
			if w.closeAfter {
				// After the response, not in its latency.
				w.finishConn(start.Add(w.r.t.cfg.Timeout))
			}
		}
		w.done.Add(1)
	}
}

// exchange sends one request and reads its response, connecting first when
// there is no open connection. It resends once, on a fresh connection, an
// idempotent request whose reused connection turned out to be closed.
func (w *worker) exchange(start time.Time, k int) (response, errKind, error) {
	t := w.r.t
	deadline := start.Add(t.cfg.Timeout)
	for attempt := 0; ; attempt++ {
		if w.conn == nil {
			if ek, err := w.dial(deadline); err != nil {
				return response{}, ek, err
			}
		}
		// The deadline covers writing, waiting and reading the body. Set it
		// before looking at ctx: interrupt may have just set a past
		// deadline that this call overwrote, but then ctx is already done.
		_ = w.conn.SetDeadline(deadline)
		if w.r.ctx.Err() != nil {
			return response{}, kindOther, w.r.ctx.Err()
		}
		reused := w.reused
		_, err := w.conn.Write(t.kinds[k].req)
		var resp response
		if err == nil {
			resp, err = w.rr.readResponse(t.head)
		}
		if err != nil {
			w.closeConn()
			if reused && attempt == 0 && t.idempotent && (errors.Is(err, errNoResponse) || isReset(err)) {
				w.stats[k].resent++
				continue
			}
			if errors.Is(err, errNoResponse) {
				err = io.ErrUnexpectedEOF
			}
			return response{}, classify(err), err
		}
		w.reused = true
		w.closeAfter = !resp.keepAlive || t.cfg.DisableKeepAlive
		w.peerClosing = !resp.keepAlive
		if w.closeAfter && resp.eof {
			w.closeConn() // the body ended with the connection: nothing to wait for
			w.closeAfter = false
		}
		return resp, 0, nil
	}
}

// maxDialRetries bounds how often dial retries a connect that failed with
// a timeout before its deadline (waiting 0, 2, 4, 6 and 8 ms).
const maxDialRetries = 5

// dial opens a connection. A connect that reports a timeout before its
// deadline has passed is the client's own failure, not the server's: under
// thousands of new connections a second (-c 50 on loopback, Go 1.26), Go's
// dialer was seen to fail a connect within microseconds with "i/o
// timeout", its deadline seconds away (2,400 times in a 20 s run against
// herd serve; more under the race detector). No request was sent on it,
// so it is retried, and counted as a client-side error only when every
// retry fails so.
func (w *worker) dial(deadline time.Time) (errKind, error) {
	d := net.Dialer{Deadline: deadline}
	var conn net.Conn
	for try := 0; ; try++ {
		var err error
		conn, err = d.DialContext(w.r.ctx, "tcp", w.r.t.addr)
		if err == nil {
			break
		}
		if isClientSide(err) {
			return kindClient, err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && w.r.ctx.Err() == nil && time.Now().Before(deadline) {
			if try < maxDialRetries {
				// Such failures come in short bursts: the first retry is
				// immediate, the next ones a few milliseconds apart.
				time.Sleep(time.Duration(try) * 2 * time.Millisecond)
				continue
			}
			return kindClient, fmt.Errorf("%w (reported before the deadline: a failure of the client, not of the server)", err)
		}
		return kindConnect, err
	}
	tcp, _ := conn.(*net.TCPConn)
	if w.r.t.tls != nil {
		_ = conn.SetDeadline(deadline)
		tc := tls.Client(conn, w.r.t.tls)
		if err := tc.HandshakeContext(w.r.ctx); err != nil {
			conn.Close()
			return kindConnect, err
		}
		conn = tc
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		conn.Close()
		return kindOther, context.Canceled
	}
	w.conn = conn
	w.tcp = tcp
	w.reused = false
	if w.rr.br == nil {
		w.rr.br = bufio.NewReaderSize(conn, 8<<10)
	} else {
		w.rr.br.Reset(conn)
	}
	w.rr.raw = conn
	return 0, nil
}

// abortConn ends the run's last connection with a reset (SO_LINGER 0):
// a request cut off by the end of the run, or an idle keep-alive
// connection, leaves no TIME_WAIT on this machine (a FIN from here would,
// one per client, for a minute after every run).
func (w *worker) abortConn() {
	w.mu.Lock()
	if w.tcp != nil {
		_ = w.tcp.SetLinger(0)
	}
	w.mu.Unlock()
	w.closeConn()
}

func (w *worker) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
		w.tcp = nil
	}
}

// peerCloseWait bounds how long finishConn waits for the server to close
// a connection it said it would close.
const peerCloseWait = 250 * time.Millisecond

// finishConn ends a connection that will carry no more requests, so that
// the TIME_WAIT state lands on the server, not on this machine. The side
// that closes a TCP connection first keeps its 4-tuple in TIME_WAIT for a
// minute; a client opening thousands of connections a second and closing
// them first ties up its local ports that way, and ends up failing to
// connect for want of a port (EADDRNOTAVAIL) or spending its time
// searching for one. So:
//   - when the server said Connection: close, wait (at most peerCloseWait,
//     and never past the request's deadline) for its FIN, then close:
//     the server closed first and holds the TIME_WAIT;
//   - otherwise, or when the FIN does not come, abort the connection
//     (SO_LINGER 0, a RST): no TIME_WAIT on either side. The response is
//     complete by then, so the server loses nothing.
func (w *worker) finishConn(deadline time.Time) {
	w.closeAfter = false
	if w.conn == nil {
		return
	}
	if w.peerClosing && w.awaitPeerClose(deadline) {
		w.closeConn()
		return
	}
	if w.tcp != nil {
		_ = w.tcp.SetLinger(0)
	}
	w.closeConn()
}

// awaitPeerClose reads until the server's FIN, reporting whether it came
// in time with nothing else before it. Under TLS the raw connection is
// read: what is left is the server's close_notify alert.
func (w *worker) awaitPeerClose(deadline time.Time) bool {
	if w.tcp == nil || (w.r.t.tls == nil && w.rr.br.Buffered() > 0) {
		return false
	}
	if d := time.Now().Add(peerCloseWait); d.Before(deadline) {
		deadline = d
	}
	if w.tcp.SetReadDeadline(deadline) != nil {
		return false
	}
	for {
		n, err := w.tcp.Read(w.rr.scratch)
		switch {
		case errors.Is(err, io.EOF):
			return true
		case err != nil:
			return false
		case n > 0 && w.r.t.tls == nil:
			return false // bytes after the response: not a clean close
		}
	}
}

// interrupt unblocks a request in flight when the run's context ends.
func (w *worker) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.conn != nil {
		_ = w.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (w *worker) record(k int, d time.Duration) {
	us := max(d.Microseconds(), 1)
	w.latencies[k] = append(w.latencies[k], min(us, w.r.maxLatency))
	if len(w.latencies[k]) == cap(w.latencies[k]) {
		w.flushLatencies()
	}
}

func (w *worker) flushLatencies() {
	w.r.histMu.Lock()
	for k, ls := range w.latencies {
		for _, v := range ls {
			_ = w.r.hists[k].RecordValue(v) // cannot fail: record clamped v
		}
		w.latencies[k] = ls[:0]
	}
	w.r.histMu.Unlock()
}

// errKind is the kind of a failed request, as reported.
type errKind int

const (
	kindConnect errKind = iota // could not open a connection
	kindTimeout                // the request took longer than Config.Timeout
	kindReset                  // the server reset or closed the connection mid-exchange
	kindOther                  // anything else, such as a malformed response
	kindClient                 // this machine failed: out of ports, descriptors or memory
	numKinds
)

var kindNames = [numKinds]string{"connect", "timeout", "reset", "other", "client"}

func (k errKind) String() string { return kindNames[k] }

// classify names the kind of an error from an established connection.
// Dial errors are kindConnect whatever their cause.
func classify(err error) errKind {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case isReset(err), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return kindReset
	}
	return kindOther
}

// isClientSide reports whether a dial error is this machine's own: no
// local port, descriptor, buffer or memory to open a connection with, or a
// name that does not resolve. Nothing reached the server.
func isClientSide(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.As(err, &dnsErr)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}
