package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herd-go/herd/internal/procstat"
)

// The metrics section (-metrics): what herd's metrics cost, the targets of
// issue 10. Throughput on / with metrics on (the default) against the same
// herd with METRICS=false, wrk alternating between the two; and /metrics
// scraped on a herd of many workers after thousands of real recycles
// (MAX_REQUESTS=1 and a load of new connections), with the primary's memory
// read before and after. Settings reach herd through a .env file in its
// working directory, so the launcher starts it as every other contender.

// metricsHeading is the section's title; -metrics-only -out replaces the
// section under it.
const metricsHeading = "Cost of metrics (issue 10)"

// Targets from issue 10.
const (
	metricsRatioTarget = 0.97                  // req/s with metrics ≥ this × without
	scrapeP99Target    = 50 * time.Millisecond // scrape p99 with many workers after many recycles
	memFlatSlack       = 0.10                  // "flat": the end within 10% (+1 MB) of the halfway figure
)

// metricsConfig bounds the section.
type metricsConfig struct {
	Rounds     int           // throughput rounds; each starts both servers
	Duration   time.Duration // each wrk run
	Conns      string        // wrk connection counts: numbers, N or kN
	Workers    int           // workers of the scrape case
	Recycles   int           // recycles to reach before the scrapes
	RecycleMax time.Duration // give up recycling after this long (the count reached is reported)
	Scrapes    int           // timed scrapes before and after the recycles
	Clients    int           // clients of the recycling load (a new connection per request)
	Settle     time.Duration // idle time before the primary's memory is read
}

func defineMetricsFlags(mc *metricsConfig) {
	flag.IntVar(&mc.Rounds, "metrics-rounds", 5, "metrics: throughput rounds, metrics on and off alternating")
	flag.DurationVar(&mc.Duration, "metrics-d", 5*time.Second, "metrics: duration of each wrk run")
	flag.StringVar(&mc.Conns, "metrics-c", "2N,64", "metrics: wrk connection counts (N is GOMAXPROCS)")
	flag.IntVar(&mc.Workers, "metrics-workers", 64, "metrics: workers of the scrape case")
	flag.IntVar(&mc.Recycles, "metrics-recycles", 10000, "metrics: worker recycles before the scrapes")
	flag.DurationVar(&mc.RecycleMax, "metrics-recycle-max", 15*time.Minute, "metrics: stop recycling after this long, whatever the count")
	flag.IntVar(&mc.Scrapes, "metrics-scrapes", 300, "metrics: timed scrapes of /metrics, before and after the recycles")
	flag.IntVar(&mc.Clients, "metrics-clients", 16, "metrics: clients of the recycling load")
	flag.DurationVar(&mc.Settle, "metrics-settle", 3*time.Second, "metrics: idle time before the primary's memory is read")
}

// quickMetrics is -quick's smoke-run size.
var quickMetrics = metricsConfig{Rounds: 1, Duration: time.Second, Conns: "2N", Workers: 16, Recycles: 100,
	RecycleMax: time.Minute, Scrapes: 30, Clients: 8, Settle: time.Second}

// memFigures is the primary's memory at one point.
type memFigures struct {
	At       int   // recycles counted then
	RSS, Ann int64 // VmRSS and RssAnon (heap, stacks: the part that would grow)
}

// scrapeFigures are the timings of a series of scrapes.
type scrapeFigures struct {
	N             int
	P50, P99, Max time.Duration
	Bytes, Series int
	Failed        int
}

type metricsResult struct {
	Conns      []int
	On, Off    map[int][]wrkResult // by connections, one per round
	OnCPU      map[int][]float64   // requests per server CPU-second, by connections
	OffCPU     map[int][]float64
	Scrape     scrapeDetails
	Machine    machine
	Load0      string
	LoadThr    string // after the throughput part
	Load1      string
	Started    time.Time
	ThrTook    time.Duration
	ScrapeTook time.Duration
}

type scrapeDetails struct {
	Workers         int
	Recycled        int // restarts with reason recycled-requests when the recycling load stopped
	RecycledEnd     int // and after the last scrapes (light load recycles too)
	RecycleTook     time.Duration
	LoadRequests    int64
	LoadFailed      int64
	Before, After   scrapeFigures
	During          scrapeFigures // the 1 s polls while recycling
	Start, Warm     memFigures    // Warm: halfway through the recycles
	End             memFigures
	Series          []memFigures // unsettled, at each tenth of the recycles
	LightRPS        float64
	LightFailed     int64
	ReachedByMaxDur bool
}

