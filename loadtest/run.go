package loadtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
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
	r := &runner{t: t, hist: newHistogram(cfg.Timeout)}
	r.maxLatency = r.hist.HighestTrackableValue()
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
		hist:     r.hist,
	}
	res.merge(workers)
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

	issued atomic.Int64 // tickets taken, for a count-bounded run

	maxLatency int64
	histMu     sync.Mutex
	hist       *hdrhistogram.Histogram
}

// next takes a ticket for one more request, reporting false when the run
// is over.
func (r *runner) next() bool {
	if r.ctx.Err() != nil {
		return false
	}
	if n := r.t.cfg.Requests; n > 0 {
		return r.issued.Add(1) <= n
	}
	return true
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

	rr     respReader
	reused bool // conn has carried a complete exchange

	latencies []int64
	stats     workerStats
}

func newWorker(r *runner) *worker {
	w := &worker{r: r, latencies: make([]int64, 0, latencyBatch)}
	w.rr.scratch = make([]byte, 32<<10)
	w.stats.init()
	return w
}

func (w *worker) run() {
	stop := context.AfterFunc(w.r.ctx, w.interrupt)
	defer stop()
	defer w.closeConn()
	defer w.flushLatencies()

	for w.r.next() {
		start := time.Now()
		resp, kind, err := w.exchange(start)
		elapsed := time.Since(start)
		if err != nil && w.r.ctx.Err() != nil {
			return // cut off by the end of the run: not a result
		}
		if err != nil {
			w.stats.addError(kind, err)
		} else {
			w.stats.addResponse(resp.status, w.rr.workerID)
			w.record(elapsed)
		}
		w.done.Add(1)
	}
}

// exchange sends one request and reads its response, connecting first when
// there is no open connection. It resends once, on a fresh connection, an
// idempotent request whose reused connection turned out to be closed.
func (w *worker) exchange(start time.Time) (response, errKind, error) {
	t := w.r.t
	deadline := start.Add(t.cfg.Timeout)
	for attempt := 0; ; attempt++ {
		if w.conn == nil {
			if err := w.dial(deadline); err != nil {
				return response{}, kindConnect, err
			}
		}
		// The deadline covers writing, waiting and reading the body. Set it
		// before looking at ctx: interrupt may have just set a past
		// deadline that this call overwrote, but then ctx is already done.
		w.conn.SetDeadline(deadline)
		if w.r.ctx.Err() != nil {
			return response{}, kindOther, w.r.ctx.Err()
		}
		reused := w.reused
		_, err := w.conn.Write(t.req)
		var resp response
		if err == nil {
			resp, err = w.rr.readResponse(t.head)
		}
		if err != nil {
			w.closeConn()
			if reused && attempt == 0 && t.idempotent && (err == errNoResponse || isReset(err)) {
				w.stats.resent++
				continue
			}
			if err == errNoResponse {
				err = io.ErrUnexpectedEOF
			}
			return response{}, classify(err), err
		}
		w.reused = true
		if !resp.keepAlive || t.cfg.DisableKeepAlive {
			w.closeConn()
		}
		return resp, 0, nil
	}
}

func (w *worker) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(w.r.ctx, "tcp", w.r.t.addr)
	if err != nil {
		return err
	}
	if w.r.t.tls != nil {
		conn.SetDeadline(deadline)
		tc := tls.Client(conn, w.r.t.tls)
		if err := tc.HandshakeContext(w.r.ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		conn.Close()
		return context.Canceled
	}
	w.conn = conn
	w.reused = false
	if w.rr.br == nil {
		w.rr.br = bufio.NewReaderSize(conn, 8<<10)
	} else {
		w.rr.br.Reset(conn)
	}
	w.rr.raw = conn
	return nil
}

func (w *worker) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// interrupt unblocks a request in flight when the run's context ends.
func (w *worker) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.conn != nil {
		w.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (w *worker) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	w.latencies = append(w.latencies, min(us, w.r.maxLatency))
	if len(w.latencies) == cap(w.latencies) {
		w.flushLatencies()
	}
}

func (w *worker) flushLatencies() {
	if len(w.latencies) == 0 {
		return
	}
	w.r.histMu.Lock()
	for _, v := range w.latencies {
		w.r.hist.RecordValue(v) // cannot fail: record clamped v
	}
	w.r.histMu.Unlock()
	w.latencies = w.latencies[:0]
}

// errKind is the kind of a failed request, as reported.
type errKind int

const (
	kindConnect errKind = iota // could not open a connection
	kindTimeout                // the request took longer than Config.Timeout
	kindReset                  // the server reset or closed the connection mid-exchange
	kindOther                  // anything else, such as a malformed response
	numKinds
)

var kindNames = [numKinds]string{"connect", "timeout", "reset", "other"}

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

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}
