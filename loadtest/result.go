package loadtest

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run did. Run returns it complete; it is not modified
// afterwards, and its methods are safe for concurrent use.
type Result struct {
	// Config is the run's configuration, defaults applied.
	Config Config

	// Duration is the wall time from the first request to the end of the
	// last one.
	Duration time.Duration

	// Interrupted is set when the context given to Run ended the run
	// before its request count or duration.
	Interrupted bool

	// Requests counts the requests that completed: with a response (any
	// status) or with an error. Requests cut off by the end of the run are
	// not counted.
	Requests int64

	// Status counts responses by status code.
	Status map[int]int64

	// Errors counts requests that got no response, by kind.
	Errors ErrorCounts

	// Resent counts idempotent requests sent a second time, on a new
	// connection, because the server closed the reused keep-alive
	// connection they were sent on without answering (as browsers and
	// net/http do). Each is counted once in Requests, by its second try's
	// outcome. A non-zero figure means the server dropped requests that a
	// client which does not resend (wrk, most proxies, any POST) would
	// have seen fail: during a reload, the sign of a drain that closes
	// idle connections under its clients.
	Resent int64

	// ErrorSamples holds the first error message seen for each kind
	// ("connect", "timeout", "reset", "other") that occurred.
	ErrorSamples map[string]string

	// BytesRead counts response body bytes.
	BytesRead int64

	// Latency summarizes the time from sending a request (connecting
	// first, when it needed a new connection) to the last byte of its
	// response, over the requests that got a response of any status.
	// Requests that failed without a response are not in it.
	Latency LatencySummary

	// Distribution is the spread over the server's workers.
	Distribution Distribution

	// Kinds reports each entry of Config.Mix apart, in the Mix's order;
	// nil without a Mix. The fields above cover all kinds together.
	Kinds []KindResult

	hist *hdrhistogram.Histogram // in microseconds, all kinds
}

// KindResult is what the requests of one Config.Mix entry did.
type KindResult struct {
	Path     string        // the entry's path, as given
	URI      string        // the request-target sent, resolved against Config.URL
	Weight   float64       // the entry's weight, as given
	Share    float64       // Weight / ΣWeight: the expected fraction of the requests
	Requests int64         // completed: responses plus errors
	Status   map[int]int64 // responses by status code
	Errors   ErrorCounts   // requests that got no response, by kind
	Latency  LatencySummary
	Duration time.Duration // the run's, for RPS
}

// Succeeded counts the kind's 2xx responses.
func (k *KindResult) Succeeded() int64 { return succeeded(k.Status) }

// Failed counts the kind's errors and non-2xx responses.
func (k *KindResult) Failed() int64 { return k.Requests - k.Succeeded() }

// RPS is the kind's succeeded requests per second of the run.
func (k *KindResult) RPS() float64 { return perSecond(k.Succeeded(), k.Duration) }

// ErrorCounts counts requests that failed without a response. Client
// counts this machine's failures; the other kinds, the server's (or the
// network's).
type ErrorCounts struct {
	Connect int64 // could not open a connection: refused, unreachable, timed out or TLS handshake failed
	Timeout int64 // no complete response within Config.Timeout
	Reset   int64 // the server reset or closed the connection before the response was complete
	Other   int64 // anything else, such as a malformed response
	// Client: the load generator failed, not the server: no local port
	// (EADDRNOTAVAIL, EADDRINUSE), no descriptor (EMFILE, ENFILE), no
	// buffer or memory (ENOBUFS, ENOMEM), a name that does not resolve, or
	// a connect reported timed out before its deadline.
	Client int64
}

// Total is the sum of all kinds.
func (e ErrorCounts) Total() int64 { return e.Server() + e.Client }

// Server is the sum of the kinds that are not the client's own.
func (e ErrorCounts) Server() int64 { return e.Connect + e.Timeout + e.Reset + e.Other }

func errorCounts(a [numKinds]int64) ErrorCounts {
	return ErrorCounts{Connect: a[kindConnect], Timeout: a[kindTimeout], Reset: a[kindReset], Other: a[kindOther], Client: a[kindClient]}
}