// runMetrics runs the section and returns its Markdown.
func runMetrics(ctx context.Context, cfg config, mc metricsConfig, bin, work string) (string, error) {
	if mc.Rounds < 1 || mc.Duration < time.Second || mc.Workers < 1 || mc.Recycles < 1 || mc.Scrapes < 1 || mc.Clients < 1 {
		return "", errors.New("-metrics-rounds, -metrics-workers, -metrics-recycles, -metrics-scrapes and -metrics-clients must be at least 1 and -metrics-d at least 1s")
	}
	n := runtime.GOMAXPROCS(0)
	conns, err := connCounts(mc.Conns, n)
	if err != nil {
		return "", err
	}
	res := &metricsResult{Conns: conns, On: map[int][]wrkResult{}, Off: map[int][]wrkResult{}, OnCPU: map[int][]float64{}, OffCPU: map[int][]float64{},
		Machine: readMachine(cfg.Wrk), Load0: loadavg(), Started: time.Now()}
	dirOn, err := envDir(work, "metrics-on", "METRICS=true\n")
	if err != nil {
		return "", err
	}
	dirOff, err := envDir(work, "metrics-off", "METRICS=false\n")
	if err != nil {
		return "", err
	}
	dirRecycle, err := envDir(work, "metrics-recycle", "MAX_REQUESTS=1\n")
	if err != nil {
		return "", err
	}
	for r := 0; r < mc.Rounds; r++ {
		logf("metrics round %d/%d (load average %s)", r+1, mc.Rounds, loadavg())
		if err := metricsRound(ctx, cfg, mc, res, r, n, bin, dirOn, dirOff); err != nil {
			return "", fmt.Errorf("metrics round %d: %w", r+1, err)
		}
	}
	res.ThrTook, res.LoadThr = time.Since(res.Started), loadavg()
	t0 := time.Now()
	if res.Scrape, err = scrapeCase(ctx, mc, bin, dirRecycle); err != nil {
		return "", fmt.Errorf("metrics scrape case: %w", err)
	}
	res.ScrapeTook, res.Load1 = time.Since(t0), loadavg()
	return renderMetrics(res, mc, n), nil
}

// envDir makes a working directory whose .env holds env.
func envDir(work, name, env string) (string, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o644)
}

// connCounts parses a list such as "2N,64".
func connCounts(list string, n int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		k, mult := f, 1
		if strings.HasSuffix(f, "N") {
			k, mult = strings.TrimSuffix(f, "N"), n
			if k == "" {
				k = "1"
			}
		}
		v, err := strconv.Atoi(k)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-metrics-c: %q is not a count, N or kN", f)
		}
		if !slices.Contains(out, v*mult) {
			out = append(out, v*mult)
		}
	}
	return out, nil
}

