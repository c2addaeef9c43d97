package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

func TestTopShowsRatesAndLatencyPerWorker(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	l := startLoad(t, p.URL+"/api/10", 4)
	l.waitRequests(t, p, 200)
	for _, args := range [][]string{
		{"top", "--count", "4", "--interval", "1s"},
		{"status", "--watch", "--count", "4", "--interval", "1s"},
	} {
		code, out := herdCmd(t, p, args...)
		if code != 0 {
			t.Fatalf("herd %v: exit %d: %s", args, code, out)
		}
		if n := strings.Count(out, "herd top "); n != 4 {
			t.Errorf("herd %v: %d tables, want 4:\n%s", args, n, out)
		}
		// The first table has no rates yet; once two heartbeats (a second
		// apart) have been seen, the "all" line has requests/s, p50, p99.
		all := regexp.MustCompile(`(?m)^\s*all\s+([0-9.]+)\s+([0-9.]+ms)\s+([0-9.]+ms)\s*$`).FindAllStringSubmatch(out, -1)
		if len(all) < 1 {
			t.Fatalf("herd %v: want an 'all' line with a rate, p50 and p99:\n%s", args, out)
		}
		if r, _ := strconv.ParseFloat(all[len(all)-1][1], 64); r <= 0 {
			t.Errorf("herd %v: %v requests/s under load, want more than 0:\n%s", args, r, out)
		}
		for _, id := range []string{"1", "2"} {
			if !regexp.MustCompile(`(?m)^\s*` + id + `\s+\d+\s+ready\s`).MatchString(out) {
				t.Errorf("herd %v: no ready worker %s in:\n%s", args, id, out)
			}
		}
	}
	l.finish(t)
	for _, bad := range [][]string{{"top", "--interval", "1ms"}, {"top", "--count", "-1"}, {"top", "extra"}} {
		if code, out := herdCmd(t, p, bad...); code != exitUsage || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("herd %v: exit %d, output %q; want exit %d and one line", bad, code, out, exitUsage)
		}
	}
}
