package loadtest

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Run to zero fields of Config.
const (
	DefaultConcurrency = 100
	DefaultDuration    = 10 * time.Second
	DefaultMethod      = http.MethodGet
	DefaultTimeout     = 10 * time.Second
	DefaultURL         = "http://127.0.0.1:3000/"
)

// ErrInvalidConfig is wrapped by every error Run returns for a Config it
// refuses before sending anything.
var ErrInvalidConfig = errors.New("invalid config")

// Config describes one load test. Its zero value is invalid only because
// URL is empty; every other zero field takes the default named in its comment.
// A Config is read, never modified, by Run.
type Config struct {
	// URL is the target, http:// or https:// with a host. Required.
	URL string

	// Concurrency is the number of workers, each with its own connection,
	// sending requests back to back (closed loop). Default DefaultConcurrency.
	Concurrency int

	// Requests is the total number of requests to send. Zero means the run
	// is bounded by Duration instead. Setting both Requests and Duration is
	// an error.
	Requests int64

	// Duration bounds the run in time. Default DefaultDuration when
	// Requests is zero.
	Duration time.Duration

	// Method is the request method. Default DefaultMethod (GET).
	Method string

	// Body is sent with every request, with a Content-Length. Nil or empty
	// sends no body (and Content-Length: 0 for POST, PUT and PATCH).
	Body []byte

	// Header is added to every request. It may override the Host and
	// User-Agent headers the tool sets; Content-Length, Transfer-Encoding
	// and Connection are the tool's and are rejected.
	Header http.Header

	// Timeout bounds each request, from before connecting (when a new
	// connection is needed) to the last byte of the body. Default
	// DefaultTimeout.
	Timeout time.Duration

	// DisableKeepAlive opens a new connection for every request and sends
	// Connection: close. Latency then includes connecting.
	DisableKeepAlive bool

	// TLS configures https:// targets. Nil means certificates are verified
	// against the system roots. ALPN is always forced to http/1.1.
	TLS *tls.Config

	// Mix, when not empty, replaces URL's path with a weighted mix of
	// request kinds: each request picks one entry with probability
	// Weight / ΣWeight, and the Result reports every kind apart. Paths are
	// resolved against URL as a browser resolves a link ("/api/1" from the
	// host's root, "api/1" beside URL's path). At most MaxMixEntries
	// entries, each path once. Method, Body and Header apply to every kind.
	Mix []MixEntry

	// Seed selects the sequence of kinds a Mix run sends: the i-th request
	// of two runs with the same Mix and Seed is of the same kind, whatever
	// the timing, so a count-bounded run sends exactly the same requests.
	// Zero is a seed like any other (the default).
	Seed uint64
}

// MixEntry is one kind of request in Config.Mix.
type MixEntry struct {
	// Path is resolved against Config.URL: "/x" from the host's root, "x"
	// relative to URL's path, and it may carry a query ("/search?q=a").
	Path string
	// Weight is the entry's relative frequency, above 0. Integers (95 and
	// 5) and percentages (95 and 5, summing to 100) read the same way.
	Weight float64
}

// MaxMixEntries bounds Config.Mix: each kind keeps its own latency
// histogram (about 200 KB).
const MaxMixEntries = 16

// Validate reports whether Run would accept c, with the error Run would
// return (wrapping ErrInvalidConfig). It sends nothing.
func (c Config) Validate() error {
	_, err := prepare(c)
	return err
}

// target is a validated Config in the form the workers use: all fields
// read-only once Run starts them.
type target struct {
	cfg        Config
	addr       string // host:port to dial
	tls        *tls.Config
	req        []byte // the serialized request, sent as is every time (no Mix)
	head       bool   // HEAD responses carry no body
	idempotent bool   // safe to resend on a stale keep-alive connection

	// kinds are the request kinds: one, req, without a Mix.
	kinds []kind
}

