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
		{"noise", map[string]int64{"1": 110, "2": 95, "3": 100, "4": 95}, "balanced"},
		{"60/40 on two", map[string]int64{"1": 60, "2": 40}, "balanced"},
		{"hot worker", map[string]int64{"1": 10, "2": 10, "3": 70, "4": 10}, "skewed: worker 3 served 70%"},
		// 1.56 times its share among 8 passes the index (0.957) but not the share rule.
		{"hot among 8", map[string]int64{"1": 17, "2": 10, "3": 10, "4": 10, "5": 10, "6": 10, "7": 10, "8": 10}, "skewed: worker 1 served 20%"},
		{"2:1 on two", map[string]int64{"1": 66, "2": 34}, "skewed: worker 1 served 66%"},
		{"35/25/20/20", map[string]int64{"1": 35, "2": 25, "3": 20, "4": 20}, "skewed: worker 1 served 35%"},
		// No worker above 1.5x its share, but one starved: the index catches it.
		{"starved", map[string]int64{"1": 33, "2": 33, "3": 33, "4": 1}, "skewed: worker 4 served 1%"},
		{"names", map[string]int64{"b": 1, "a": 9}, "skewed: worker a served 90%"},
		// Under 1.5x on two workers, but the index is 0.885: the busier one is named.
		{"68/32 on two", map[string]int64{"1": 32, "2": 68}, "skewed: worker 2 served 68%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newDistribution(tt.counts, 0, 0).Verdict; got != tt.want {
				t.Errorf("verdict for %v = %q, want %q", tt.counts, got, tt.want)
			}
		})
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
