package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The balancing section (-balance): each policy of herd serve --balance
// against plain net/http, on the cases of issue 9: a few keep-alive
// connections (their spread over the workers, and the throughput), new
// connections while thousands of idle keep-alive connections are open, and
// connection churn (a new connection per request).

// balanceConfig bounds the section.
type balanceConfig struct {
	Rounds   int           // rounds; each runs every contender once, order rotated
	Trials   int           // spread trials per connection count and round
	Duration time.Duration // each throughput and churn run
	Idle     int           // idle keep-alive connections for the idle case
	Churn    int           // clients of the churn load
	Node     bool          // also run the Node cluster (examples/node/bin.js) where it applies
	Cases    string        // "all", or a comma list of spread, keepalive, mixed, churn, idle
	Policies string        // comma list of the --balance policies to run
}

// balanceCases lists the cases of -balance-cases, in the order they run.
var balanceCases = []string{"spread", "keepalive", "mixed", "churn", "idle"}

// parseCases reads -balance-cases: "all" or a comma list of balanceCases.
func parseCases(s string) (map[string]bool, error) {
	on := map[string]bool{}
	if s == "" || s == "all" {
		for _, c := range balanceCases {
			on[c] = true
		}
		return on, nil
	}
	for _, c := range strings.Split(s, ",") {
		if !slices.Contains(balanceCases, c) {
			return nil, fmt.Errorf("-balance-cases: unknown case %q: must be all or a comma list of %s", c, strings.Join(balanceCases, ", "))
		}
		on[c] = true
	}
	return on, nil
}

// balanceHeading is the section's heading in the report.
const balanceHeading = "Balancing"

// nodeName is the Node cluster contender: examples/node's bin.js, Node's
// cluster module (its primary accepts and hands connections out round-robin).
// It runs the spread, keep-alive and churn cases, not the idle one.
const nodeName = "node cluster"

var balancePolicies = []string{"auto", "least-conn", "shared", "sticky"}

// balanceSample is one contender's figures in one round.
type balanceSample struct {
	Exact     map[int]int        // by c: trials whose spread was exact
	Trials    map[int]int        // by c: trials run
	KeepAlive map[string]float64 // "c=2 /" → req/s
	ReqShare  map[int]float64    // by c: the busiest worker's share of the requests over c keep-alive connections
	IdleRate  float64            // new connections/s with Idle idle connections open
	Churn     float64            // new connections/s, no idle connections
	Failed    int64              // failed requests in the churn and idle runs
	Mixed     mixedResult        // issue 9's mixed load
}

// The mixed load of issue 9: mixedFast keep-alive connections on / and, at
// the same time, mixedHeavy on mixedPath.
const (
	mixedFast  = 40
	mixedHeavy = 2
	mixedPath  = "/api/300000000"
)

type mixedResult struct {
	FastRPS  float64
	FastP99  time.Duration
	HeavyRPS float64
	Failed   int64
	HeavyOn  int // distinct worker processes that served the heavy requests (0 for a single process)
}

