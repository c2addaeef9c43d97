package loadtest

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
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
}

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
	req        []byte // the serialized request, sent as is every time
	head       bool   // HEAD responses carry no body
	idempotent bool   // safe to resend on a stale keep-alive connection
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
		return nil, fmt.Errorf("loadtest: %w: %v", ErrInvalidConfig, err)
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
	return t, nil
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
