package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The wrk samples in testdata are real output of Debian's wrk 4.1.0 on the
// 2-core development machine, against bench/plain.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		file          string
		requests      int64
		rps           float64
		p50, p99      time.Duration
		non2xx, sockE int64
	}{
		{"wrk_root.txt", 117053, 57813.40, 920 * time.Microsecond, 35900 * time.Microsecond, 0, 0},
		{"wrk_api1000.txt", 65586, 31787.88, 1280 * time.Microsecond, 115580 * time.Microsecond, 0, 0},
		{"wrk_api1e7_seconds.txt", 388, 187.40, 10260 * time.Microsecond, 1480 * time.Millisecond, 0, 0},
		{"wrk_micros.txt", 51546, 51387.01, 16 * time.Microsecond, 1960 * time.Microsecond, 0, 0},
		{"wrk_non2xx.txt", 66341, 32096.58, 1640 * time.Microsecond, 166300 * time.Microsecond, 66341, 0},
		{"wrk_timeouts.txt", 11, 5.46, 0, 0, 0, 11},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(string(b))
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			want := wrkResult{Requests: tt.requests, RPS: tt.rps, P50: tt.p50, P99: tt.p99, Non2xx: tt.non2xx, SocketErrors: tt.sockE}
			if got != want {
				t.Errorf("parseWrk(%s)\n got %+v\nwant %+v", tt.file, got, want)
			}
		})
	}
}

func TestParseWrkRejectsOtherFormats(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "wrk_root.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"empty":          "",
		"usage":          "Usage: wrk <options> <url>\n",
		"no --latency":   "  117053 requests in 2.02s, 18.42MB read\nRequests/sec:  57813.40\n",
		"no requests in": "     50%    0.92ms\n     75%    2.40ms\n     90%    4.61ms\n     99%   35.90ms\nRequests/sec:  57813.40\n",
		"truncated":      string(b[:len(b)/2]),
	} {
		if got, err := parseWrk(out); err == nil {
			t.Errorf("parseWrk(%s) = %+v, want an error", name, got)
		}
	}
}

// testdata/loadtest.json is real `herd loadtest --json` output.
func TestParseLoadtest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "loadtest.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseLoadtest(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 61592 || got.Failed != 0 || got.RPS != 61476.5 || got.Latency.P50 != 0.901 || got.Latency.P99 != 4.783 {
		t.Errorf("parseLoadtest = %+v", got)
	}
	if _, err := parseLoadtest([]byte(`{"url":"x"}`)); err == nil {
		t.Error("parseLoadtest of a report without requests: want an error")
	}
}

func TestParseCPUInfo(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2100.000\n\nprocessor\t: 1\nmodel name\t: other\ncpu MHz\t\t: 1.000\n"
	got := parseCPUInfo(in)
	if got.Model != "Intel(R) Xeon(R) Processor" || got.MHz != 2100 {
		t.Errorf("parseCPUInfo = %+v", got)
	}
	if got := parseCPUInfo("processor\t: 0\nmodel name\t: ARMv8\n"); got.MHz != 0 {
		t.Errorf("parseCPUInfo without MHz = %+v, want MHz 0 (unknown)", got)
	}
}

func TestParseListening(t *testing.T) {
	for _, tt := range []struct {
		line, addr string
		ok         bool
	}{
		{`{"time":"t","level":"INFO","msg":"listening","addr":"127.0.0.1:32807"}`, "", false},
		{"listening 127.0.0.1:45103", "127.0.0.1:45103", true},
		{"starting", "", false},
	} {
		addr, ok := parseListening(tt.line)
		if addr != tt.addr || ok != tt.ok {
			t.Errorf("parseListening(%q) = %q, %v; want %q, %v", tt.line, addr, ok, tt.addr, tt.ok)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tt := range []struct {
		stat string
		want int64
	}{
		{"13302 (cat) R 13104 13104 4458 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 259789 3133440 412", 10},
		{"42 (a) b (c)) S 1 42 42 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0 1 2 3", 1801},
	} {
		got, err := parseStatCPU(tt.stat)
		if err != nil || got != tt.want {
			t.Errorf("parseStatCPU(%q) = %d, %v; want %d", tt.stat, got, err, tt.want)
		}
	}
	if _, err := parseStatCPU("13302 (cat) R 1 2"); err == nil {
		t.Error("parseStatCPU of a short line: want an error")
	}
}
