package cluster

import (
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Restart reasons, as counted per worker in Metrics.
const (
	ReasonCrash            = "crash"             // exited or was killed on its own
	ReasonHung             = "hung"              // killed: no heartbeat, or never ready
	ReasonRecycledRequests = "recycled-requests" // Recycle.MaxRequests reached
	ReasonRecycledMemory   = "recycled-memory"   // Recycle.MaxRSS exceeded
	ReasonReload           = "reload"            // a rolling reload replaced it
	ReasonRestart          = "restart"           // replaced on request (admin)
	ReasonUnhealthy        = "unhealthy"         // could not accept connections for Options.WorkerTimeout
)

// RestartReasons lists every restart reason.
var RestartReasons = []string{ReasonCrash, ReasonHung, ReasonRecycledRequests, ReasonRecycledMemory, ReasonReload, ReasonRestart, ReasonUnhealthy}

// StateStopped is a worker slot with no process: scaled away, or waiting
// to be restarted.
const StateStopped = "stopped"

// WorkerMetrics is one worker slot's figures: counters summed over every
// process that has served the slot, so they never go backwards when a
// worker dies or is replaced, and gauges of the live process(es).
type WorkerMetrics struct {
	ID       int       `json:"id"`
	PID      int       `json:"pid"`     // the newest live process (0: none)
	State    string    `json:"state"`   // of that process, or StateStopped
	Started  time.Time `json:"started"` // when that process started
	Stale    bool      `json:"stale"`   // a live process missed its heartbeats
	LastBeat time.Time `json:"lastBeat"`

	Requests uint64            `json:"requests"` // requests served, ever
	Restarts map[string]uint64 `json:"restarts"` // by reason, ever
	Figures                    // routes and latency summed; in-flight and connections now

	RSS        uint64 `json:"rss"`
	HeapAlloc  uint64 `json:"heapAlloc"`
	Goroutines int    `json:"goroutines"`
}

// Metrics is the cluster's figures as the primary holds them: what a
// scrape reads. Taking it never waits on a worker.
type Metrics struct {
	Time       time.Time         `json:"time"`
	PrimaryPID int               `json:"primaryPid"`
	Addr       string            `json:"addr"`
	Want       int               `json:"want"`
	Ready      int               `json:"ready"` // serving: ready and able to accept (not StateUnhealthy)
	Stale      int               `json:"stale"` // live workers whose heartbeats are overdue
	Workers    []WorkerMetrics   `json:"workers"`
	Reloads    map[string]uint64 `json:"reloads"`  // by outcome: ok, failed
	Upgrades   map[string]uint64 `json:"upgrades"` // by outcome: ok, failed
	Backlog    Backlog           `json:"backlog"`
	Balance    Balance           `json:"balance"`         // the policy
	Passing    bool              `json:"primaryPasses"`   // the primary accepts and passes new connections now (false: the workers accept from the shared queue)
	Switches   uint64            `json:"balanceSwitches"` // BalanceAuto's switches between passing and the workers accepting, ever
	Calls      []CallMetrics     `json:"calls"`
	Events     []Event           `json:"events"` // oldest first
}

// Backlog is the listening socket's accept queue, from the kernel.
type Backlog struct {
	Known  bool   `json:"known"`  // false where the kernel does not tell
	Queued uint32 `json:"queued"` // connections waiting to be accepted
	Limit  uint32 `json:"limit"`  // the queue's length limit
}

// CallMetrics counts the workers' calls to the primary (Options.Calls:
// the shared store) of one method.
type CallMetrics struct {
	Method  string    `json:"method"`
	Calls   uint64    `json:"calls"`
	Errors  uint64    `json:"errors"`
	Latency Histogram `json:"latency"`
}

// Event is one thing that happened to the cluster.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // started, ready, died, stopped, reload, upgrade, scale
	Worker int       `json:"worker,omitempty"`
	PID    int       `json:"pid,omitempty"`
	Text   string    `json:"text"`
}

// maxEvents bounds the primary's ring of recent events.
const maxEvents = 100

// slotMetrics is what a slot keeps of its dead processes. Owned by the loop.
type slotMetrics struct {
	gone     Figures // summed counters of the slot's exited processes
	goneReqs uint64
	restarts map[string]uint64
}

// primaryMetrics holds the primary's own figures. The loop owns reloads,
// upgrades and the events; calls are counted from IPC goroutines.
type primaryMetrics struct {
	reloads, upgrades map[string]uint64
	events            []Event // ring: next write at head once full
	head              int

	callsMu sync.Mutex
	calls   map[string]*callCounters
}

type callCounters struct {
	calls, errors atomic.Uint64
	buckets       []atomic.Uint64
	sumNanos      atomic.Uint64
}

// maxCallMethods bounds the methods counted separately; more count as "other".
const maxCallMethods = 64

func newPrimaryMetrics() *primaryMetrics {
	return &primaryMetrics{
		reloads: map[string]uint64{"ok": 0, "failed": 0}, upgrades: map[string]uint64{"ok": 0, "failed": 0},
		calls: map[string]*callCounters{},
	}
}

// observeCall counts one call answered by Options.Calls. Safe for
// concurrent use.
func (m *primaryMetrics) observeCall(method string, d time.Duration, err error) {
	m.callsMu.Lock()
	c := m.calls[method]
	if c == nil {
		if len(m.calls) >= maxCallMethods {
			method = "other"
			c = m.calls[method]
		}
		if c == nil {
			c = &callCounters{buckets: make([]atomic.Uint64, len(LatencyBuckets)+1)}
			m.calls[method] = c
		}
	}
	m.callsMu.Unlock()
	c.calls.Add(1)
	if err != nil {
		c.errors.Add(1)
	}
	c.buckets[sortSearch(d.Seconds())].Add(1)
	c.sumNanos.Add(uint64(d)) //nolint:gosec // G115: a duration on the monotonic clock, never negative
}

