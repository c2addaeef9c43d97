// Command run is herd's benchmark driver, what `make bench` runs. It builds
// herd and bench/plain (one ordinary net/http process serving the same
// handlers), then, for several rounds, starts each contender in turn on a
// free loopback port, loads each route with wrk and herd loadtest, reads
// every process's RSS, and stops it. It prints a Markdown report of medians
// with min–max and the verdict on each performance target, and writes it to
// -out when given.
//
// It is not a test: nothing under `go test ./...` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the driver's flags.
type config struct {
	Rounds   int
	Duration time.Duration
	Warmup   time.Duration
	Conns    int
	Threads  int
	Workers  string
	Off      bool
	Quick    bool
	Out      string
	Wrk      string
	Singles  int
	Settle   time.Duration
	Procs    bool

	Balance     bool // also run the balancing section
	BalanceOnly bool // run only the balancing section
	Bal         balanceConfig

	Metrics     bool // also run the metrics section (metrics.go)
	MetricsOnly bool // run only the metrics section
	Met         metricsConfig
}

func main() {
	var cfg config
	flag.IntVar(&cfg.Rounds, "rounds", 3, "rounds; each runs every contender once, in a rotated order")
	flag.DurationVar(&cfg.Duration, "d", 5*time.Second, "duration of each wrk and herd loadtest run")
	flag.DurationVar(&cfg.Warmup, "warmup", time.Second, "wrk warm-up on / after each start (not recorded)")
	flag.IntVar(&cfg.Conns, "c", 64, "connections, for wrk and herd loadtest alike")
	flag.IntVar(&cfg.Threads, "t", 2, "wrk threads")
	flag.StringVar(&cfg.Workers, "workers", "1,2,N,2N", "herd worker counts to run; N is this machine's GOMAXPROCS")
	flag.BoolVar(&cfg.Off, "off", true, "also run herd serve --cluster off (herd's own single process)")
	flag.BoolVar(&cfg.Quick, "quick", false, "smoke run: 1 round of 1s runs (figures not meaningful)")
	flag.StringVar(&cfg.Out, "out", "", "also write the report to this file (e.g. BENCHMARKS.md)")
	flag.StringVar(&cfg.Wrk, "wrk", "wrk", "the wrk binary")
	flag.DurationVar(&cfg.Settle, "settle", 5*time.Second, "idle time after the load before RSS is read again")
	flag.BoolVar(&cfg.Procs, "gomaxprocs", true, "also run herd with N workers of GOMAXPROCS N each (oversubscribed), against the default")
	flag.IntVar(&cfg.Singles, "singles", 20, "sequential single requests to /api/10000000 per contender and round (the fastest counts)")
	flag.BoolVar(&cfg.Balance, "balance", true, "also run the balancing section (each --balance policy against plain net/http)")
	flag.BoolVar(&cfg.BalanceOnly, "balance-only", false, "run only the balancing section; with -out, replace that section of the file")
	flag.IntVar(&cfg.Bal.Rounds, "balance-rounds", 3, "balancing rounds")
	flag.IntVar(&cfg.Bal.Trials, "balance-trials", 7, "balancing: spread trials per connection count and round")
	flag.DurationVar(&cfg.Bal.Duration, "balance-d", 2*time.Second, "balancing: duration of each throughput and churn run")
	flag.IntVar(&cfg.Bal.Idle, "balance-idle", 5000, "balancing: idle keep-alive connections in the idle case")
	flag.IntVar(&cfg.Bal.Churn, "balance-churn", 50, "balancing: clients of the new-connection-per-request load")
	flag.StringVar(&cfg.Bal.Cases, "balance-cases", "all", "balancing: all, or a comma list of spread, keepalive, mixed, churn, idle (a partial run's table shows only what ran)")
	flag.StringVar(&cfg.Bal.Policies, "balance-policies", "auto,least-conn,shared,sticky", "balancing: the herd --balance policies to run, a comma list; off adds herd serve --cluster off (herd's stack in one process)")
	flag.BoolVar(&cfg.Bal.Node, "balance-node", true, "balancing: also run the Node cluster (examples/node/bin.js; needs node and npm ci there) where it applies")
	flag.BoolVar(&cfg.Metrics, "metrics", true, "also run the metrics section (metrics on against off; scrapes after many recycles)")
	flag.BoolVar(&cfg.MetricsOnly, "metrics-only", false, "run only the metrics section; with -out, replace that section of the file")
	defineMetricsFlags(&cfg.Met)
	flag.Parse()
	if cfg.Quick {
		cfg.Met = quickMetrics
		cfg.Bal = balanceConfig{Rounds: 1, Trials: 2, Duration: time.Second, Idle: 500, Churn: 20, Node: cfg.Bal.Node, Cases: cfg.Bal.Cases, Policies: cfg.Bal.Policies}
		cfg.Rounds, cfg.Duration, cfg.Warmup, cfg.Singles, cfg.Settle = 1, time.Second, 500*time.Millisecond, 5, 3*time.Second
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// route is one URL path under load.
type route struct {
	Name     string
	Path     string
	Shared   bool // the shared-state get: herd contenders only, set up first
	Loadtest bool // also measured with herd loadtest for the ratio to wrk
}

var routes = []route{
	{Name: "/", Path: "/", Loadtest: true},
	{Name: "/pid", Path: "/pid", Loadtest: true},
	{Name: "/api/1000", Path: "/api/1000"},
	{Name: "/api/10000000", Path: "/api/10000000"},
	{Name: "shared-state get", Path: "/cluster/shared-state/bench", Shared: true},
}

const sumN = 10_000_000 // the n of the single-request latency, /api/10000000

// sample is one route's figures for one contender in one round.
type sample struct {
	NA      string // why there is no figure (route unavailable)
	Wrk     wrkResult
	MaxRSS  int64   // the largest process's RSS after this route's load
	LT      float64 // herd loadtest requests/s, when measured
	LTRatio float64 // LT / Wrk.RPS
	LTFail  int64
	SrvCPU  float64 // cores the server's processes used during wrk's run
	WrkCPU  float64 // cores wrk used
}

// roundResult is one contender's figures in one round.
type roundResult struct {
	Routes    map[string]sample
	RSS       map[int]int64 // every process after all the load
	Settled   map[int]int64 // every process once idle for Cfg.Settle
	PrimaryID int
	Single    time.Duration // fastest /api/10000000 alone
	Procs     int           // GOMAXPROCS per worker from the primary's log; 0 if not logged
}

type results struct {
	Contenders []contender
	ByName     map[string][]roundResult
	Machine    machine
	LoadStart  string
	LoadRounds []string
	LoadEnd    string
	Cfg        config
	Started    time.Time
	Elapsed    time.Duration
}

func contenders(cfg config) ([]contender, error) {
	n := runtime.GOMAXPROCS(0)
	cs := []contender{{Name: "plain"}}
	if cfg.Off {
		cs = append(cs, contender{Name: "herd-off", Herd: true})
	}
	seen := map[int]bool{}
	for _, f := range strings.Split(cfg.Workers, ",") {
		f = strings.TrimSpace(f)
		var w int
		switch {
		case f == "N":
			w = n
		case strings.HasSuffix(f, "N"):
			k, err := strconv.Atoi(strings.TrimSuffix(f, "N"))
			if err != nil {
				return nil, fmt.Errorf("-workers: %q is not a count, N or kN", f)
			}
			w = k * n
		default:
			k, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("-workers: %q is not a count, N or kN", f)
			}
			w = k
		}
		if w < 1 {
			return nil, fmt.Errorf("-workers: %q must be at least 1", f)
		}
		if !seen[w] {
			seen[w] = true
			cs = append(cs, contender{Name: fmt.Sprintf("herd-%d", w), Herd: true, Workers: w})
		}
	}
	if cfg.Procs && n > 1 {
		cs = append(cs, contender{Name: fmt.Sprintf("herd-%d-gomaxprocs-%d", n, n), Herd: true, Workers: n, Procs: n})
	}
	return cs, nil
}

func run(ctx context.Context, cfg config) error {
	if cfg.Rounds < 1 || cfg.Duration < time.Second || cfg.Conns < 1 || cfg.Threads < 1 {
		return fmt.Errorf("-rounds, -c and -t must be at least 1 and -d at least 1s")
	}
	if _, err := exec.LookPath(cfg.Wrk); err != nil {
		return fmt.Errorf("wrk not found (apt-get install wrk, or make bench installs it): %w", err)
	}
	cs, err := contenders(cfg)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "herd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, work := filepath.Join(tmp, "bin"), filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	logf("building herd and plain into %s", bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "./cmd/herd", "./bench/plain")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}

	if cfg.MetricsOnly {
		report, err := runMetrics(ctx, cfg, cfg.Met, bin, work)
		if err != nil {
			return err
		}
		return writeSectionReport(cfg, metricsHeading, report)
	}
	if cfg.BalanceOnly {
		report, err := runBalance(ctx, cfg, cfg.Bal, bin, work)
		if err != nil {
			return err
		}
		return writeSectionReport(cfg, balanceHeading, report)
	}
	res := &results{Contenders: cs, ByName: map[string][]roundResult{}, Machine: readMachine(cfg.Wrk),
		LoadStart: loadavg(), Cfg: cfg, Started: time.Now()}
	for r := 0; r < cfg.Rounds; r++ {
		res.LoadRounds = append(res.LoadRounds, loadavg())
		for i := range cs {
			c := cs[(i+r)%len(cs)] // rotate so no contender always runs first or last
			logf("round %d/%d: %s (load average %s)", r+1, cfg.Rounds, c.Name, loadavg())
			rr, err := measure(ctx, cfg, c, bin, work)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, c.Name, err)
			}
			res.ByName[c.Name] = append(res.ByName[c.Name], rr)
		}
	}
	res.LoadEnd = loadavg()
	res.Elapsed = time.Since(res.Started)

	report := render(res)
	if cfg.Balance {
		bal, err := runBalance(ctx, cfg, cfg.Bal, bin, work)
		if err != nil {
			return err
		}
		report += "\n" + bal
	}
	if cfg.Metrics {
		met, err := runMetrics(ctx, cfg, cfg.Met, bin, work)
		if err != nil {
			return err
		}
		report += "\n" + met
	}
	return writeReport(cfg, report)
}

