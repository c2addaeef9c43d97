package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConnCounts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []int
	}{
		{"2N,64", 2, []int{4, 64}},
		{"N, 3N ,8", 4, []int{4, 12, 8}},
		{"2N,4", 2, []int{4}}, // duplicates once
	} {
		got, err := connCounts(tc.in, tc.n)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("connCounts(%q, %d) = %v, %v; want %v", tc.in, tc.n, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0", "xN", "-1", "2N,,4"} {
		if got, err := connCounts(bad, 2); err == nil {
			t.Errorf("connCounts(%q) = %v, want an error", bad, got)
		}
	}
}

func TestSpliceSection(t *testing.T) {
	const h = "## Cost of metrics (issue 10)"
	sec := h + "\n\nnew text\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"replaces up to the next section",
			"# B\n\n## A\n\na\n\n" + h + "\n\nold\n\nold table\n## C\n\nc\n",
			"# B\n\n## A\n\na\n\n" + h + "\n\nnew text\n\n## C\n\nc\n"},
		{"replaces up to the end",
			"# B\n\n" + h + "\n\nold\n",
			"# B\n\n" + h + "\n\nnew text\n\n"},
		{"inserts before the Go micro-benchmarks",
			"# B\n\n## A\n\na\n\n## Go micro-benchmarks\n\ng\n",
			"# B\n\n## A\n\na\n\n" + h + "\n\nnew text\n\n## Go micro-benchmarks\n\ng\n"},
		{"appends", "# B\n\n## A\n\na\n", "# B\n\n## A\n\na\n\n" + h + "\n\nnew text\n\n"},
		{"a longer heading is another section",
			"# B\n\n" + h + ": by hand\n\nkeep\n",
			"# B\n\n" + h + ": by hand\n\nkeep\n\n" + h + "\n\nnew text\n\n"},
	} {
		if got := spliceSection(tc.doc, h, sec); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestFiguresOf(t *testing.T) {
	var took []time.Duration
	for i := 1; i <= 200; i++ {
		took = append(took, time.Duration(i)*time.Millisecond)
	}
	f := figuresOf(took, 10, 3, 0)
	if f.N != 200 || f.P50 != 100*time.Millisecond || f.P99 != 198*time.Millisecond || f.Max != 200*time.Millisecond {
		t.Errorf("figuresOf(1..200 ms) = %+v; want p50 100ms, p99 198ms, max 200ms", f)
	}
	if f := figuresOf(nil, 0, 0, 1); f.N != 0 || f.Failed != 1 {
		t.Errorf("figuresOf(nil) = %+v", f)
	}
}

func TestRenderMetricsNamesItsHeading(t *testing.T) {
	res := &metricsResult{Conns: []int{4}, On: map[int][]wrkResult{4: {{RPS: 97}}}, Off: map[int][]wrkResult{4: {{RPS: 100}}},
		OnCPU: map[int][]float64{}, OffCPU: map[int][]float64{}}
	out := renderMetrics(res, quickMetrics, 2)
	if !strings.HasPrefix(out, "## "+metricsHeading+"\n") {
		t.Errorf("the section does not start with its heading: %q", out[:min(len(out), 80)])
	}
	if !strings.Contains(out, "with metrics off: **met** (c=4 0.970×") {
		t.Errorf("0.97× should meet the target:\n%s", out)
	}
}