// metricsRound starts herd with metrics on and off side by side, checks
// that each is what it claims (an admin listener or none), and runs wrk
// against them in turn for each connection count, the order alternating.
func metricsRound(ctx context.Context, cfg config, mc metricsConfig, res *metricsResult, r, n int, bin, dirOn, dirOff string) (err error) {
	type side struct {
		on  bool
		dir string
		s   *server
	}
	sides := []*side{{on: true, dir: dirOn}, {on: false, dir: dirOff}}
	if r%2 == 1 {
		sides[0], sides[1] = sides[1], sides[0]
	}
	defer func() {
		for _, sd := range sides {
			if sd.s != nil {
				if serr := sd.s.stop(); serr != nil && err == nil {
					err = serr
				}
			}
		}
	}()
	for _, sd := range sides {
		name := "herd-" + strconv.Itoa(n) + " metrics off"
		if sd.on {
			name = "herd-" + strconv.Itoa(n) + " metrics on"
		}
		if sd.s, err = start(ctx, contender{Name: name, Herd: true, Workers: n}, bin, sd.dir); err != nil {
			return err
		}
		admin, err := adminAddr(ctx, sd.s, sd.on)
		if err != nil {
			return err
		}
		if sd.on != (admin != "") {
			return fmt.Errorf("%s: admin listener %q: METRICS in %s/.env did not take", name, admin, sd.dir)
		}
		if _, _, err := runWrk(ctx, cfg, time.Second, sd.s.url("/")); err != nil {
			return fmt.Errorf("%s: warm-up: %w", name, err)
		}
	}
	for i, c := range res.Conns {
		order := []*side{sides[0], sides[1]}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, sd := range order {
			wc := cfg
			wc.Conns, wc.Threads = c, min(c, cfg.Threads)
			cpu0 := sd.s.cpu(ctx)
			w, _, err := runWrk(ctx, wc, mc.Duration, sd.s.url("/"))
			if err != nil {
				return err
			}
			srvCPU := cpuSince(cpu0, sd.s.cpu(ctx)).Seconds()
			perCPU := 0.0
			if srvCPU > 0 {
				perCPU = float64(w.Requests) / srvCPU
			}
			if w.Non2xx > 0 || w.SocketErrors > 0 {
				return fmt.Errorf("%s c=%d: %d non-2xx answers, %d socket errors", sd.s.c.Name, c, w.Non2xx, w.SocketErrors)
			}
			if sd.on {
				res.On[c] = append(res.On[c], w)
				res.OnCPU[c] = append(res.OnCPU[c], perCPU)
			} else {
				res.Off[c] = append(res.Off[c], w)
				res.OffCPU[c] = append(res.OffCPU[c], perCPU)
			}
			logf("  %-22s c=%-3d %9.0f req/s  %6.0f req per server CPU-s  p50 %-8s p99 %s", sd.s.c.Name, c, w.RPS, perCPU, fDur(float64(w.P50)), fDur(float64(w.P99)))
		}
	}
	return nil
}