func succeeded(status map[int]int64) int64 {
	var n int64
	for code, c := range status {
		if code >= 200 && code <= 299 {
			n += c
		}
	}
	return n
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// LatencySummary is the latency distribution in a few numbers. All are zero
// when no request got a response. HDR histogram precision: 3 significant
// digits, microsecond resolution.
type LatencySummary struct {
	Min, Mean, P50, P90, P95, P99, P999, Max time.Duration
}

// Responses counts requests that got a response, of any status.
func (r *Result) Responses() int64 { return r.Requests - r.Errors.Total() }

// Non2xx counts responses whose status is not 2xx.
func (r *Result) Non2xx() int64 {
	var n int64
	for code, c := range r.Status {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

// Failed counts requests that failed: errors without a response plus
// non-2xx responses.
func (r *Result) Failed() int64 { return r.Errors.Total() + r.Non2xx() }

// Succeeded counts 2xx responses.
func (r *Result) Succeeded() int64 { return succeeded(r.Status) }

// AllFailed reports whether requests completed and not one succeeded: the
// run measured no server, whatever its rate of failures.
func (r *Result) AllFailed() bool { return r.Requests > 0 && r.Succeeded() == 0 }

// RPS is succeeded (2xx) requests per second of Duration: the rate the
// server sustained. Failed requests are not in it: a client that fails
// fast against a closed port would otherwise report a high rate.
func (r *Result) RPS() float64 { return perSecond(r.Succeeded(), r.Duration) }

// CompletedRPS is completed requests, failed ones included, per second of
// Duration: the rate the load generator ran at.
func (r *Result) CompletedRPS() float64 { return perSecond(r.Requests, r.Duration) }

// merge sums the workers' counts into r and summarizes the histograms
// (one per kind). Called once, after every worker has returned.
func (r *Result) merge(t *target, workers []*worker, hists []*hdrhistogram.Histogram) {
	r.Status = map[int]int64{}
	r.ErrorSamples = map[string]string{}
	byID := map[string]int64{}
	var noHeader, untracked int64
	var errs [numKinds]int64
	kinds := make([]KindResult, len(t.kinds))
	kindErrs := make([][numKinds]int64, len(t.kinds))
	for k := range kinds {
		tk := &t.kinds[k]
		kinds[k] = KindResult{Path: tk.name, URI: tk.uri, Weight: tk.wt, Share: tk.share, Status: map[int]int64{}, Duration: r.Duration}
	}
	for _, w := range workers {
		for k := range w.stats {
			s := &w.stats[k]
			kr := &kinds[k]
			for _, sc := range s.status {
				r.Status[sc.code] += sc.n
				kr.Status[sc.code] += sc.n
				r.Requests += sc.n
				kr.Requests += sc.n
			}
			for e := range numKinds {
				errs[e] += s.errors[e]
				kindErrs[k][e] += s.errors[e]
				r.Requests += s.errors[e]
				kr.Requests += s.errors[e]
				if s.samples[e] != "" && r.ErrorSamples[kindNames[e]] == "" {
					r.ErrorSamples[kindNames[e]] = s.samples[e]
				}
			}
			for id, n := range s.workers {
				if _, ok := byID[id]; ok || len(byID) < MaxWorkerIDs {
					byID[id] += *n
				} else {
					untracked += *n
				}
			}
			noHeader += s.noHeader
			untracked += s.untracked
			r.Resent += s.resent
		}
		r.BytesRead += w.rr.read
	}
	r.Errors = errorCounts(errs)
	r.Distribution = newDistribution(byID, noHeader, untracked)

	r.hist = hists[0]
	if len(hists) > 1 {
		r.hist = hdrhistogram.New(hists[0].LowestTrackableValue(), hists[0].HighestTrackableValue(), int(hists[0].SignificantFigures()))
		for _, h := range hists {
			r.hist.Merge(h) // same range: nothing dropped
		}
	}
	r.Latency = summarize(r.hist)
	if len(t.cfg.Mix) > 0 {
		for k := range kinds {
			kinds[k].Errors = errorCounts(kindErrs[k])
			kinds[k].Latency = summarize(hists[k])
		}
		r.Kinds = kinds
	}
}

// summarize puts a histogram of microseconds in a few numbers, all zero
// when it is empty.
func summarize(h *hdrhistogram.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return LatencySummary{
		Min:  us(h.Min()),
		Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:  us(h.ValueAtQuantile(50)),
		P90:  us(h.ValueAtQuantile(90)),
		P95:  us(h.ValueAtQuantile(95)),
		P99:  us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)),
		Max:  us(h.Max()),
	}
}

// workerStats are one worker's counts, touched only by its goroutine
// until Run merges them.
type workerStats struct {
	status    []statusCount // few distinct codes: a slice beats a map
	errors    [numKinds]int64
	samples   [numKinds]string
	workers   map[string]*int64 // by X-Worker-Id; pointers so that counting does not allocate
	noHeader  int64
	untracked int64
	resent    int64
}

type statusCount struct {
	code int
	n    int64
}

func (s *workerStats) init() { s.workers = map[string]*int64{} }

func (s *workerStats) addResponse(code int, workerID []byte) {
	found := false
	for i := range s.status {
		if s.status[i].code == code {
			s.status[i].n++
			found = true
			break
		}
	}
	if !found {
		s.status = append(s.status, statusCount{code, 1})
	}
	switch {
	case len(workerID) == 0:
		s.noHeader++
	default:
		// m[string(b)] in an index expression does not allocate.
		if p := s.workers[string(workerID)]; p != nil {
			*p++
		} else if len(s.workers) < MaxWorkerIDs {
			n := int64(1)
			s.workers[string(workerID)] = &n
		} else {
			s.untracked++
		}
	}
}

func (s *workerStats) addError(k errKind, err error) {
	s.errors[k]++
	if s.samples[k] == "" {
		s.samples[k] = err.Error()
	}
}

// JSONReport is the document JSON returns; see the package documentation
// for the meaning of each field. Field names are stable.
type JSONReport struct {
	URL            string            `json:"url"`
	Method         string            `json:"method"`
	Concurrency    int               `json:"concurrency"`
	KeepAlive      bool              `json:"keepalive"`
	TargetRequests int64             `json:"target_requests"`
	TargetDuration float64           `json:"target_duration_s"`
	Duration       float64           `json:"duration_s"`
	Interrupted    bool              `json:"interrupted"`
	Requests       int64             `json:"requests"`
	Succeeded      int64             `json:"succeeded"`
	Failed         int64             `json:"failed"`
	Resent         int64             `json:"resent"`
	RPS            float64           `json:"rps"`
	CompletedRPS   float64           `json:"completed_rps"`
	BytesRead      int64             `json:"bytes_read"`
	Latency        JSONLatency       `json:"latency_ms"`
	Status         map[string]int64  `json:"status"`
	Errors         JSONErrors        `json:"errors"`
	ErrorSamples   map[string]string `json:"error_samples,omitempty"`
	Workers        JSONWorkers       `json:"workers"`
	Mix            *JSONMix          `json:"mix,omitempty"`
}

// JSONMix is Config.Seed and Result.Kinds.
type JSONMix struct {
	Seed  uint64     `json:"seed"`
	Kinds []JSONKind `json:"kinds"`
}

// JSONKind is one KindResult.
type JSONKind struct {
	Path      string           `json:"path"`
	URI       string           `json:"uri"`
	Weight    float64          `json:"weight"`
	Share     float64          `json:"share"`
	Requests  int64            `json:"requests"`
	Succeeded int64            `json:"succeeded"`
	Failed    int64            `json:"failed"`
	RPS       float64          `json:"rps"`
	Latency   JSONLatency      `json:"latency_ms"`
	Status    map[string]int64 `json:"status"`
	Errors    JSONErrors       `json:"errors"`
}

// JSONLatency is LatencySummary in milliseconds.
type JSONLatency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// JSONErrors is ErrorCounts plus the non-2xx responses.
type JSONErrors struct {
	Connect int64 `json:"connect"`
	Timeout int64 `json:"timeout"`
	Reset   int64 `json:"reset"`
	Other   int64 `json:"other"`
	Non2xx  int64 `json:"non_2xx"`
	Client  int64 `json:"client"`
}

func jsonErrors(e ErrorCounts, status map[int]int64) JSONErrors {
	var non2xx int64
	for code, c := range status {
		if code < 200 || code > 299 {
			non2xx += c
		}
	}
	return JSONErrors{Connect: e.Connect, Timeout: e.Timeout, Reset: e.Reset, Other: e.Other, Non2xx: non2xx, Client: e.Client}
}

func jsonLatency(l LatencySummary) JSONLatency {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 } // µs precision
	return JSONLatency{
		Min: ms(l.Min), Mean: ms(l.Mean), P50: ms(l.P50), P90: ms(l.P90), P95: ms(l.P95),
		P99: ms(l.P99), P999: ms(l.P999), Max: ms(l.Max),
	}
}

