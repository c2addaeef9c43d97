package verify

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func repeat(id string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = id
	}
	return out
}

func TestJudgeDistribution(t *testing.T) {
	tests := []struct {
		name     string
		ids      []string
		failed   int
		firstErr string
		want     Status
		evidence string
	}{
		{"three workers", append(append(repeat("1", 22), repeat("2", 19)...), repeat("3", 19)...), 0, "",
			Pass, "3 workers answered 60 requests: 1→22, 2→19, 3→19"},
		{"numeric order", append(repeat("10", 2), repeat("9", 3)...), 0, "",
			Pass, "2 workers answered 5 requests: 9→3, 10→2"},
		{"one worker", repeat("0", 60), 0, "",
			Fail, "only worker 0 answered all 60 requests: not spread over workers"},
		{"no header", repeat("", 60), 0, "",
			Fail, "none of 60 responses carried X-Worker-Id"},
		{"some without header", append(repeat("1", 5), repeat("", 2)...), 0, "",
			Fail, "2 of 7 responses lacked X-Worker-Id"},
		{"failed requests", append(repeat("1", 5), repeat("2", 5)...), 2, "GET /pid: connection reset",
			Fail, "2 of 12 requests failed (first: GET /pid: connection reset)"},
		{"nothing", nil, 0, "", Fail, "no request was sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := JudgeDistribution(tt.ids, tt.failed, tt.firstErr)
			if c.Status != tt.want || !strings.Contains(c.Evidence, tt.evidence) {
				t.Errorf("got %s %q, want %s containing %q", c.Status, c.Evidence, tt.want, tt.evidence)
			}
		})
	}
}

// samples builds local-state answers from "worker:pid:count" triples.
func samples(t *testing.T, specs ...string) []LocalSample {
	t.Helper()
	var out []LocalSample
	for _, s := range specs {
		parts := strings.Split(s, ":")
		pid, err1 := strconv.Atoi(parts[1])
		count, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad spec %q", s)
		}
		out = append(out, LocalSample{Worker: parts[0], PID: pid, Count: count})
	}
	return out
}

func TestJudgeLocalState(t *testing.T) {
	tests := []struct {
		name     string
		samples  []string
		want     Status
		evidence string
	}{
		{"isolated", []string{"1:11:1", "2:22:1", "1:11:2", "1:11:3", "2:22:2"},
			Pass, "worker 1 (pid 11) 1→3 over 3 requests, worker 2 (pid 22) 1→2 over 2 requests"},
		{"isolated after earlier traffic", []string{"1:11:7", "2:22:40", "1:11:8", "2:22:41"},
			Pass, "worker 1 (pid 11) 7→8 over 2 requests, worker 2 (pid 22) 40→41"},
		{"one global counter in turns", []string{"1:11:1", "2:22:2", "1:11:3", "2:22:4"},
			Fail, "one sequence 1…4 across 2 workers"},
		{"global counter, uneven turns", []string{"1:11:1", "1:11:2", "2:22:3", "1:11:5", "2:22:6"},
			Fail, "worker 1 (pid 11) went from 1 to 5 while answering 3 requests"},
		{"counter goes back", []string{"1:11:3", "2:22:1", "1:11:2"},
			Fail, "worker 1 (pid 11) answered 2 after 3"},
		{"counter repeats", []string{"1:11:3", "2:22:1", "1:11:3"},
			Fail, "did not increase"},
		{"one worker", []string{"0:5:1", "0:5:2", "0:5:3"},
			Fail, "only worker 0 (pid 5) answered all 3 requests"},
		{"replaced worker is a new process", []string{"1:11:5", "1:33:1", "1:33:2", "2:22:9"},
			Pass, "worker 1 (pid 33) 1→2"},
		{"no pid header", []string{"1:0:1", "2:0:1", "1:0:2"},
			Pass, "worker 1 1→2 over 2 requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := JudgeLocalState(samples(t, tt.samples...))
			if c.Status != tt.want || !strings.Contains(c.Evidence, tt.evidence) {
				t.Errorf("got %s %q, want %s containing %q", c.Status, c.Evidence, tt.want, tt.evidence)
			}
		})
	}
	if c := JudgeLocalState(nil); c.Status != Fail {
		t.Errorf("no samples: got %s, want fail", c.Status)
	}
}

func TestJudgeParallel(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		name     string
		run      ParallelRun
		want     Status
		evidence string
	}{
		{"parallel", ParallelRun{N: 37, Alone: ms(400), Tries: 3, Wall: ms(450), Workers: []string{"1", "2"}},
			Pass, "2 × fib(37) at once took 0.45s on workers 1, 2; one alone takes 0.40s (fastest of 3), 2 one after another 0.80s (limit 0.75 × 0.80s = 0.60s)"},
		{"serial", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Wall: ms(800), Workers: []string{"1", "2"}},
			Fail, "took 0.80s on workers 1, 2; one alone takes 0.40s (fastest of 1), 2 one after another 0.80s: not parallel (want under 0.75 × 0.80s = 0.60s)"},
		{"just over the limit", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Wall: ms(600), Workers: []string{"1", "2"}},
			Fail, "not parallel"},
		{"four workers on two cores", ParallelRun{N: 38, Alone: ms(500), Tries: 1, Wall: ms(1100), Workers: []string{"3", "1", "4", "2"}},
			Pass, "on workers 1, 2, 3, 4"},
		{"one worker served all", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Wall: ms(420), Workers: []string{"0", "0"}},
			Fail, "were all served by worker 0: not spread"},
		{"no header", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Wall: ms(420), Workers: []string{"", ""}},
			Fail, "no answer carried X-Worker-Id"},
		{"some without header", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Wall: ms(420), Workers: []string{"1", ""}},
			Fail, "some answers lacked X-Worker-Id"},
		{"nothing at once", ParallelRun{N: 37, Alone: ms(400), Tries: 1, Workers: []string{"1"}},
			Fail, "nothing to compare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := JudgeParallel(tt.run)
			if c.Status != tt.want || !strings.Contains(c.Evidence, tt.evidence) {
				t.Errorf("got %s %q, want %s containing %q", c.Status, c.Evidence, tt.want, tt.evidence)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"http://127.0.0.1:3000", "http://127.0.0.1:3000", ""},
		{"http://localhost:3000/", "http://localhost:3000", ""},
		{"https://example.com", "https://example.com", ""},
		{"localhost:3000", "", "want http:// or https://"},
		{"ftp://host", "", "want http:// or https://"},
		{"http://", "", "want http:// or https://"},
		{"http://host:99999", "", `port "99999" is not in 1-65535`},
		{"http://host:3000/api", "", "without path"},
		{"http://host:3000/?a=1", "", "without path, query"},
		{"http://u:p@host:3000", "", "or user"},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseURL(%q) error %v, want one containing %q", tt.in, err, tt.err)
		}
	}
}

func TestReport(t *testing.T) {
	var r Report
	r.add(Check{Name: "a", Status: Pass, Evidence: "fine"})
	r.add(Check{Name: "b", Status: Fail, Evidence: "broken"})
	r.add(Check{Name: "c", Status: Skip, Evidence: "not here"})
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "✓ a: fine\n✗ b: broken\n- c: skipped: not here\n1 passed, 1 failed, 1 skipped\n"
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
	if r.OK() {
		t.Error("OK() with a failed check")
	}
	j, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"url": ""`, `"status": "fail"`, `"evidence": "not here"`, `"passed": 1`, `"failed": 1`, `"skipped": 1`} {
		if !strings.Contains(string(j), s) {
			t.Errorf("JSON lacks %s:\n%s", s, j)
		}
	}
}