func sortSearch(s float64) int { return sort.SearchFloat64s(LatencyBuckets, s) }

func (m *primaryMetrics) callMetrics() []CallMetrics {
	m.callsMu.Lock()
	defer m.callsMu.Unlock()
	out := make([]CallMetrics, 0, len(m.calls))
	for name, c := range m.calls {
		cm := CallMetrics{Method: name, Calls: c.calls.Load(), Errors: c.errors.Load(),
			Latency: Histogram{Counts: make([]uint64, len(c.buckets)), Sum: float64(c.sumNanos.Load()) / float64(time.Second)}}
		for i := range c.buckets {
			cm.Latency.Counts[i] = c.buckets[i].Load()
		}
		out = append(out, cm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Method < out[j].Method })
	return out
}

// event records e in the ring. Call it in the loop.
func (p *primary) event(kind string, worker, pid int, text string) {
	e := Event{Time: p.now(), Kind: kind, Worker: worker, PID: pid, Text: text}
	m := p.mx
	if len(m.events) < maxEvents {
		m.events = append(m.events, e)
		return
	}
	m.events[m.head] = e
	m.head = (m.head + 1) % maxEvents
}

// retireKind maps a replace reason to the restart reason it counts as.
func retireKind(reason string) string {
	switch {
	case reason == "reload":
		return ReasonReload
	case reason == "restart":
		return ReasonRestart
	case strings.HasPrefix(reason, "recycle: served"):
		return ReasonRecycledRequests
	case strings.HasPrefix(reason, "recycle: RSS"):
		return ReasonRecycledMemory
	case strings.HasPrefix(reason, "recycle: unhealthy"):
		return ReasonUnhealthy
	}
	return reason
}

// noteExit carries an exited process's last figures into its slot's
// totals and counts why it went. Call it in the loop, before anything
// else forgets pr.
func (p *primary) noteExit(pr *proc, e evExited) {
	s := p.slot(pr.id)
	s.m.gone = s.m.gone.addCounters(pr.hb.Figures)
	s.m.goneReqs += pr.hb.Requests
	if s.m.restarts == nil {
		s.m.restarts = map[string]uint64{}
	}
	how := exitWords(e, pr.killReason)
	switch {
	case pr.retire != "" && pr.stopping:
		s.m.restarts[pr.retire]++
		p.event("stopped", pr.id, pr.pid, "replaced ("+pr.retire+"); "+how)
	case pr.stopping || p.shutting:
		p.event("stopped", pr.id, pr.pid, how)
	case pr.killReason != "":
		s.m.restarts[ReasonHung]++
		p.event("died", pr.id, pr.pid, how)
	default:
		s.m.restarts[ReasonCrash]++
		p.event("died", pr.id, pr.pid, how)
	}
}

// noteOutcome counts a reload's or upgrade's outcome. Call it in the loop.
func (p *primary) noteOutcome(what string, err error) {
	m := p.mx.reloads
	if what == "upgrade" {
		m = p.mx.upgrades
	}
	if err != nil {
		m["failed"]++
		p.event(what, 0, 0, what+" failed: "+err.Error())
		return
	}
	m["ok"]++
	p.event(what, 0, 0, what+" finished")
}

// staleAfter is how long a live worker may go without a heartbeat before
// a scrape marks it stale.
func (p *primary) staleAfter() time.Duration {
	return max(3*p.opts.HeartbeatInterval, time.Second)
}

// metrics snapshots the figures. Call it in the loop; it reads only what
// the primary holds.
func (p *primary) metrics() Metrics {
	now := p.now()
	m := Metrics{Time: now, PrimaryPID: os.Getpid(), Addr: p.addr(), Want: p.want, Ready: p.readyCount() - p.unhealthyCount(),
		Reloads: copyCounts(p.mx.reloads), Upgrades: copyCounts(p.mx.upgrades),
		Balance: p.opts.Balance}
	m.Passing, m.Switches = p.disp.mode()
	ids := make([]int, 0, len(p.slots))
	for id := range p.slots {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		s := p.slots[id]
		wm := WorkerMetrics{ID: id, State: StateStopped, Requests: s.m.goneReqs, Figures: s.m.gone.addCounters(Figures{}),
			Restarts: map[string]uint64{}}
		for _, r := range RestartReasons {
			wm.Restarts[r] = s.m.restarts[r]
		}
		for _, pr := range p.procs {
			if pr.id != id {
				continue
			}
			wm.Requests += pr.hb.Requests
			wm.Figures = wm.addCounters(pr.hb.Figures)
			wm.InFlight += pr.hb.InFlight
			wm.Conns += pr.hb.Conns
			wm.RSS += pr.hb.RSS
			wm.HeapAlloc += pr.hb.HeapAlloc
			wm.Goroutines += pr.hb.Goroutines
			// A program under herd run that sends no WATCHDOG=1 has no
			// heartbeat to miss: its figures are the primary's own samples.
			if pr.state != StateStarting && pr.beating && now.Sub(pr.lastBeat) > p.staleAfter() {
				wm.Stale = true
			}
			if wm.PID == 0 || pr.started.After(wm.Started) {
				wm.PID, wm.State, wm.Started, wm.LastBeat = pr.pid, pr.shownState(), pr.started, pr.lastBeat
			}
		}
		if wm.Stale {
			m.Stale++
		}
		m.Workers = append(m.Workers, wm)
	}
	m.Events = make([]Event, 0, len(p.mx.events))
	m.Events = append(m.Events, p.mx.events[p.mx.head:]...)
	m.Events = append(m.Events, p.mx.events[:p.mx.head]...)
	return m
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