func runBalance(ctx context.Context, cfg config, bc balanceConfig, bin, work string) (string, error) {
	on, err := parseCases(bc.Cases)
	if err != nil {
		return "", err
	}
	n := runtime.GOMAXPROCS(0)
	cs := []contender{{Name: "plain"}}
	for _, b := range strings.Split(bc.Policies, ",") {
		if b == "off" {
			cs = append(cs, contender{Name: "herd off", Herd: true})
			continue
		}
		if !slices.Contains(balancePolicies, b) {
			return "", fmt.Errorf("-balance-policies: unknown policy %q: must be a comma list of %s", b, strings.Join(balancePolicies, ", "))
		}
		cs = append(cs, contender{Name: "herd " + b, Herd: true, Workers: n, Balance: b})
	}
	if bc.Node {
		if err := nodeAvailable(); err != nil {
			logf("balance: no Node cluster contender: %v", err)
		} else {
			cs = append(cs, contender{Name: nodeName, Workers: n})
		}
	}
	res := map[string][]balanceSample{}
	started := time.Now()
	loadStart := loadavg()
	for r := 0; r < bc.Rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			logf("balance round %d/%d: %s (load average %s)", r+1, bc.Rounds, c.Name, loadavg())
			sm, err := measureBalance(ctx, cfg, bc, c, n, bin, work)
			if err != nil {
				return "", fmt.Errorf("balance round %d, %s: %w", r+1, c.Name, err)
			}
			res[c.Name] = append(res[c.Name], sm)
			var got []string
			if on["churn"] {
				got = append(got, fmt.Sprintf("churn %.0f/s", sm.Churn))
			}
			if on["idle"] && c.Name != nodeName {
				got = append(got, fmt.Sprintf("idle %.0f/s", sm.IdleRate))
			}
			if on["mixed"] {
				got = append(got, fmt.Sprintf("mixed: / %.0f/s p99 %v, heavy %.1f/s on %d worker process(es)",
					sm.Mixed.FastRPS, sm.Mixed.FastP99.Round(100*time.Microsecond), sm.Mixed.HeavyRPS, sm.Mixed.HeavyOn))
			}
			if len(got) > 0 {
				logf("balance round %d/%d: %s: %s", r+1, bc.Rounds, c.Name, strings.Join(got, "; "))
			}
		}
	}
	return renderBalance(res, cs, bc, n, readMachine(cfg.Wrk), loadStart, loadavg(), time.Since(started)), nil
}

