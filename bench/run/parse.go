package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what the driver keeps of one wrk run.
type wrkResult struct {
	Requests     int64
	RPS          float64
	P50, P99     time.Duration
	Non2xx       int64 // "Non-2xx or 3xx responses"
	SocketErrors int64 // connect + read + write + timeout
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	wrkTotal    = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)\s*$`)
	wrkSockErrs = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$`)
)

// parseWrk reads the output of `wrk --latency`. It fails when a figure the
// driver relies on is missing, so that a change in wrk's format is loud.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("wrk: no Requests/sec line")
	}
	rps, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return r, fmt.Errorf("wrk: Requests/sec %q: %w", m[1], err)
	}
	r.RPS = rps
	m = wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("wrk: no \"N requests in\" line")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	pcts := wrkPct.FindAllStringSubmatch(out, -1)
	if len(pcts) != 4 {
		return r, fmt.Errorf("wrk: want 4 latency percentiles (run with --latency), got %d", len(pcts))
	}
	for _, p := range pcts {
		d, err := wrkDuration(p[2], p[3])
		if err != nil {
			return r, err
		}
		switch p[1] {
		case "50":
			r.P50 = d
		case "99":
			r.P99 = d
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	return r, nil
}

// wrkDuration converts one of wrk's latency figures ("0.92", "ms").
func wrkDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("wrk: latency %q: %w", num+unit, err)
	}
	scale := map[string]time.Duration{
		"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"m": time.Minute, "h": time.Hour,
	}[unit]
	return time.Duration(v * float64(scale)), nil
}

// loadtestResult is what the driver keeps of one `herd loadtest --json` run.
type loadtestResult struct {
	Requests int64   `json:"requests"`
	Failed   int64   `json:"failed"`
	RPS      float64 `json:"rps"`
	Latency  struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
}

func parseLoadtest(out []byte) (loadtestResult, error) {
	var r loadtestResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("herd loadtest --json: %w", err)
	}
	if r.Requests == 0 || r.RPS == 0 {
		return r, errors.New("herd loadtest --json: no requests or rps in the report")
	}
	return r, nil
}

// cpuInfo is the machine's processor as /proc/cpuinfo describes it.
type cpuInfo struct {
	Model string
	MHz   float64 // 0 when unknown
}

// parseCPUInfo reads the first processor's model name and "cpu MHz".
func parseCPUInfo(s string) cpuInfo {
	var c cpuInfo
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			if c.Model == "" {
				c.Model = v
			}
		case "cpu MHz":
			if c.MHz == 0 {
				c.MHz, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return c
}

// parseListening finds the address the plain server announces:
// "listening ADDR" (herd's address comes from its control socket).
func parseListening(line string) (string, bool) {
	if addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening "); ok {
		return addr, true
	}
	return "", false
}

// parseStatCPU returns utime+stime, in clock ticks, from /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 { // f[0] is field 3 (state); utime and stime are fields 14 and 15
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: utime/stime: %w", err)
	}
	return ut + st, nil
}
