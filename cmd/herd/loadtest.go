package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/loadtest"
)

const loadtestUsage = `Usage: herd loadtest [URL] [flags]

Sends closed-loop HTTP load to URL (default ` + loadtest.DefaultURL + `, or the
port and host set by PORT and HOST in the environment or .env) and reports
latency, requests/s (succeeded requests only), errors (the server's apart
from this machine's) and the spread over the server's workers (X-Worker-Id):
balanced when every worker served within ±10% of the mean share.
Flags may come before or after the URL.

  -c N             concurrent connections, each sending back to back (default 100)
  -n N             total requests (cannot be combined with -d)
  -d DURATION      run for this long, e.g. 30s (default 10s when -n is not given)
  -m METHOD        request method (default GET)
  -b BODY          request body
  -H "Name: value" request header; repeatable
  --timeout D      per-request timeout (default 10s)
  --no-keepalive   a new connection for every request; the server is left to
                   close first (or the client resets), so that this machine
                   does not run out of ports
  --mix SPEC       a weighted mix of paths relative to URL, e.g.
                   '95:/,5:/api/300000000' (or '95%:/,5%:/api/300000000');
                   the report gives each kind's rate, errors and latency
  --seed N         the seed of the mix's random sequence (default 0): the
                   same seed sends the same sequence of kinds
  --insecure       do not verify https certificates
  --json           print one JSON document instead of the text report
  --allow-errors   exit 0 even when requests failed

Exit status: 0 all requests succeeded (2xx), 1 some failed (or all of them,
even with --allow-errors), 2 bad usage.
Ctrl-C stops the run early and still prints the report.
`

// headerFlag collects repeated -H "Name: value" flags.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return errors.New(`want "Name: value"`)
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

// durationFlag is flag.Duration with an error that says what is allowed.
type durationFlag struct{ d time.Duration }

func (f *durationFlag) String() string { return f.d.String() }

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 500ms, 10s or 1m30s")
	}
	f.d = d
	return nil
}

// cmdLoadtest runs "herd loadtest". It returns exitOK, exitFail when a
// request failed (unless --allow-errors), or exitUsage after one line on
// stderr. An interrupt (SIGINT) or the end of ctx stops the run early and
// the report of what was done is still printed.
func cmdLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return loadtestWith(ctx, args, stdout, stderr, isTerminal)
}