func jsonStatus(status map[int]int64) map[string]int64 {
	m := make(map[string]int64, len(status))
	for code, n := range status {
		m[strconv.Itoa(code)] = n
	}
	return m
}

// JSONWorkers is Distribution.
type JSONWorkers struct {
	Requests  map[string]int64 `json:"requests"`
	NoHeader  int64            `json:"no_header"`
	Untracked int64            `json:"untracked"`
	Fairness  *float64         `json:"fairness"` // null when no response carried an id
	Verdict   string           `json:"verdict"`
	Balanced  *bool            `json:"balanced"`  // null when fewer than two workers answered
	Tolerance float64          `json:"tolerance"` // BalanceTolerance
}

// Report returns the result in the shape of the JSON document.
func (r *Result) Report() JSONReport {
	rep := JSONReport{
		URL:            r.Config.URL,
		Method:         r.Config.Method,
		Concurrency:    r.Config.Concurrency,
		KeepAlive:      !r.Config.DisableKeepAlive,
		TargetRequests: r.Config.Requests,
		TargetDuration: r.Config.Duration.Seconds(),
		Duration:       math.Round(r.Duration.Seconds()*1e3) / 1e3,
		Interrupted:    r.Interrupted,
		Requests:       r.Requests,
		Succeeded:      r.Succeeded(),
		Failed:         r.Failed(),
		Resent:         r.Resent,
		RPS:            round1(r.RPS()),
		CompletedRPS:   round1(r.CompletedRPS()),
		BytesRead:      r.BytesRead,
		Latency:        jsonLatency(r.Latency),
		Status:         jsonStatus(r.Status),
		Errors:         jsonErrors(r.Errors, r.Status),
		ErrorSamples:   r.ErrorSamples,
		Workers: JSONWorkers{
			Requests:  map[string]int64{},
			NoHeader:  r.Distribution.NoHeader,
			Untracked: r.Distribution.Untracked,
			Verdict:   r.Distribution.Verdict,
			Tolerance: BalanceTolerance,
		},
	}
	if r.Kinds != nil {
		rep.Mix = &JSONMix{Seed: r.Config.Seed, Kinds: []JSONKind{}}
		for i := range r.Kinds {
			k := &r.Kinds[i]
			rep.Mix.Kinds = append(rep.Mix.Kinds, JSONKind{
				Path: k.Path, URI: k.URI, Weight: k.Weight, Share: math.Round(k.Share*1e4) / 1e4,
				Requests: k.Requests, Succeeded: k.Succeeded(), Failed: k.Failed(), RPS: round1(k.RPS()),
				Latency: jsonLatency(k.Latency), Status: jsonStatus(k.Status), Errors: jsonErrors(k.Errors, k.Status),
			})
		}
	}
	if len(r.Distribution.Workers) > 1 {
		b := r.Distribution.Balanced
		rep.Workers.Balanced = &b
	}
	for _, w := range r.Distribution.Workers {
		rep.Workers.Requests[w.ID] = w.Requests
	}
	if len(r.Distribution.Workers) > 0 {
		f := math.Round(r.Distribution.Fairness*1e4) / 1e4
		rep.Workers.Fairness = &f
	}
	return rep
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// JSON returns the result as one indented JSON document ending in a
// newline; see the package documentation for the fields.
func (r *Result) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r.Report(), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