func writeReport(cfg config, report string) error {
	fmt.Print(report)
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, []byte(report), 0o644); err != nil {
			return err
		}
		logf("wrote %s", cfg.Out)
	}
	return nil
}

// measure starts c, loads every route, reads RSS and stops c.
func measure(ctx context.Context, cfg config, c contender, bin, work string) (rr roundResult, err error) {
	s, err := start(ctx, c, bin, work)
	if err != nil {
		return rr, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	rr = roundResult{Routes: map[string]sample{}, PrimaryID: s.cmd.Process.Pid}
	if _, _, err := runWrk(ctx, cfg, cfg.Warmup, s.url("/")); err != nil {
		return rr, fmt.Errorf("warm-up: %w", err)
	}
	for _, rt := range routes {
		var sm sample
		if rt.Shared {
			if !c.Herd {
				continue
			}
			if why := setupShared(ctx, s); why != "" {
				rr.Routes[rt.Name] = sample{NA: why}
				logf("  %-16s n/a: %s", rt.Name, why)
				continue
			}
		}
		cpu0, t0 := s.cpu(ctx), time.Now()
		w, wrkCPU, err := runWrk(ctx, cfg, cfg.Duration, s.url(rt.Path))
		if err != nil {
			return rr, fmt.Errorf("%s: %w", rt.Name, err)
		}
		wall := time.Since(t0).Seconds()
		sm.Wrk = w
		sm.SrvCPU = cpuSince(cpu0, s.cpu(ctx)).Seconds() / wall
		sm.WrkCPU = wrkCPU.Seconds() / wall
		if rt.Loadtest {
			lt, err := runLoadtest(ctx, cfg, bin, s.url(rt.Path))
			if err != nil {
				return rr, fmt.Errorf("%s: %w", rt.Name, err)
			}
			sm.LT, sm.LTRatio, sm.LTFail = lt.RPS, lt.RPS/w.RPS, lt.Failed
		}
		rss, err := s.rss(ctx)
		if err != nil {
			return rr, err
		}
		for _, v := range rss {
			sm.MaxRSS = max(sm.MaxRSS, v)
		}
		rr.Routes[rt.Name] = sm
		extra := ""
		if rt.Loadtest {
			extra = fmt.Sprintf(" · loadtest %.0f req/s (%.2f× wrk)", sm.LT, sm.LTRatio)
		}
		logf("  %-16s %9.0f req/s  p50 %-8s p99 %-8s CPU server %.2f wrk %.2f  max RSS %.1f MB%s", rt.Name, w.RPS,
			fDur(float64(w.P50)), fDur(float64(w.P99)), sm.SrvCPU, sm.WrkCPU, mb(sm.MaxRSS), extra)
	}
	if rr.RSS, err = s.rss(ctx); err != nil {
		return rr, err
	}
	if rr.Single, err = single(ctx, s, cfg.Singles); err != nil {
		return rr, err
	}
	s.mu.Lock()
	rr.Procs = s.procs
	s.mu.Unlock()
	select {
	case <-ctx.Done():
		return rr, ctx.Err()
	case <-time.After(cfg.Settle):
	}
	rr.Settled, err = s.rss(ctx)
	return rr, err
}

// setupShared writes the key the shared-state route reads; it returns why
// the route cannot be measured, or "".
func setupShared(ctx context.Context, s *server) string {
	code, err := post(ctx, s.url("/cluster/shared-state"), `{"key":"bench","value":1}`)
	if err != nil {
		return "POST /cluster/shared-state: " + err.Error()
	}
	if code != 200 && code != 201 {
		return fmt.Sprintf("POST /cluster/shared-state answered %d (store not configured in serve)", code)
	}
	code, _, err = get(ctx, s.url("/cluster/shared-state/bench"))
	if err != nil || code != 200 {
		return fmt.Sprintf("GET /cluster/shared-state/bench answered %d %v", code, err)
	}
	return ""
}

// runWrk loads url for d and returns wrk's figures and the CPU time wrk used.
func runWrk(ctx context.Context, cfg config, d time.Duration, url string) (wrkResult, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.Wrk, "-t"+strconv.Itoa(cfg.Threads), "-c"+strconv.Itoa(cfg.Conns),
		"-d"+strconv.Itoa(int(d.Round(time.Second)/time.Second))+"s", "--timeout", "10s", "--latency", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	var used time.Duration
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		used = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r, err := parseWrk(string(out))
	return r, used, err
}

func runLoadtest(ctx context.Context, cfg config, bin, url string) (loadtestResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "herd"), "loadtest", url,
		"-c", strconv.Itoa(cfg.Conns), "-d", cfg.Duration.String(), "--json", "--allow-errors")
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		return loadtestResult{}, fmt.Errorf("herd loadtest: %w: %s", err, out)
	}
	return parseLoadtest(out)
}

// single returns the fastest of n sequential /api/10000000 requests on an
// otherwise idle server: the loop's own speed, as free of queueing as this
// shared machine allows.
func single(ctx context.Context, s *server, n int) (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	for i := 0; i <= n; i++ { // the first one warms the connection
		t0 := time.Now()
		code, _, err := get(ctx, s.url("/api/"+strconv.Itoa(sumN)))
		d := time.Since(t0)
		if err != nil || code != 200 {
			return 0, fmt.Errorf("single /api/%d: %d %v", sumN, code, err) //nolint:errorlint // err is nil when only the status is wrong
		}
		if i > 0 {
			best = min(best, d)
		}
	}
	return best, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
