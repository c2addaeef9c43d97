package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-go/herd/cluster"
)

// States a worker slot can be in, as herd_worker_state's state label.
var workerStates = []string{cluster.StateStarting, cluster.StateReady, cluster.StateUnhealthy, cluster.StateDraining, cluster.StateStopped}

// statusClasses label responses by the first digit of their code.
var statusClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// collector turns the primary's figures into Prometheus metrics at every
// scrape. It holds no figures itself: a scrape reads what the primary
// already holds and never waits on a worker.
type collector struct {
	plane   cluster.Plane
	timeout time.Duration

	requests, duration, inFlight, conns, rss, heap, goroutines, restarts, state, stale *prometheus.Desc
	wanted, ready, backlogQueued, backlogLimit, reloads, upgrades, staleWorkers        *prometheus.Desc
	passing, switches                                                                  *prometheus.Desc
	storeCalls, storeErrors, storeDuration                                             *prometheus.Desc
}

// Metric names; the README lists them all.
func newCollector(pl cluster.Plane) *collector {
	w := []string{"worker"}
	d := prometheus.NewDesc
	return &collector{
		plane:   pl,
		timeout: 5 * time.Second,

		requests:   d("herd_worker_requests_total", "Responses by worker slot, ServeMux route pattern and status class; survives worker restarts.", []string{"worker", "route", "code"}, nil),
		duration:   d("herd_worker_request_duration_seconds", "Request latency by worker slot; survives worker restarts.", w, nil),
		inFlight:   d("herd_worker_in_flight_requests", "Requests being served now.", w, nil),
		conns:      d("herd_worker_open_connections", "Open client connections.", w, nil),
		rss:        d("herd_worker_resident_memory_bytes", "Resident memory of the worker process.", w, nil),
		heap:       d("herd_worker_heap_bytes", "Go heap in use (HeapAlloc) of the worker process.", w, nil),
		goroutines: d("herd_worker_goroutines", "Goroutines of the worker process.", w, nil),
		restarts:   d("herd_worker_restarts_total", "Worker processes replaced, by reason: crash, hung, recycled-requests, recycled-memory, reload, restart, unhealthy.", []string{"worker", "reason"}, nil),
		state:      d("herd_worker_state", "1 for the worker slot's current state, 0 for the others.", []string{"worker", "state"}, nil),
		stale:      d("herd_worker_stale", "1 when the worker's heartbeats are overdue: its figures are the last it sent.", w, nil),

		wanted:        d("herd_workers_wanted", "Workers the primary wants running.", nil, nil),
		ready:         d("herd_workers_ready", "Workers serving now.", nil, nil),
		backlogQueued: d("herd_listen_backlog_queued", "Connections waiting in the listening socket's accept queue (kernel TCP_INFO).", nil, nil),
		backlogLimit:  d("herd_listen_backlog_limit", "Length limit of the listening socket's accept queue.", nil, nil),
		reloads:       d("herd_reloads_total", "Rolling reloads by outcome.", []string{"outcome"}, nil),
		upgrades:      d("herd_upgrades_total", "Binary upgrades by outcome.", []string{"outcome"}, nil),
		staleWorkers:  d("herd_scrape_stale_workers", "Live workers whose heartbeats were overdue at this scrape.", nil, nil),
		switches:      d("herd_balance_switches_total", "Times --balance auto switched between the primary passing new connections and the workers accepting them (either way).", []string{"policy"}, nil),
		passing:       d("herd_balance_primary_passes", "1 while the primary accepts new connections and passes each to a worker (least-conn, sticky; auto at low rates), 0 while the workers accept from the shared queue (shared, herd run; auto under connection churn).", []string{"policy"}, nil),

		storeCalls:    d("herd_store_calls_total", "Workers' calls answered by the primary (the embedded shared store), by method.", []string{"method"}, nil),
		storeErrors:   d("herd_store_call_errors_total", "Those calls that failed, by method.", []string{"method"}, nil),
		storeDuration: d("herd_store_call_duration_seconds", "Time the primary took to answer a call, by method.", []string{"method"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.duration, c.inFlight, c.conns, c.rss, c.heap, c.goroutines,
		c.restarts, c.state, c.stale, c.wanted, c.ready, c.backlogQueued, c.backlogLimit, c.reloads, c.upgrades,
		c.staleWorkers, c.passing, c.switches, c.storeCalls, c.storeErrors, c.storeDuration} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	m, err := c.plane.Metrics(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.wanted, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, wm := range m.Workers {
		id := strconv.Itoa(wm.ID)
		for _, r := range wm.Routes {
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			for i, n := range r.Classes {
				if n > 0 {
					counter(c.requests, float64(n), id, route, statusClasses[i])
				}
			}
		}
		ch <- histogram(c.duration, wm.Latency, id)
		gauge(c.inFlight, float64(wm.InFlight), id)
		gauge(c.conns, float64(wm.Conns), id)
		gauge(c.rss, float64(wm.RSS), id)
		gauge(c.heap, float64(wm.HeapAlloc), id)
		gauge(c.goroutines, float64(wm.Goroutines), id)
		for _, reason := range cluster.RestartReasons {
			counter(c.restarts, float64(wm.Restarts[reason]), id, reason)
		}
		for _, s := range workerStates {
			v := 0.0
			if wm.State == s {
				v = 1
			}
			gauge(c.state, v, id, s)
		}
		gauge(c.stale, b2f(wm.Stale), id)
	}
	gauge(c.wanted, float64(m.Want))
	gauge(c.ready, float64(m.Ready))
	if m.Backlog.Known {
		gauge(c.backlogQueued, float64(m.Backlog.Queued))
		gauge(c.backlogLimit, float64(m.Backlog.Limit))
	}
	for _, o := range []string{"ok", "failed"} {
		counter(c.reloads, float64(m.Reloads[o]), o)
		counter(c.upgrades, float64(m.Upgrades[o]), o)
	}
	gauge(c.staleWorkers, float64(m.Stale))
	gauge(c.passing, b2f(m.Passing), string(m.Balance))
	counter(c.switches, float64(m.Switches), string(m.Balance))
	for _, cm := range m.Calls {
		counter(c.storeCalls, float64(cm.Calls), cm.Method)
		counter(c.storeErrors, float64(cm.Errors), cm.Method)
		ch <- histogram(c.storeDuration, cm.Latency, cm.Method)
	}
}

// histogram converts a cluster.Histogram to a Prometheus one (cumulative
// buckets).
func histogram(d *prometheus.Desc, h cluster.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(cluster.LatencyBuckets))
	var cum uint64
	for i, le := range cluster.LatencyBuckets {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[le] = cum
	}
	m, err := prometheus.NewConstHistogram(d, h.Count(), h.Sum, buckets, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// constMetric is prometheus.NewConstMetric that reports an error as an
// invalid metric (the scrape says so) instead of panicking.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