func measureBalance(ctx context.Context, cfg config, bc balanceConfig, c contender, n int, bin, work string) (sm balanceSample, err error) {
	var addr string
	var stop func() error
	if c.Name == nodeName {
		addr, stop, err = startNode(ctx, n)
	} else {
		var s *server
		s, err = start(ctx, c, bin, work)
		if err == nil {
			addr, stop = s.addr, s.stop
		}
	}
	if err != nil {
		return sm, err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	workers := c.Herd || c.Name == nodeName
	on, _ := parseCases(bc.Cases) // checked by runBalance
	sm = balanceSample{Exact: map[int]int{}, Trials: map[int]int{}, KeepAlive: map[string]float64{}, ReqShare: map[int]float64{}}
	for _, conns := range []int{n, 2 * n} {
		if workers && on["spread"] {
			for range bc.Trials {
				exact, err := spreadTrial(addr, conns, n)
				if err != nil {
					return sm, err
				}
				sm.Trials[conns]++
				if exact {
					sm.Exact[conns]++
				}
			}
			share, err := requestShare(addr, conns, bc.Duration)
			if err != nil {
				return sm, err
			}
			sm.ReqShare[conns] = share
		}
		for _, path := range []string{"/", "/api/10000000"} {
			if !on["keepalive"] {
				break
			}
			wc := cfg
			wc.Conns, wc.Threads = conns, min(conns, 2)
			w, _, err := runWrk(ctx, wc, bc.Duration, "http://"+addr+path)
			if err != nil {
				return sm, err
			}
			sm.KeepAlive[fmt.Sprintf("c=%d %s", conns, path)] = w.RPS
		}
		if on["keepalive"] {
			// wrk's last request on /api/10000000 can still hold its
			// connection open on a worker for a while; a spread trial
			// begun meanwhile counts it, and comes out uneven.
			time.Sleep(time.Second)
		}
	}
	if on["mixed"] {
		sm.Mixed = mixedLoad(addr, 3*bc.Duration)
		sm.Failed += sm.Mixed.Failed
	}
	if on["churn"] {
		rate, failed := churn(addr, bc.Churn, bc.Duration)
		sm.Churn, sm.Failed = rate, sm.Failed+failed
	}
	if c.Name == nodeName || !on["idle"] {
		return sm, nil
	}
	idle, err := openIdle(addr, bc.Idle)
	if err != nil {
		return sm, err
	}
	rate, failed := churn(addr, bc.Churn, bc.Duration)
	sm.IdleRate, sm.Failed = rate, sm.Failed+failed
	for _, ic := range idle {
		closeNow(ic)
	}
	return sm, nil
}

// mixedLoad runs mixedFast keep-alive connections sending GET / back to
// back and, at once, mixedHeavy sending GET mixedPath, for d; it returns
// each kind's rate and the fast requests' p99 latency.
func mixedLoad(addr string, d time.Duration) mixedResult {
	var mu sync.Mutex
	var fast []time.Duration
	var heavy int
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	heavyOn := map[string]bool{}
	run := func(path string, record func(time.Duration, http.Header)) {
		defer wg.Done()
		var c net.Conn
		var br *bufio.Reader
		for time.Now().Before(end) {
			if c == nil {
				var err error
				if c, err = net.DialTimeout("tcp", addr, 10*time.Second); err != nil {
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				br = bufio.NewReader(c)
			}
			t0 := time.Now()
			h, _, err := requestBody(c, br, path)
			if err != nil {
				failed.Add(1)
				closeNow(c)
				c = nil
				continue
			}
			record(time.Since(t0), h)
		}
		if c != nil {
			closeNow(c)
		}
	}
	for range mixedFast {
		wg.Add(1)
		go run("/", func(l time.Duration, _ http.Header) { mu.Lock(); fast = append(fast, l); mu.Unlock() })
	}
	for range mixedHeavy {
		wg.Add(1)
		go run(mixedPath, func(_ time.Duration, h http.Header) {
			mu.Lock()
			heavy++
			if pid := h.Get("X-Worker-Pid"); pid != "" {
				heavyOn[pid] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	r := mixedResult{FastRPS: float64(len(fast)) / el, HeavyRPS: float64(heavy) / el, Failed: failed.Load(), HeavyOn: len(heavyOn)}
	if len(fast) > 0 {
		slices.Sort(fast)
		r.FastP99 = fast[len(fast)*99/100]
	}
	return r
}

// requestShare opens conns keep-alive connections at once, each sending
// GET /pid back to back for d, and returns the busiest worker's share of
// all the requests (1/N is a perfect spread over N workers).
func requestShare(addr string, conns int, d time.Duration) (float64, error) {
	var mu sync.Mutex
	per := map[string]int{}
	total := 0
	errC := make(chan error, conns)
	end := time.Now().Add(d)
	for range conns {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errC <- err
				return
			}
			defer closeNow(c)
			br := bufio.NewReader(c)
			mine := map[string]int{}
			for time.Now().Before(end) {
				w, err := requestWorker(c, br)
				if err != nil {
					errC <- err
					return
				}
				mine[w]++
			}
			mu.Lock()
			for w, k := range mine {
				per[w] += k
				total += k
			}
			mu.Unlock()
			errC <- nil
		}()
	}
	for range conns {
		if err := <-errC; err != nil {
			return 0, fmt.Errorf("request spread: %w", err)
		}
	}
	most := 0
	for _, k := range per {
		most = max(most, k)
	}
	if total == 0 {
		return 0, errors.New("request spread: no request answered")
	}
	return float64(most) / float64(total), nil
}

// requestWorker sends GET /pid on c and returns the process that answered
// (herd's workers and Node's app both answer {"processid": pid}).
func requestWorker(c net.Conn, br *bufio.Reader) (string, error) {
	_, body, err := requestBody(c, br, "/pid")
	if err != nil {
		return "", err
	}
	var v struct {
		PID int `json:"processid"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.PID == 0 {
		return "", fmt.Errorf("GET /pid answered %q", body)
	}
	return strconv.Itoa(v.PID), nil
}

// spreadTrial opens conns keep-alive connections one after the other, one
// request each, and reports whether every one of the n workers holds
// ⌊conns/n⌋ or ⌈conns/n⌉ of them.
func spreadTrial(addr string, conns, n int) (bool, error) {
	per := map[string]int{}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			closeNow(c)
		}
		time.Sleep(50 * time.Millisecond) // let the closes reach the primary before the next trial
	}()
	for range conns {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return false, err
		}
		open = append(open, c)
		w, err := requestWorker(c, bufio.NewReader(c))
		if err != nil {
			return false, err
		}
		per[w]++
	}
	lo, hi := conns/n, (conns+n-1)/n
	if lo > 0 && len(per) != n {
		return false, nil
	}
	for _, k := range per {
		if k < lo || k > hi {
			return false, nil
		}
	}
	return true, nil
}

// request sends GET path on c and reads the answer.
func request(c net.Conn, br *bufio.Reader, path string) (http.Header, error) {
	h, _, err := requestBody(c, br, path)
	return h, err
}

// requestBody sends GET path on c and returns the answer's header and body
// (at most 4 KiB of it).
func requestBody(c net.Conn, br *bufio.Reader, path string) (http.Header, []byte, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header, body, err
}

// closeNow closes c with a reset: no TIME_WAIT on the client, so that
// churn does not run the machine out of local ports.
func closeNow(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func openIdle(addr string, k int) ([]net.Conn, error) {
	var conns []net.Conn
	for range k {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			_, err = request(c, bufio.NewReader(c), "/pid")
		}
		if err != nil {
			for _, c := range conns {
				closeNow(c)
			}
			return nil, fmt.Errorf("idle connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// churn runs clients that each open a connection, send GET / on it, read
// the answer and close it, for d; it returns the successful requests per
// second and the failures.
func churn(addr string, clients int, d time.Duration) (float64, int64) {
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					_, err = request(c, bufio.NewReader(c), "/")
					closeNow(c)
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(start).Seconds(), failed.Load()
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func renderBalance(res map[string][]balanceSample, cs []contender, bc balanceConfig, n int, m machine, load0, load1 string, took time.Duration) string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	plain := res["plain"]
	med := func(name string, f func(balanceSample) float64) float64 {
		var xs []float64
		for _, s := range res[name] {
			xs = append(xs, f(s))
		}
		return medianOf(xs)
	}
	p("## %s\n\n", balanceHeading)
	p("`go run ./bench/run -balance-only` (part of `make bench`): %d rounds, each running every contender once in a rotated order; "+
		"herd with %d workers (this machine's GOMAXPROCS) under each `--balance` policy against plain net/http. "+
		"Machine: %s; load average %s at the start, %s at the end; %s in all.\n\n", bc.Rounds, n, fmt.Sprintf("%d cores (%s), Linux %s, %s", m.Cores, m.CPU.Model, m.Kernel, m.Go), load0, load1, took.Round(time.Second))
	on, _ := parseCases(bc.Cases) // checked by runBalance
	if bc.Cases != "" && bc.Cases != "all" {
		p("Only these cases ran (`-balance-cases %s`).\n\n", bc.Cases)
	}
	if on["spread"] {
		p("- **spread**: c keep-alive connections opened one after the other, one request each; a trial is exact when every worker holds ⌊c/N⌋ or ⌈c/N⌉ (the process answering GET /pid). %d trials per round.\n", bc.Trials)
		p("- **busiest worker's requests**: c keep-alive connections opened at once, each sending GET /pid back to back for %v; the share of all requests the busiest worker served, median of the rounds (%.1f%% is a perfect spread over %d workers).\n", bc.Duration, 100/float64(n), n)
	}
	if bc.Node {
		p("- **%s**: examples/node's bin.js, Node's cluster module with %d workers (its primary hands connections out round-robin); spread, keep-alive and churn only.\n", nodeName, n)
	}
	if on["keepalive"] {
		p("- **keep-alive req/s**: wrk, c connections, %v, median of the rounds (ratio to plain in brackets).\n", bc.Duration)
	}
	if on["mixed"] {
		p("- **mixed**: issue 9's mixed load: %d keep-alive connections sending GET / back to back and, at the same time, %d sending GET %s, for %v; each kind's rate (ratio to plain) and the fast requests' p99, median of the rounds.\n", mixedFast, mixedHeavy, mixedPath, 3*bc.Duration)
	}
	if on["churn"] || on["idle"] {
		p("- **churn**: %d clients, each opening a connection per request (`GET /`, closed after the answer), %v; **idle**: the same with %d idle keep-alive connections open.\n", bc.Churn, bc.Duration, bc.Idle)
	}
	p("\n")
	header := []string{"contender"}
	if on["spread"] {
		for _, c := range []int{n, 2 * n} {
			header = append(header, fmt.Sprintf("spread c=%d", c))
		}
		for _, c := range []int{n, 2 * n} {
			header = append(header, fmt.Sprintf("busiest worker's requests c=%d", c))
		}
	}
	keys := []string{}
	if on["keepalive"] {
		for _, c := range []int{n, 2 * n} {
			for _, path := range []string{"/", "/api/10000000"} {
				keys = append(keys, fmt.Sprintf("c=%d %s", c, path))
			}
		}
	}
	header = append(header, keys...)
	if on["churn"] {
		header = append(header, "churn conn/s")
	}
	if on["idle"] {
		header = append(header, fmt.Sprintf("idle %d conn/s", bc.Idle))
	}
	if on["mixed"] {
		header = append(header, "mixed: / req/s", "mixed: / p99 ms", "mixed: "+mixedPath+" req/s")
	}
	header = append(header, "failed")
	p("| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	ratio := func(v, base float64) string {
		if base <= 0 || len(plain) == 0 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.0f (%.2f×)", v, v/base)
	}
	for _, c := range cs {
		row := []string{c.Name}
		for _, k := range []int{n, 2 * n} {
			if !on["spread"] {
				break
			}
			if !c.Herd && c.Name != nodeName {
				row = append(row, "—")
				continue
			}
			exact, trials := 0, 0
			for _, s := range res[c.Name] {
				exact += s.Exact[k]
				trials += s.Trials[k]
			}
			row = append(row, fmt.Sprintf("%d/%d exact", exact, trials))
		}
		for _, k := range []int{n, 2 * n} {
			if !on["spread"] {
				break
			}
			if !c.Herd && c.Name != nodeName {
				row = append(row, "—")
				continue
			}
			row = append(row, fmt.Sprintf("%.1f%%", 100*med(c.Name, func(s balanceSample) float64 { return s.ReqShare[k] })))
		}
		for _, key := range keys {
			v := med(c.Name, func(s balanceSample) float64 { return s.KeepAlive[key] })
			row = append(row, ratio(v, med("plain", func(s balanceSample) float64 { return s.KeepAlive[key] })))
		}
		if on["churn"] {
			row = append(row, ratio(med(c.Name, func(s balanceSample) float64 { return s.Churn }), med("plain", func(s balanceSample) float64 { return s.Churn })))
		}
		if on["idle"] {
			if c.Name == nodeName {
				row = append(row, "—")
			} else {
				row = append(row, ratio(med(c.Name, func(s balanceSample) float64 { return s.IdleRate }), med("plain", func(s balanceSample) float64 { return s.IdleRate })))
			}
		}
		if on["mixed"] {
			mixed := func(f func(mixedResult) float64) func(balanceSample) float64 {
				return func(s balanceSample) float64 { return f(s.Mixed) }
			}
			row = append(row, ratio(med(c.Name, mixed(func(m mixedResult) float64 { return m.FastRPS })), med("plain", mixed(func(m mixedResult) float64 { return m.FastRPS }))))
			row = append(row, fmt.Sprintf("%.1f", med(c.Name, mixed(func(m mixedResult) float64 { return float64(m.FastP99) / float64(time.Millisecond) }))))
			heavy := med(c.Name, mixed(func(m mixedResult) float64 { return m.HeavyRPS }))
			heavyPlain := med("plain", mixed(func(m mixedResult) float64 { return m.HeavyRPS }))
			if heavyPlain > 0 {
				row = append(row, fmt.Sprintf("%.1f (%.2f×)", heavy, heavy/heavyPlain))
			} else {
				row = append(row, fmt.Sprintf("%.1f", heavy))
			}
		}
		var failed int64
		for _, s := range res[c.Name] {
			failed += s.Failed
		}
		row = append(row, strconv.FormatInt(failed, 10))
		p("| %s |\n", strings.Join(row, " | "))
	}
	p("\n")
	return b.String()
}
