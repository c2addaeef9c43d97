package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds one ordinary HTTP call.
	DefaultTimeout = 10 * time.Second
	// DefaultRequests is how many requests the distribution check sends.
	DefaultRequests = 60
	// ParallelFactor is how much faster than sequential the parallel batch
	// of CPU-bound requests must finish: wall time < ParallelFactor × sum.
	ParallelFactor = 0.75
	// CrashDeadline bounds the wait for a crashed worker's replacement.
	CrashDeadline = 15 * time.Second
)

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Names of the checks, in the order Run performs them.
const (
	CheckAnswers      = "server answers"
	CheckDistribution = "requests spread over workers"
	CheckSharedState  = "shared state across workers"
	CheckLocalState   = "local state isolated per worker"
	CheckParallel     = "CPU work runs in parallel"
	CheckCrash        = "crashed worker replaced"
	CheckShutdown     = "graceful shutdown drains"
)

// Check is the outcome of one check and the evidence for it.
type Check struct {
	Name     string `json:"name"`
	Status   Status `json:"status"`
	Evidence string `json:"evidence"`
}

// String formats c as one line: "✓ name: evidence", "✗ name: evidence" or
// "- name: skipped: reason".
func (c Check) String() string {
	switch c.Status {
	case Pass:
		return "✓ " + c.Name + ": " + c.Evidence
	case Fail:
		return "✗ " + c.Name + ": " + c.Evidence
	default:
		return "- " + c.Name + ": skipped: " + c.Evidence
	}
}

// Report is the outcome of Run.
type Report struct {
	URL     string  `json:"url"`
	Checks  []Check `json:"checks"`
	Passed  int     `json:"passed"`
	Failed  int     `json:"failed"`
	Skipped int     `json:"skipped"`
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Summary is the last line of the text report: "6 passed, 0 failed, 1 skipped".
func (r *Report) Summary() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", r.Passed, r.Failed, r.Skipped)
}

// WriteText writes one line per check and the summary.
func (r *Report) WriteText(w io.Writer) error {
	for _, c := range r.Checks {
		if _, err := fmt.Fprintln(w, c); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// JSON returns the report as one indented JSON document with a trailing
// newline: {"url","checks":[{"name","status","evidence"}],"passed","failed","skipped"}.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	switch c.Status {
	case Pass:
		r.Passed++
	case Fail:
		r.Failed++
	default:
		r.Skipped++
	}
}

// Options configure Run. Only URL is required.
type Options struct {
	// URL is the server's base URL, such as http://127.0.0.1:3000 (a path
	// other than "/" is not allowed: herd's routes are absolute).
	URL string
	// Cluster is the cluster this process started for the run, if any. It
	// enables the graceful-shutdown check, which stops it.
	Cluster *Cluster
	// Timeout bounds each ordinary HTTP call (default DefaultTimeout). The
	// CPU-bound and slow requests get more.
	Timeout time.Duration
	// Requests is how many requests the distribution check sends (default
	// DefaultRequests).
	Requests int
	// CrashTimeout bounds the wait for a crashed worker's replacement
	// (default CrashDeadline).
	CrashTimeout time.Duration
	// Progress, when set, is called with each check as soon as it ends, from
	// the goroutine that called Run.
	Progress func(Check)
}

// ParseURL validates a base URL for Options.URL: http or https, a host, a
// port in range, no path beyond "/", no query. It returns the URL without
// a trailing slash.
func ParseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", fmt.Errorf("bad URL %q: want http:// or https:// and a host, such as http://127.0.0.1:3000", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad URL %q: port %q is not in 1-65535", raw, p)
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("bad URL %q: want the server's base URL without path, query or user, such as %s://%s", raw, u.Scheme, u.Host)
	}
	return u.Scheme + "://" + u.Host, nil
}

// ErrBadOptions is wrapped by the error Run returns for invalid Options.
var ErrBadOptions = errors.New("verify: invalid options")

// Run performs the checks (see the package documentation) and returns the
// report. Failed checks are not errors: the error is non-nil only for
// invalid options (wrapping ErrBadOptions) or when ctx ends, in which case
// the report holds the checks done so far and the rest as skipped.
// Run blocks for several seconds; it is not safe to run two at once
// against one server, since they would disturb each other's evidence.
func Run(ctx context.Context, opts Options) (*Report, error) {
	base, err := ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Requests <= 0 {
		opts.Requests = DefaultRequests
	}
	if opts.CrashTimeout <= 0 {
		opts.CrashTimeout = CrashDeadline
	}
	r := &runner{opts: opts, c: newClient(base, opts.Timeout)}
	defer r.c.close()
	rep := &Report{URL: base}
	steps := []struct {
		name string
		fn   func(context.Context) Check
	}{
		{CheckAnswers, r.answers},
		{CheckDistribution, r.distribution},
		{CheckSharedState, r.sharedState},
		{CheckLocalState, r.localState},
		{CheckParallel, r.parallel},
		{CheckCrash, r.crash},
		{CheckShutdown, r.shutdown},
	}
	for _, s := range steps {
		var c Check
		switch {
		case ctx.Err() != nil:
			c = Check{Status: Skip, Evidence: "interrupted"}
		case r.unreachable != "":
			c = Check{Status: Skip, Evidence: "the server does not answer (" + r.unreachable + ")"}
		default:
			c = s.fn(ctx)
			if c.Status == Fail && ctx.Err() != nil {
				// Cut short, the check proved nothing either way.
				c = Check{Status: Skip, Evidence: "interrupted"}
			}
		}
		c.Name = s.name
		rep.add(c)
		if opts.Progress != nil {
			opts.Progress(c)
		}
	}
	return rep, ctx.Err()
}

// runner holds what one Run learns as it goes.
type runner struct {
	opts Options
	c    *client

	unreachable string // why the first request got no answer at all
	workersSeen int    // distinct X-Worker-Id values in the distribution check
}

func pass(format string, a ...any) Check {
	return Check{Status: Pass, Evidence: fmt.Sprintf(format, a...)}
}

func fail(format string, a ...any) Check {
	return Check{Status: Fail, Evidence: fmt.Sprintf(format, a...)}
}

func skip(format string, a ...any) Check {
	return Check{Status: Skip, Evidence: fmt.Sprintf(format, a...)}
}
