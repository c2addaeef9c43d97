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

	hist *hdrhistogram.Histogram // in microseconds
}

// ErrorCounts counts requests that failed without a response.
type ErrorCounts struct {
	Connect int64 // could not open a connection: refused, unreachable, timed out or TLS handshake failed
	Timeout int64 // no complete response within Config.Timeout
	Reset   int64 // the server reset or closed the connection before the response was complete
	Other   int64 // anything else, such as a malformed response
}

// Total is the sum of all kinds.
func (e ErrorCounts) Total() int64 { return e.Connect + e.Timeout + e.Reset + e.Other }

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

// RPS is completed requests per second of Duration.
func (r *Result) RPS() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

// merge sums the workers' counts into r and summarizes the histogram.
// Called once, after every worker has returned.
func (r *Result) merge(workers []*worker) {
	r.Status = map[int]int64{}
	r.ErrorSamples = map[string]string{}
	byID := map[string]int64{}
	var noHeader, untracked int64
	var errs [numKinds]int64
	for _, w := range workers {
		s := &w.stats
		for _, sc := range s.status {
			r.Status[sc.code] += sc.n
			r.Requests += sc.n
		}
		for k := range numKinds {
			errs[k] += s.errors[k]
			r.Requests += s.errors[k]
			if s.samples[k] != "" && r.ErrorSamples[kindNames[k]] == "" {
				r.ErrorSamples[kindNames[k]] = s.samples[k]
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
		r.BytesRead += w.rr.read
	}
	r.Errors = ErrorCounts{Connect: errs[kindConnect], Timeout: errs[kindTimeout], Reset: errs[kindReset], Other: errs[kindOther]}
	r.Distribution = newDistribution(byID, noHeader, untracked)

	h := r.hist
	if h.TotalCount() > 0 {
		us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
		r.Latency = LatencySummary{
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
	BytesRead      int64             `json:"bytes_read"`
	Latency        JSONLatency       `json:"latency_ms"`
	Status         map[string]int64  `json:"status"`
	Errors         JSONErrors        `json:"errors"`
	ErrorSamples   map[string]string `json:"error_samples,omitempty"`
	Workers        JSONWorkers       `json:"workers"`
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
}

// JSONWorkers is Distribution.
type JSONWorkers struct {
	Requests  map[string]int64 `json:"requests"`
	NoHeader  int64            `json:"no_header"`
	Untracked int64            `json:"untracked"`
	Fairness  *float64         `json:"fairness"` // null when no response carried an id
	Verdict   string           `json:"verdict"`
}

// Report returns the result in the shape of the JSON document.
func (r *Result) Report() JSONReport {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 } // µs precision
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
		Succeeded:      r.Requests - r.Failed(),
		Failed:         r.Failed(),
		Resent:         r.Resent,
		RPS:            math.Round(r.RPS()*10) / 10,
		BytesRead:      r.BytesRead,
		Latency: JSONLatency{
			Min: ms(r.Latency.Min), Mean: ms(r.Latency.Mean), P50: ms(r.Latency.P50),
			P90: ms(r.Latency.P90), P95: ms(r.Latency.P95), P99: ms(r.Latency.P99),
			P999: ms(r.Latency.P999), Max: ms(r.Latency.Max),
		},
		Status: map[string]int64{},
		Errors: JSONErrors{
			Connect: r.Errors.Connect, Timeout: r.Errors.Timeout, Reset: r.Errors.Reset,
			Other: r.Errors.Other, Non2xx: r.Non2xx(),
		},
		ErrorSamples: r.ErrorSamples,
		Workers: JSONWorkers{
			Requests:  map[string]int64{},
			NoHeader:  r.Distribution.NoHeader,
			Untracked: r.Distribution.Untracked,
			Verdict:   r.Distribution.Verdict,
		},
	}
	for code, n := range r.Status {
		rep.Status[strconv.Itoa(code)] = n
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

// JSON returns the result as one indented JSON document ending in a
// newline; see the package documentation for the fields.
func (r *Result) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r.Report(), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