// loadtestWith is cmdLoadtest with the terminal check given, so that a
// test can say which stream is a terminal.
func loadtestWith(ctx context.Context, args []string, stdout, stderr io.Writer, isTerminal func(io.Writer) bool) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "herd loadtest: "+format+"\n", a...)
		return exitUsage
	}

	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	conc := fs.Int("c", loadtest.DefaultConcurrency, "")
	count := fs.Int64("n", 0, "")
	dur := &durationFlag{}
	fs.Var(dur, "d", "")
	method := fs.String("m", loadtest.DefaultMethod, "")
	body := fs.String("b", "", "")
	headers := &headerFlag{}
	fs.Var(headers, "H", "")
	timeout := &durationFlag{d: loadtest.DefaultTimeout}
	fs.Var(timeout, "timeout", "")
	noKeepAlive := fs.Bool("no-keepalive", false, "")
	insecure := fs.Bool("insecure", false, "")
	jsonOut := fs.Bool("json", false, "")
	allowErrors := fs.Bool("allow-errors", false, "")
	mixSpec := fs.String("mix", "", "")
	seed := fs.Uint64("seed", 0, "")

	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, loadtestUsage)
		return exitOK
	}
	if err != nil {
		// flag's "parse error" says nothing of what is allowed.
		msg := strings.Replace(err.Error(), ": parse error", ": want a whole number", 1)
		return usage("%s (see herd loadtest -h)", msg)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var target string
	switch len(pos) {
	case 0:
		// The server serve would run here: PORT and HOST from the
		// environment or .env, as serve reads them.
		settings, _, err := loadSettings(flag.NewFlagSet("loadtest", flag.ContinueOnError), pick("port", "host"), nil, osSources)
		if err != nil {
			return usage("%v", err)
		}
		addr, err := localAddr(settings)
		if err != nil {
			return usage("%v (or give the URL)", err)
		}
		target = "http://" + addr + "/"
	case 1:
		target = pos[0]
	default:
		return usage("too many arguments %q: want at most one URL", pos)
	}
	if _, err := loadtest.ParseURL(target); err != nil {
		return usage("%v", err)
	}
	switch {
	case *conc < 1:
		return usage("-c %d: want 1 or more concurrent connections", *conc)
	case set["n"] && *count < 1:
		return usage("-n %d: want 1 or more requests", *count)
	case set["d"] && dur.d <= 0:
		return usage("-d %v: want a duration above 0, such as 10s", dur.d)
	case set["n"] && set["d"]:
		return usage("-n and -d both given: want one of them, a request count or a duration")
	case timeout.d <= 0:
		return usage("--timeout %v: want a duration above 0, such as 10s", timeout.d)
	case set["seed"] && !set["mix"]:
		return usage("--seed without --mix: the seed chooses the mix's sequence of kinds")
	}
	var mix []loadtest.MixEntry
	if set["mix"] {
		if mix, err = loadtest.ParseMix(*mixSpec); err != nil {
			return usage("--mix %q: %v", *mixSpec, err)
		}
	}

	cfg := loadtest.Config{
		URL:              target,
		Concurrency:      *conc,
		Requests:         *count,
		Duration:         dur.d,
		Method:           *method,
		Header:           headers.h,
		Timeout:          timeout.d,
		DisableKeepAlive: *noKeepAlive,
		Mix:              mix,
		Seed:             *seed,
	}
	if *body != "" {
		cfg.Body = []byte(*body)
	}
	if *insecure {
		cfg.TLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // G402: only with the user's explicit --insecure
	}
	if err := cfg.Validate(); err != nil {
		return usage("%s", strings.TrimPrefix(err.Error(), "loadtest: invalid config: "))
	}

	// Each decoration is decided on the stream it is drawn on: the bar on
	// stderr, the histogram on stdout. "herd loadtest > out.txt" in a
	// terminal still shows the bar and keeps the file clean.
	var progress func(loadtest.Progress)
	var bar *loadtest.ProgressBar
	if isTerminal(stderr) {
		bar = loadtest.NewProgressBar(stderr)
		progress = bar.Update
	}

	// Ctrl-C ends the run, not the process: the report of what was done is
	// the point. Restored right after, so a second Ctrl-C while printing
	// kills as usual.
	runCtx, stop := signal.NotifyContext(ctx, os.Interrupt)
	res, err := loadtest.Run(runCtx, cfg, progress)
	stop()
	if bar != nil {
		bar.Clear()
	}
	if err != nil {
		fmt.Fprintf(stderr, "herd %v\n", err)
		return exitFail
	}

	if *jsonOut {
		b, err := res.JSON()
		if err != nil {
			fmt.Fprintf(stderr, "herd loadtest: %v\n", err)
			return exitFail
		}
		stdout.Write(b)
	} else if err := res.WriteText(stdout, isTerminal(stdout)); err != nil {
		fmt.Fprintf(stderr, "herd loadtest: %v\n", err)
		return exitFail
	}

	return loadtestExit(res, *allowErrors, stderr)
}

// loadtestExit says on stderr how many requests failed and whose failures
// they were, and returns the exit code: exitFail when any failed (unless
// allowErrors), and always when every request failed, for then nothing was
// measured.
func loadtestExit(res *loadtest.Result, allowErrors bool, stderr io.Writer) int {
	failed := res.Failed()
	if failed == 0 || (allowErrors && !res.AllFailed()) {
		return exitOK
	}
	whose := ""
	if c := res.Errors.Client; c > 0 {
		whose = fmt.Sprintf(", %d of them on this machine (out of ports, descriptors or memory), not the server's", c)
	}
	if res.AllFailed() {
		fmt.Fprintf(stderr, "herd loadtest: all %d requests failed%s: nothing was measured\n", res.Requests, whose)
		return exitFail
	}
	fmt.Fprintf(stderr, "herd loadtest: %d of %d requests failed%s (--allow-errors to exit 0 anyway)\n", failed, res.Requests, whose)
	return exitFail
}

// isTerminal reports whether w is a terminal: an *os.File on which the
// terminal ioctl TIOCGWINSZ succeeds. A character device such as /dev/null
// fails it (ENOTTY), as do files and pipes. TIOCGWINSZ rather than the
// termios request because it has one name on every Unix, so this file needs
// no build constraint. The descriptor is used through SyscallConn, which
// leaves its blocking mode alone.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		_, ioctlErr = unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ)
	}); err != nil {
		return false
	}
	return ioctlErr == nil
}