// kind is one entry of the mix, ready to send.
type kind struct {
	name  string  // the path as given in the Mix ("/" without one)
	uri   string  // the request-target sent
	req   []byte  // the serialized request
	cum   float64 // cumulative share: a draw u in [0,1) picks the first kind with u < cum
	wt    float64 // the weight as given
	share float64 // wt / Σwt
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("loadtest: %w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// prepare applies defaults, validates c, and serializes the request.
func prepare(c Config) (*target, error) {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 0 {
		return nil, invalid("concurrency %d: want 1 or more", c.Concurrency)
	}
	switch {
	case c.Requests < 0:
		return nil, invalid("requests %d: want 1 or more, or 0 for a duration", c.Requests)
	case c.Duration < 0:
		return nil, invalid("duration %v: want more than 0", c.Duration)
	case c.Requests > 0 && c.Duration > 0:
		return nil, invalid("both a request count and a duration: want one of them")
	case c.Requests == 0 && c.Duration == 0:
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		return nil, invalid("timeout %v: want more than 0", c.Timeout)
	}
	if c.Method == "" {
		c.Method = DefaultMethod
	}
	if !isToken(c.Method) {
		return nil, invalid("method %q: want a token such as GET or POST", c.Method)
	}

	u, err := ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w: %w", ErrInvalidConfig, err)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	t := &target{
		cfg:  c,
		addr: net.JoinHostPort(u.Hostname(), port),
		head: c.Method == http.MethodHead,
	}
	switch c.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		t.idempotent = true
	}
	if u.Scheme == "https" {
		if c.TLS != nil {
			t.tls = c.TLS.Clone()
		} else {
			t.tls = &tls.Config{}
		}
		if t.tls.ServerName == "" {
			t.tls.ServerName = u.Hostname()
		}
		// The reader speaks HTTP/1.1 only; never let the server pick h2.
		t.tls.NextProtos = []string{"http/1.1"}
	}
	t.req, err = buildRequest(c, u)
	if err != nil {
		return nil, err
	}
	if len(c.Mix) == 0 {
		t.kinds = []kind{{name: u.RequestURI(), uri: u.RequestURI(), req: t.req, cum: 1, wt: 1, share: 1}}
		return t, nil
	}
	if len(c.Mix) > MaxMixEntries {
		return nil, invalid("mix of %d entries: want at most %d", len(c.Mix), MaxMixEntries)
	}
	var total float64
	seen := map[string]bool{}
	for _, e := range c.Mix {
		if !(e.Weight > 0) || math.IsInf(e.Weight, 0) {
			return nil, invalid("mix entry %q: weight %v, want a number above 0", e.Path, e.Weight)
		}
		if seen[e.Path] {
			return nil, invalid("mix path %q given twice: give each path one weight", e.Path)
		}
		seen[e.Path] = true
		total += e.Weight
	}
	var cum float64
	for _, e := range c.Mix {
		ref, err := parseMixPath(e.Path)
		if err != nil {
			return nil, invalid("%v", err)
		}
		ku := u.ResolveReference(ref)
		ku.User = u.User
		req, err := buildRequest(c, ku)
		if err != nil {
			return nil, err
		}
		cum += e.Weight / total
		t.kinds = append(t.kinds, kind{name: e.Path, uri: ku.RequestURI(), req: req, cum: cum, wt: e.Weight, share: e.Weight / total})
	}
	t.kinds[len(t.kinds)-1].cum = 1 // no draw may fall past the last kind by rounding
	return t, nil
}

// parseMixPath parses the path of a mix entry: a reference relative to the
// base URL, without a scheme or host of its own.
func parseMixPath(p string) (*url.URL, error) {
	if p == "" || strings.ContainsAny(p, " \t\r\n\x00") {
		return nil, fmt.Errorf("mix path %q: want a path such as /api/1, without spaces", p)
	}
	ref, err := url.Parse(p)
	if err != nil || ref.Scheme != "" || ref.Host != "" || ref.User != nil {
		return nil, fmt.Errorf("mix path %q: want a path relative to the URL, such as /api/1, not a URL of its own", p)
	}
	return ref, nil
}

