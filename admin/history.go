package admin

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/herd-go/herd/cluster"
)

// historyLen is how many samples (seconds) the sparklines cover.
const historyLen = 180

// View is what the dashboard shows: one sample of the cluster, with rates
// and latency quantiles over the last interval and a short history.
type View struct {
	Time       time.Time         `json:"time"`
	PrimaryPID int               `json:"primaryPid"`
	Addr       string            `json:"addr"`
	Want       int               `json:"want"`
	Ready      int               `json:"ready"`
	Stale      int               `json:"stale"`
	Backlog    cluster.Backlog   `json:"backlog"`
	Totals     Totals            `json:"totals"`
	Workers    []WorkerView      `json:"workers"`
	Events     []cluster.Event   `json:"events"` // newest first
	Reloads    map[string]uint64 `json:"reloads"`
	Actions    actionsView       `json:"actions"`
	// History of the cluster's requests/s and p99 (ms), oldest first.
	RPSHistory []float64  `json:"rpsHistory"`
	P99History []*float64 `json:"p99History"`
}

// Totals are the cluster's figures summed over its workers.
type Totals struct {
	RPS      float64  `json:"rps"`
	P50      *float64 `json:"p50Ms"` // nil: no request in the interval
	P99      *float64 `json:"p99Ms"`
	Requests uint64   `json:"requests"`
	InFlight int64    `json:"inFlight"`
	Conns    int64    `json:"conns"`
	RSS      uint64   `json:"rss"`
	Restarts uint64   `json:"restarts"`
}

// WorkerView is one worker slot on the dashboard.
type WorkerView struct {
	ID         int               `json:"id"`
	PID        int               `json:"pid"`
	State      string            `json:"state"`
	Stale      bool              `json:"stale"`
	UptimeS    float64           `json:"uptimeS"`
	RPS        float64           `json:"rps"`
	P50        *float64          `json:"p50Ms"`
	P99        *float64          `json:"p99Ms"`
	Requests   uint64            `json:"requests"`
	InFlight   int64             `json:"inFlight"`
	Conns      int64             `json:"conns"`
	RSS        uint64            `json:"rss"`
	Restarts   uint64            `json:"restarts"`
	ByReason   map[string]uint64 `json:"restartsByReason"`
	RPSHistory []float64         `json:"rpsHistory"`
	P99History []*float64        `json:"p99History"`
}

// rate is a worker's requests/s and latencies between two heartbeats.
type rate struct {
	rps   float64
	delta cluster.Histogram
}

type actionsView struct {
	Allowed   bool   `json:"allowed"`
	Why       string `json:"why,omitempty"`
	TokenPath string `json:"tokenPath,omitempty"`
}

// history samples the primary's figures every interval and keeps the last
// n rates per worker slot. Its methods are safe for concurrent use.
type history struct {
	plane    cluster.Plane
	interval time.Duration
	n        int

	mu     sync.Mutex
	prev   *cluster.Metrics
	rates  map[int]rate // by worker slot, over its last two heartbeats
	view   *View
	rps    map[int][]float64
	p99    map[int][]*float64
	allRPS []float64
	allP99 []*float64
	nextC  chan struct{} // closed when a new view is taken
}

func newHistory(pl cluster.Plane, interval time.Duration, n int) *history {
	return &history{plane: pl, interval: interval, n: n, rps: map[int][]float64{}, p99: map[int][]*float64{}, nextC: make(chan struct{})}
}

// run samples until the primary's loop ends.
func (h *history) run() {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	h.sample()
	for {
		select {
		case <-h.plane.Done():
			return
		case <-t.C:
			h.sample()
		}
	}
}

func (h *history) sample() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := h.plane.Metrics(ctx)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v := &View{Time: m.Time, PrimaryPID: m.PrimaryPID, Addr: m.Addr, Want: m.Want, Ready: m.Ready, Stale: m.Stale,
		Backlog: m.Backlog, Reloads: m.Reloads}
	prev := map[int]cluster.WorkerMetrics{}
	if h.prev != nil {
		for _, w := range h.prev.Workers {
			prev[w.ID] = w
		}
	}
	rows := map[int]rate{}
	var allDelta cluster.Histogram
	var allReqs float64
	for _, w := range m.Workers {
		wv := WorkerView{ID: w.ID, PID: w.PID, State: w.State, Stale: w.Stale, Requests: w.Requests,
			InFlight: w.InFlight, Conns: w.Conns, RSS: w.RSS, ByReason: w.Restarts}
		if w.PID != 0 {
			wv.UptimeS = m.Time.Sub(w.Started).Seconds()
		}
		for _, n := range w.Restarts {
			wv.Restarts += n
		}
		// Figures change once per heartbeat: a rate is over the time
		// between two heartbeats, and holds until the next one arrives.
		r := h.rates[w.ID]
		if p, ok := prev[w.ID]; ok {
			if dt := w.LastBeat.Sub(p.LastBeat).Seconds(); dt > 0 && w.PID == p.PID {
				r = rate{rps: float64(w.Requests-min(p.Requests, w.Requests)) / dt, delta: w.Latency.Sub(p.Latency)}
			} else if w.PID != p.PID {
				r = rate{}
			}
		}
		rows[w.ID] = r
		wv.RPS = r.rps
		if r.delta.Count() > 0 {
			wv.P50, wv.P99 = ms(r.delta.Quantile(.5)), ms(r.delta.Quantile(.99))
		}
		allDelta = allDelta.Add(r.delta)
		allReqs += r.rps
		h.rps[w.ID] = push(h.rps[w.ID], wv.RPS, h.n)
		h.p99[w.ID] = push(h.p99[w.ID], wv.P99, h.n)
		wv.RPSHistory = append([]float64(nil), h.rps[w.ID]...)
		wv.P99History = append([]*float64(nil), h.p99[w.ID]...)
		v.Workers = append(v.Workers, wv)
		v.Totals.Requests += w.Requests
		v.Totals.InFlight += w.InFlight
		v.Totals.Conns += w.Conns
		v.Totals.RSS += w.RSS
		v.Totals.Restarts += wv.Restarts
	}
	h.rates = rows
	v.Totals.RPS = allReqs
	v.Totals.P50, v.Totals.P99 = ms(allDelta.Quantile(.5)), ms(allDelta.Quantile(.99))
	h.allRPS = push(h.allRPS, v.Totals.RPS, h.n)
	h.allP99 = push(h.allP99, v.Totals.P99, h.n)
	v.RPSHistory = append([]float64(nil), h.allRPS...)
	v.P99History = append([]*float64(nil), h.allP99...)
	for i := len(m.Events) - 1; i >= 0 && len(v.Events) < 30; i-- {
		v.Events = append(v.Events, m.Events[i])
	}
	h.prev = &m
	h.view = v
	close(h.nextC)
	h.nextC = make(chan struct{})
}

// latest returns a copy of the newest view (nil before the first sample).
func (h *history) latest() *View {
	v, _ := h.wait()
	return v
}

// wait returns a copy of the newest view and a channel closed when the
// next one is taken.
func (h *history) wait() (*View, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.view == nil {
		return nil, h.nextC
	}
	v := *h.view
	return &v, h.nextC
}

func push[T any](s []T, v T, n int) []T {
	s = append(s, v)
	if len(s) > n {
		s = append(s[:0], s[len(s)-n:]...)
	}
	return s
}

// ms converts seconds to milliseconds; NaN (no observation) becomes nil.
func ms(s float64) *float64 {
	if math.IsNaN(s) {
		return nil
	}
	v := math.Round(s*1e6) / 1e3
	return &v
}
