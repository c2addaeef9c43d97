package loadtest

import (
	"math"
	"testing"
)

func TestLoadtestJainIndex(t *testing.T) {
	tests := []struct {
		name string
		xs   []int64
		want float64
	}{
		{"none", nil, 0},
		{"all zero", []int64{0, 0}, 0},
		{"one", []int64{7}, 1},
		{"equal", []int64{5, 5, 5, 5}, 1},
		{"one has all of four", []int64{9, 0, 0, 0}, 0.25},
		{"3 to 1", []int64{3, 1}, 0.8},                   // 16 / (2*10)
		{"70/10/10/10", []int64{70, 10, 10, 10}, 0.4808}, // 10000 / (4*5200)
		{"near equal", []int64{101, 99, 100, 100}, 0.9999},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := JainIndex(tt.xs); math.Abs(got-tt.want) > 1e-4 {
				t.Errorf("JainIndex(%v) = %.5f, want %.4f", tt.xs, got, tt.want)
			}
		})
	}
}

func TestLoadtestVerdict(t *testing.T) {
	tests := []struct {
		name   string
		counts map[string]int64
		want   string
	}{
		{"no header", nil, VerdictUnknown},
		{"single worker", map[string]int64{"1": 50}, "one worker: worker 1 served 100%"},
		{"even", map[string]int64{"1": 100, "2": 100, "3": 100, "4": 100}, "balanced"},
		// 27.5% is exactly the upper bound over four: inclusive.
		{"noise at the bound", map[string]int64{"1": 110, "2": 95, "3": 100, "4": 95}, "balanced"},
		{"55/45 on two", map[string]int64{"1": 55, "2": 45}, "balanced"},
		{"56/44 on two", map[string]int64{"1": 56, "2": 44}, "skewed: worker 1 served 56.0%, outside 45%–55%"},
		// Jain's index is 0.96 for both: above the common cut-offs, yet skewed.
		{"60/40 on two", map[string]int64{"1": 60, "2": 40}, "skewed: worker 1 served 60.0%, outside 45%–55%"},
		{"60.5/39.5 on two", map[string]int64{"1": 395, "2": 605}, "skewed: worker 2 served 60.5%, outside 45%–55%"},
		{"2:1 on two", map[string]int64{"1": 66, "2": 34}, "skewed: worker 1 served 66.0%, outside 45%–55%"},
		{"hot worker", map[string]int64{"1": 10, "2": 10, "3": 70, "4": 10}, "skewed: worker 3 served 70.0%, outside 22.5%–27.5%"},
		{"35/25/20/20", map[string]int64{"1": 35, "2": 25, "3": 20, "4": 20}, "skewed: worker 1 served 35.0%, outside 22.5%–27.5%"},
		{"hot among 8", map[string]int64{"1": 17, "2": 10, "3": 10, "4": 10, "5": 10, "6": 10, "7": 10, "8": 10}, "skewed: worker 1 served 19.5%, outside 11.25%–13.75%"},
		// No worker far above its share, but one starved: it is the one named.
		{"starved", map[string]int64{"1": 33, "2": 33, "3": 33, "4": 1}, "skewed: worker 4 served 1.0%, outside 22.5%–27.5%"},
		{"names", map[string]int64{"b": 1, "a": 9}, "skewed: worker a served 90.0%, outside 45%–55%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDistribution(tt.counts, 0, 0)
			if d.Verdict != tt.want {
				t.Errorf("verdict for %v = %q, want %q", tt.counts, d.Verdict, tt.want)
			}
			if d.Balanced != (tt.want == "balanced") {
				t.Errorf("Balanced = %v for verdict %q", d.Balanced, d.Verdict)
			}
		})
	}
}

func TestLoadtestShareBounds(t *testing.T) {
	for n, want := range map[int][2]float64{2: {0.45, 0.55}, 4: {0.225, 0.275}, 10: {0.09, 0.11}} {
		counts := map[string]int64{}
		for i := range n {
			counts[string(rune('a'+i))] = 1
		}
		lo, hi := newDistribution(counts, 0, 0).ShareBounds()
		if math.Abs(lo-want[0]) > 1e-12 || math.Abs(hi-want[1]) > 1e-12 {
			t.Errorf("%d workers: bounds %v–%v, want %v–%v", n, lo, hi, want[0], want[1])
		}
	}
}

func TestLoadtestWorkerOrder(t *testing.T) {
	d := newDistribution(map[string]int64{"10": 1, "9": 1, "b": 1, "a": 1, "1": 1}, 0, 0)
	var got []string
	for _, w := range d.Workers {
		got = append(got, w.ID)
	}
	want := []string{"1", "9", "10", "a", "b"}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