// adminAddr asks the server, through its control socket (the launcher's
// admin client), where its admin listener is. With want set it waits up to
// 10 s for the address to appear (the listener starts in the background).
func adminAddr(ctx context.Context, s *server, want bool) (string, error) {
	if s.herd == nil || s.herd.Client == nil {
		return "", fmt.Errorf("%s has no control socket", s.c.Name)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.herd.Client.Status(ctx)
		if err != nil {
			return "", fmt.Errorf("%s: status: %w", s.c.Name, err)
		}
		if st.AdminAddr != "" || !want || time.Now().After(deadline) {
			return st.AdminAddr, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scrapeCase runs the scrape case: mc.Workers workers that recycle after
// every request, driven through mc.Recycles recycles by a load of new
// connections, with timed scrapes before and after and the primary's
// memory read along the way.
func scrapeCase(ctx context.Context, mc metricsConfig, bin, dir string) (d scrapeDetails, err error) {
	d.Workers = mc.Workers
	logf("metrics scrape case: herd-%d recycling after every request (load average %s)", mc.Workers, loadavg())
	s, err := start(ctx, contender{Name: fmt.Sprintf("herd-%d recycling", mc.Workers), Herd: true, Workers: mc.Workers}, bin, dir)
	if err != nil {
		return d, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	admin, err := adminAddr(ctx, s, true)
	if err != nil {
		return d, err
	}
	if admin == "" {
		return d, errors.New("no admin listener within 10 s")
	}
	metricsURL := "http://" + admin + "/metrics"
	scraper := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer scraper.CloseIdleConnections()
	pid := s.cmd.Process.Pid
	recycled := func() (int, error) {
		n, _, err := scrapeOnce(ctx, scraper, metricsURL)
		return n, err
	}

	if d.Start, err = settledMem(ctx, mc.Settle, pid, recycled); err != nil {
		return d, err
	}
	logf("  start: primary RSS %.1f MB (anonymous %.1f MB), %d recycled", mb(d.Start.RSS), mb(d.Start.Ann), d.Start.At)
	if d.Before, _, _, err = timedScrapes(ctx, scraper, metricsURL, s, mc.Scrapes); err != nil {
		return d, err
	}
	logf("  %d scrapes before: p50 %s p99 %s max %s, %d bytes", d.Before.N, fDur(float64(d.Before.P50)), fDur(float64(d.Before.P99)), fDur(float64(d.Before.Max)), d.Before.Bytes)

	// Recycle: half first (the primary's memory then is the halfway
	// figure), then the rest: memory that grew with recycles would grow
	// as much again in the second half.
	t0 := time.Now()
	deadline := t0.Add(mc.RecycleMax)
	var polls []time.Duration
	recycle := func(target int) (memFigures, error) {
		n, reqs, failed, ps, err := recycleTo(ctx, s.addr, scraper, metricsURL, mc.Clients, target, deadline, pid, mc.Recycles, &d.Series)
		polls = append(polls, ps...)
		d.LoadRequests += reqs
		d.LoadFailed += failed
		d.Recycled = n
		if err != nil {
			return memFigures{}, err
		}
		if n < target {
			d.ReachedByMaxDur = true
			logf("  recycling stopped after %s at %d of %d recycles (-metrics-recycle-max)", mc.RecycleMax, n, mc.Recycles)
		}
		return settledMem(ctx, mc.Settle, pid, recycled)
	}
	if d.Warm, err = recycle(max(mc.Recycles/2, 1)); err != nil {
		return d, err
	}
	logf("  halfway (%d recycled): primary RSS %.1f MB (anonymous %.1f MB)", d.Warm.At, mb(d.Warm.RSS), mb(d.Warm.Ann))
	d.End = d.Warm
	if !d.ReachedByMaxDur {
		if d.End, err = recycle(mc.Recycles); err != nil {
			return d, err
		}
	}
	d.RecycleTook = time.Since(t0)
	d.During = figuresOf(polls, 0, 0, 0)
	logf("  end (%d recycled in %s, %d requests, %d failed): primary RSS %.1f MB (anonymous %.1f MB)",
		d.End.At, d.RecycleTook.Round(time.Second), d.LoadRequests, d.LoadFailed, mb(d.End.RSS), mb(d.End.Ann))
	if d.After, d.LightRPS, d.LightFailed, err = timedScrapes(ctx, scraper, metricsURL, s, mc.Scrapes); err != nil {
		return d, err
	}
	if d.RecycledEnd, err = recycled(); err != nil {
		return d, err
	}
	logf("  %d scrapes after: p50 %s p99 %s max %s, %d bytes, %d series", d.After.N, fDur(float64(d.After.P50)), fDur(float64(d.After.P99)), fDur(float64(d.After.Max)), d.After.Bytes, d.After.Series)
	return d, nil
}

// settledMem waits settle with no load, then reads the primary's memory.
func settledMem(ctx context.Context, settle time.Duration, pid int, recycled func() (int, error)) (memFigures, error) {
	select {
	case <-ctx.Done():
		return memFigures{}, ctx.Err()
	case <-time.After(settle):
	}
	m, err := readMem(pid)
	if err != nil {
		return m, err
	}
	m.At, err = recycled()
	return m, err
}

// readMem reads VmRSS and RssAnon from /proc/PID/status.
func readMem(pid int) (memFigures, error) {
	var m memFigures
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, fmt.Errorf("primary memory: %w", err)
	}
	if m.RSS, err = procstat.ParseVmRSS(string(b)); err != nil {
		return m, fmt.Errorf("primary memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return m, fmt.Errorf("primary memory: RssAnon %q: %w", v, err)
			}
			m.Ann = kb << 10
		}
	}
	return m, nil
}

// scrapeOnce GETs /metrics and returns the recycles it counts
// (herd_worker_restarts_total with reason recycled-requests) and how long
// the answer took (not counting the parsing here).
func scrapeOnce(ctx context.Context, c *http.Client, url string) (int, time.Duration, error) {
	body, took, err := fetchMetrics(ctx, c, url)
	if err != nil {
		return 0, took, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, took, fmt.Errorf("parsing /metrics: %w", err)
	}
	var n float64
	if f := fams["herd_worker_restarts_total"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "recycled-requests" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n), took, nil
}

// fetchMetrics GETs url and returns the body and how long the whole
// answer took.
func fetchMetrics(ctx context.Context, c *http.Client, url string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(t0)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		return nil, took, fmt.Errorf("scrape: %w", err)
	}
	return body, took, nil
}

// timedScrapes scrapes n times one after the other, with a keep-alive
// connection as Prometheus keeps one, while a light load (two keep-alive
// clients, 100 requests/s each) runs on /. It returns the scrapes' figures
// and the light load's requests/s and failures.
func timedScrapes(ctx context.Context, c *http.Client, url string, s *server, n int) (scrapeFigures, float64, int64, error) {
	lctx, stop := context.WithCancel(ctx)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-lctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(lctx, http.MethodGet, s.url("/"), nil)
				resp, err := client.Do(req)
				if err != nil {
					if lctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	var took []time.Duration
	var size, series, bad int
	var err error
	for i := 0; i < n && err == nil; i++ {
		var body []byte
		var d time.Duration
		body, d, err = fetchMetrics(ctx, c, url)
		if err != nil {
			bad++
			break
		}
		took = append(took, d)
		size = len(body)
		series = 0
		for _, line := range bytes.Split(body, []byte("\n")) {
			if len(line) > 0 && line[0] != '#' {
				series++
			}
		}
	}
	stop()
	wg.Wait()
	return figuresOf(took, size, series, bad), float64(ok.Load()) / time.Since(t0).Seconds(), failed.Load(), err
}

func figuresOf(took []time.Duration, size, series, failed int) scrapeFigures {
	f := scrapeFigures{N: len(took), Bytes: size, Series: series, Failed: failed}
	if len(took) == 0 {
		return f
	}
	s := slices.Clone(took)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	f.P50, f.P99, f.Max = q(0.50), q(0.99), s[len(s)-1]
	return f
}

// recycleTo runs the recycling load (clients each opening a connection
// per request, so that every worker gets requests whatever the balancing)
// until the recycled-requests restarts reach target or deadline passes,
// polling /metrics once a second. It appends the primary's memory at each
// tenth of total to series, and returns the recycles counted, the
// requests answered and failed, and how long each poll took.
func recycleTo(ctx context.Context, addr string, scraper *http.Client, url string, clients, target int, deadline time.Time,
	pid, total int, series *[]memFigures) (int, int64, int64, []time.Duration, error) {
	lctx, stop := context.WithCancel(ctx)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }() // on every return: no client outlives the call
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					_, err = request(c, bufio.NewReader(c), "/")
					closeNow(c)
				}
				switch {
				case err == nil:
					ok.Add(1)
				case lctx.Err() == nil:
					failed.Add(1)
				}
			}
		}()
	}
	var polls []time.Duration
	step := max(total/10, 1)
	next := step
	if k := len(*series); k > 0 {
		next = ((*series)[k-1].At/step + 1) * step
	}
	for {
		select {
		case <-ctx.Done():
			return 0, ok.Load(), failed.Load(), polls, ctx.Err()
		case <-time.After(time.Second):
		}
		n, took, err := scrapeOnce(ctx, scraper, url)
		polls = append(polls, took)
		if err != nil {
			return 0, ok.Load(), failed.Load(), polls, err
		}
		if n >= next && next <= total {
			if m, err := readMem(pid); err == nil {
				m.At = n
				*series = append(*series, m)
				logf("  %d recycled: primary RSS %.1f MB (anonymous %.1f MB), load average %s", n, mb(m.RSS), mb(m.Ann), loadavg())
			}
			for next <= n {
				next += step
			}
		}
		if n >= target || time.Now().After(deadline) {
			stop()
			wg.Wait()
			return n, ok.Load(), failed.Load(), polls, nil
		}
	}
}