// ParseMix parses the --mix syntax: comma-separated WEIGHT:PATH entries,
// such as "95:/,5:/api/300000000" or "95%:/,5%:/api/300000000". Weights
// are whole numbers of 1 or more, or percentages (decimals allowed) that
// sum to 100; one form throughout. A comma inside a path is written %2C.
// The error is one line naming what is allowed.
func ParseMix(s string) ([]MixEntry, error) {
	const want = "want WEIGHT:PATH entries separated by commas, e.g. 95:/,5:/api/300000000"
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty: " + want)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxMixEntries {
		return nil, fmt.Errorf("%d entries: want at most %d", len(parts), MaxMixEntries)
	}
	var mix []MixEntry
	var percent, whole bool
	var sum float64
	seen := map[string]bool{}
	for i, part := range parts {
		part = strings.TrimSpace(part)
		ws, path, ok := strings.Cut(part, ":")
		ws = strings.TrimSpace(ws)
		path = strings.TrimSpace(path)
		if !ok || ws == "" || path == "" {
			return nil, fmt.Errorf("entry %d %q: %s", i+1, part, want)
		}
		var w float64
		if num, isPct := strings.CutSuffix(ws, "%"); isPct {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || !(f > 0) || f > 100 {
				return nil, fmt.Errorf("entry %d %q: weight %q, want a percentage above 0 and at most 100, such as 5%%", i+1, part, ws)
			}
			percent, w = true, f
		} else {
			n, err := strconv.ParseUint(ws, 10, 32)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("entry %d %q: weight %q, want a whole number of 1 or more, or a percentage such as 5%%", i+1, part, ws)
			}
			whole, w = true, float64(n)
		}
		if percent && whole {
			return nil, fmt.Errorf("entry %d %q: weights mix whole numbers and percentages: want one form throughout", i+1, part)
		}
		if _, err := parseMixPath(path); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if seen[path] {
			return nil, fmt.Errorf("entry %d: path %q given twice: give each path one weight", i+1, path)
		}
		seen[path] = true
		sum += w
		mix = append(mix, MixEntry{Path: path, Weight: w})
	}
	if percent && math.Abs(sum-100) > 1e-6 {
		return nil, fmt.Errorf("percentages sum to %s%%: want 100%%", strconv.FormatFloat(sum, 'f', -1, 64))
	}
	return mix, nil
}

// ParseURL parses a load-test target: http or https, with a host. An empty
// path becomes "/". The error is one line naming what is allowed.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("bad URL %q: want http:// or https:// and a host, e.g. %s", raw, DefaultURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("bad URL %q: port %q is not in 1-65535", raw, p)
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// buildRequest serializes the request once; workers write the same bytes
// for every request so that sending costs no allocation.
func buildRequest(c Config, u *url.URL) ([]byte, error) {
	host := u.Host
	agent := "herd-loadtest"
	var extra []string
	keys := make([]string, 0, len(c.Header))
	for k := range c.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable request makes captures comparable
	for _, k := range keys {
		if !isToken(k) {
			return nil, invalid("header name %q: want a token such as X-Request-Id", k)
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range c.Header[k] {
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, invalid("header %s: value contains a line break or NUL", ck)
			}
			switch ck {
			case "Host":
				host = v
				continue
			case "User-Agent":
				agent = v
				continue
			case "Content-Length", "Transfer-Encoding", "Connection":
				return nil, invalid("header %s is set by the load tester and cannot be given", ck)
			}
			extra = append(extra, ck+": "+strings.TrimSpace(v))
		}
	}
	if u.User != nil && c.Header.Get("Authorization") == "" {
		pw, _ := u.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pw))
		extra = append(extra, "Authorization: Basic "+cred)
	}

	var b strings.Builder
	b.WriteString(c.Method + " " + u.RequestURI() + " HTTP/1.1\r\n")
	b.WriteString("Host: " + host + "\r\n")
	b.WriteString("User-Agent: " + agent + "\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	switch c.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		b.WriteString("Content-Length: " + strconv.Itoa(len(c.Body)) + "\r\n")
	default:
		if len(c.Body) > 0 {
			b.WriteString("Content-Length: " + strconv.Itoa(len(c.Body)) + "\r\n")
		}
	}
	if c.DisableKeepAlive {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	b.Write(c.Body)
	return []byte(b.String()), nil
}

// isToken reports whether s is an RFC 9110 token (method, header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