func renderMetrics(res *metricsResult, mc metricsConfig, n int) string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	m := res.Machine
	p("## %s\n\n", metricsHeading)
	p("`go run ./bench/run -metrics-only -out BENCHMARKS.md` (part of `make bench`; on its own it replaces this section of the file) on %s UTC. "+
		"Machine: %d cores (%s), Linux %s, %s; load average %s at the start, %s after the throughput part, %s at the end.\n\n",
		res.Started.UTC().Format("2006-01-02 15:04"), m.Cores, m.CPU.Model, m.Kernel, m.Go, res.Load0, res.LoadThr, res.Load1)

	p("### Throughput on `/`, metrics on against off\n\n")
	p("Two herds with %d workers (this machine's GOMAXPROCS) run side by side: one as shipped (metrics on: every request counted by route, "+
		"status class and latency; the admin listener serving `/metrics` and the dashboard), one with `METRICS=false` (no per-request "+
		"instrumentation, no admin listener). Each round starts both (which one first alternates), warms each with 1 s of wrk, then for each "+
		"connection count runs `wrk -c C -d %v` (keep-alive) on one and right after on the other, the order alternating between counts. "+
		"%d rounds in %s; figures are medians with (min–max); the ratio is of the medians, and in brackets the range of the per-round ratios "+
		"(each round's two runs ran back to back). Requests per server CPU-second (all of herd's processes, primary included, from /proc) "+
		"is what a request costs whatever share of the machine the server got: on a shared machine it is the steadier figure.\n\n",
		n, mc.Duration, mc.Rounds, res.ThrTook.Round(time.Second))
	p("| connections | req/s metrics on | req/s metrics off | on / off | p99 on | p99 off | req per server CPU-s on | off | on / off |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	worst := math.Inf(1)
	var verdictDetail []string
	for _, c := range res.Conns {
		on, off := wrkRPSs(res.On[c]), wrkRPSs(res.Off[c])
		son, _ := spreadOf(on)
		soff, _ := spreadOf(off)
		ratio := son.Med / soff.Med
		var per []float64
		for i := range min(len(on), len(off)) {
			per = append(per, on[i]/off[i])
		}
		sper, _ := spreadOf(per)
		worst = min(worst, ratio)
		detail := fmt.Sprintf("c=%d %.3f×", c, ratio)
		con, _ := spreadOf(res.OnCPU[c])
		coff, _ := spreadOf(res.OffCPU[c])
		cpuRatio := "—"
		if coff.Med > 0 {
			cpuRatio = fmt.Sprintf("%.3f×", con.Med/coff.Med)
			detail += fmt.Sprintf(" (per server CPU-second %s)", cpuRatio)
		}
		verdictDetail = append(verdictDetail, detail)
		p("| %d | %s | %s | %.3f× (%.2f–%.2f) | %s | %s | %s | %s | %s |\n", c, son.format(len(on), fRPS), soff.format(len(off), fRPS), ratio, sper.Min, sper.Max,
			p99Of(res.On[c]), p99Of(res.Off[c]), fRPS(con.Med), fRPS(coff.Med), cpuRatio)
	}
	p("\n")

	d := res.Scrape
	p("### Scrapes with %d workers after %d recycles\n\n", d.Workers, d.End.At)
	p("One herd with %d workers and `MAX_REQUESTS=1`: every worker is replaced (replacement first) after its first request. "+
		"%d clients, each opening a new connection per `GET /` (so that every worker gets requests), drive the recycles; the "+
		"recycles are counted from `herd_worker_restarts_total{reason=\"recycled-requests\"}`, read once a second. "+
		"%d scrapes of `/metrics` are timed one after the other (one keep-alive connection, as Prometheus keeps) before and again "+
		"after the recycles, each time under a light load (two keep-alive clients, about 100 requests/s each; with MAX_REQUESTS=1 it "+
		"keeps recycling workers during the scrapes). The primary's memory (VmRSS, and RssAnon: its heap and stacks) is read after "+
		"%v without load: at the start, halfway through the recycles, and at the end.\n\n",
		d.Workers, mc.Clients, mc.Scrapes, mc.Settle)
	p("| | scrapes | p50 | p99 | max | failed | body | series |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, f scrapeFigures) {
		body := "—"
		if f.Bytes > 0 {
			body = fmt.Sprintf("%.0f KB", float64(f.Bytes)/1024)
		}
		p("| %s | %d | %s | %s | %s | %d | %s | %s |\n", name, f.N, fDur(float64(f.P50)), fDur(float64(f.P99)), fDur(float64(f.Max)), f.Failed,
			body, seriesOf(f.Series))
	}
	row("before the recycles", d.Before)
	row("while recycling (the 1 s polls)", d.During)
	row(fmt.Sprintf("after %d recycles", d.End.At), d.After)
	p("\n")
	p("Recycling: %d recycles in %s (%.1f/s), %d requests answered, %d failed; %d recycles counted after the last scrapes. "+
		"Light load during the last scrapes: %.0f req/s, %d failed.\n\n",
		d.Recycled, d.RecycleTook.Round(time.Second), float64(d.Recycled)/max(d.RecycleTook.Seconds(), 1e-9), d.LoadRequests, d.LoadFailed,
		d.RecycledEnd, d.LightRPS, d.LightFailed)
	p("| primary memory | recycles counted | VmRSS MB | RssAnon MB |\n|---|---:|---:|---:|\n")
	p("| start | %d | %.1f | %.1f |\n", d.Start.At, mb(d.Start.RSS), mb(d.Start.Ann))
	p("| halfway | %d | %.1f | %.1f |\n", d.Warm.At, mb(d.Warm.RSS), mb(d.Warm.Ann))
	p("| end | %d | %.1f | %.1f |\n", d.End.At, mb(d.End.RSS), mb(d.End.Ann))
	p("\nUnder the recycling load (not settled), at each tenth: ")
	var ss []string
	for _, s := range d.Series {
		ss = append(ss, fmt.Sprintf("%d: %.1f MB", s.At, mb(s.RSS)))
	}
	p("%s.\n\n", strings.Join(ss, ", "))

	p("### Verdicts\n\n")
	p("- Throughput on `/` with metrics on ≥ %.2f× with metrics off: **%s** (%s).\n", metricsRatioTarget, metVerdict(worst >= metricsRatioTarget), strings.Join(verdictDetail, ", "))
	full := ""
	if d.Recycled < mc.Recycles {
		full = fmt.Sprintf(" (only %d of the %d recycles asked for fitted in -metrics-recycle-max %s)", d.Recycled, mc.Recycles, mc.RecycleMax)
	}
	p("- Scrape p99 < %s with %d workers after %d recycles: **%s** (p99 %s over %d scrapes)%s.\n", fDur(float64(scrapeP99Target)), d.Workers, d.End.At,
		metVerdict(d.After.N > 0 && d.After.P99 < scrapeP99Target && d.After.Failed == 0), fDur(float64(d.After.P99)), d.After.N, full)
	flat := float64(d.End.Ann) <= float64(d.Warm.Ann)*(1+memFlatSlack)+(1<<20)
	p("- The primary's memory flat over the recycles (RssAnon at the end within %.0f%% + 1 MB of the halfway figure): **%s** (%.1f MB after %d recycles, %.1f MB after %d).\n",
		memFlatSlack*100, metVerdict(flat), mb(d.Warm.Ann), d.Warm.At, mb(d.End.Ann), d.End.At)
	p("\nThe fake-process benchmarks in the cluster package (`BenchmarkMetrics64Workers`, `BenchmarkMetricsAfterRecycles`, " +
		"under Go micro-benchmarks) take the primary's share of the same case through the full 10,000 recycles in milliseconds: " +
		"its snapshot per scrape and its heap before and after.\n")
	return b.String()
}

func wrkRPSs(ws []wrkResult) []float64 {
	out := make([]float64, len(ws))
	for i, w := range ws {
		out[i] = w.RPS
	}
	return out
}

func p99Of(ws []wrkResult) string {
	xs := make([]float64, len(ws))
	for i, w := range ws {
		xs[i] = float64(w.P99)
	}
	s, ok := spreadOf(xs)
	if !ok {
		return "—"
	}
	return fDur(s.Med)
}

func seriesOf(n int) string {
	if n == 0 {
		return "—"
	}
	return strconv.Itoa(n)
}

func metVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// spliceSection replaces the section starting with heading ("## ...") in
// doc, up to the next second-level heading, by section; without one it
// inserts section before the "## Go micro-benchmarks" heading, or at the
// end. It lets -metrics-only and -balance-only update BENCHMARKS.md in place.
func spliceSection(doc, heading, section string) string {
	section = strings.TrimRight(section, "\n") + "\n\n"
	if i := strings.Index(doc, "\n"+heading+"\n"); i >= 0 {
		rest := doc[i+1+len(heading):]
		end := len(doc)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + 1 + len(heading) + j + 1
		}
		return doc[:i+1] + section + doc[end:]
	}
	if i := strings.Index(doc, "\n## Go micro-benchmarks\n"); i >= 0 {
		return doc[:i+1] + section + doc[i+1:]
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + section
}

// writeSectionReport prints section (whose heading is "## "+heading) and,
// with -out, splices it into that file (created when missing): what
// -metrics-only and -balance-only write.
func writeSectionReport(cfg config, heading, section string) error {
	fmt.Print(section)
	if cfg.Out == "" {
		return nil
	}
	old, err := os.ReadFile(cfg.Out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(cfg.Out, []byte(spliceSection(string(old), "## "+heading, section)), 0o644); err != nil {
		return err
	}
	logf("updated the %q section of %s", heading, cfg.Out)
	return nil
}
