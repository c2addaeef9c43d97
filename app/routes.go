package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/herd-go/herd/internal/procstat"
)

// Limits of the demo routes.
const (
	// MaxSumN is where /api/{n} clamps n, as the reference does. The sum
	// 0..MaxSumN fits in a uint64.
	MaxSumN = 5_000_000_000
	// MaxFibN bounds /cluster/cpu-intensive: fib(45) takes seconds already.
	MaxFibN = 45
	// MaxBody bounds request bodies of the JSON routes.
	MaxBody = 1 << 20
)

func (a *App) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("GET /pid", a.pidRoute)
	mux.HandleFunc("GET /api/{n}", a.sum)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /cluster/info", a.info)
	mux.HandleFunc("GET /cluster/workers", a.workers)
	mux.HandleFunc("POST /cluster/cpu-intensive", a.cpuIntensive)
	mux.HandleFunc("GET /cluster/local-state", a.localState)
	mux.HandleFunc("POST /cluster/crash", a.crash)
	mux.HandleFunc("GET /cluster/memory", a.memory)
	a.sharedStateRoutes(mux)
	mux.HandleFunc("/", a.notFound)
}

// notFound answers what no route matched: 405 with Allow when the path
// exists under other methods, 404 otherwise, as JSON. It is off the hot path.
func (a *App) notFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := *r // the mux reads only the method, host and path: no deep copy needed
		probe.Method = m
		if _, pattern := a.mux.Handler(&probe); pattern != "/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed,
			fmt.Sprintf("method %s not allowed on %s; allowed: %s", clip(r.Method), clip(r.URL.Path), strings.Join(allowed, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", clip(r.Method), clip(r.URL.Path)))
}

func (a *App) hello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "Hello World!")
}

func (a *App) pidRoute(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int{"processid": a.pid})
}

// sum is the CPU-bound demo load: it really loops over 0..n.
func (a *App) sum(w http.ResponseWriter, r *http.Request) {
	s := r.PathValue("n")
	n, ok := parseSumN(s)
	if !ok {
		writeError(w, http.StatusBadRequest,
			fmt.Sprintf("n must be a whole number from 0 (values above %d are clamped to it), got %s", MaxSumN, quote(s)))
		return
	}
	total, ok := Sum(r.Context(), n)
	if !ok {
		return // the client went away; nobody is listening
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Final count is %d %d", total, a.pid)
}

// parseSumN reads /api/{n}'s n: decimal digits, optionally after a sign.
// Any such number above MaxSumN, however long, is MaxSumN, as the message
// says and as the reference's parseInt does; a negative number (but -0)
// and anything else are not ok.
func parseSumN(s string) (uint64, bool) {
	digits, negative := s, false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		digits, negative = s[1:], s[0] == '-'
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	if negative {
		return 0, strings.TrimLeft(digits, "0") == ""
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > MaxSumN { // only ErrRange is left: too many digits
		return MaxSumN, true
	}
	return n, true
}

// Sum adds the integers 0..n one by one, stopping early (ok false) when ctx
// ends. n must be at most MaxSumN so that the total fits in a uint64.
func Sum(ctx context.Context, n uint64) (total uint64, ok bool) {
	const chunk = 1 << 22 // ~a millisecond of work between checks
	for lo := uint64(0); ; lo += chunk {
		hi := min(lo+chunk-1, n)
		for i := lo; i <= hi; i++ {
			total += i
		}
		if hi == n {
			return total, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
	}
}

func (a *App) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining", "error": "this worker is shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type workerRef struct {
	ID  int `json:"id"`
	PID int `json:"pid"`
}

func (a *App) ref() workerRef { return workerRef{ID: a.opts.WorkerID, PID: a.pid} }

// MB formats a byte count the way the reference does: "45.23 MB".
func MB(b uint64) string { return fmt.Sprintf("%.2f MB", float64(b)/(1<<20)) }

func (a *App) info(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	backend := "none"
	if a.opts.Store != nil {
		backend = a.opts.Store.Backend()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"worker": map[string]any{
			"id": a.opts.WorkerID, "pid": a.pid,
			"isPrimary": a.opts.WorkerID == 0, "isWorker": a.opts.WorkerID != 0,
		},
		"system": map[string]any{
			"cpus": runtime.NumCPU(), "usableCpus": runtime.GOMAXPROCS(0),
			"platform": runtime.GOOS, "goVersion": runtime.Version(),
		},
		"memory": map[string]string{
			"rss": MB(procstat.RSS()), "heapUsed": MB(ms.HeapAlloc), "heapTotal": MB(ms.HeapSys),
		},
		"stats": map[string]any{
			"requestCount": a.requests.Load(),
			"uptime":       fmt.Sprintf("%.2fs", time.Since(a.started).Seconds()),
		},
		"sharedState": map[string]string{"backend": backend},
	})
}

func (a *App) workers(w http.ResponseWriter, r *http.Request) {
	if a.opts.Cluster == nil {
		writeJSON(w, http.StatusOK, map[string]any{
			"primary": map[string]int{"pid": a.pid},
			"workers": []WorkerInfo{},
			"count":   0,
			"mode":    "single process: no workers",
		})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ppid, ws, err := a.opts.Cluster.Workers(ctx)
	if err != nil {
		a.opts.Logger.Warn("listing workers failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the primary did not answer: "+err.Error())
		return
	}
	if ws == nil {
		ws = []WorkerInfo{}
	}
	for i := range ws {
		// The reference names a serving worker "online"; herd's own
		// state names stay in herd status and the metrics.
		if ws[i].State == StateReady {
			ws[i].State = StateOnline
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"primary": map[string]int{"pid": ppid},
		"workers": ws,
		"count":   len(ws),
	})
}

// decodeBody decodes a JSON object from r's body (at most MaxBody bytes)
// into v, answering 400 or 413 itself when it cannot. It reports success.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	err := dec.Decode(v)
	if err == nil {
		// Only whitespace may follow, and it counts against the limit too
		// (dec.More would hide a MaxBytesError behind "no more").
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
			var tooBig *http.MaxBytesError
			if errors.As(terr, &tooBig) {
				err = terr
			}
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBody))
		return false
	}
	writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
	return false
}

func (a *App) cpuIntensive(w http.ResponseWriter, r *http.Request) {
	var req struct {
		N json.RawMessage `json:"n"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(req.N)))
	if err != nil || n < 0 || n > MaxFibN {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"n" must be an integer from 0 to %d`, MaxFibN))
		return
	}
	start := time.Now()
	result, ok := Fib(r.Context(), n)
	if !ok {
		return
	}
	ms := time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, map[string]any{
		"worker": a.ref(),
		"calculation": map[string]any{
			"input": n, "result": result, "duration": fmt.Sprintf("%dms", ms),
		},
		"message": fmt.Sprintf("Fibonacci(%d) = %d calculated in %dms by worker %d", n, result, ms, a.opts.WorkerID),
	})
}

// Fib computes the nth Fibonacci number the slow, recursive way (it is the
// demo's CPU load), giving up (ok false) when ctx ends.
func Fib(ctx context.Context, n int) (uint64, bool) {
	var fib func(int) uint64
	cancelled := false
	fib = func(n int) uint64 {
		if n < 2 {
			return uint64(n) //nolint:gosec // G115: n is 0 or 1 here
		}
		if n >= 25 && ctx.Err() != nil { // rare enough to cost nothing
			cancelled = true
			return 0
		}
		return fib(n-1) + fib(n-2)
	}
	v := fib(n)
	return v, !cancelled
}

func (a *App) localState(w http.ResponseWriter, r *http.Request) {
	n := a.local.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{
		"worker":       a.ref(),
		"requestCount": n,
		"message":      fmt.Sprintf("This counter is local to worker %d and not shared between workers", a.opts.WorkerID),
		"explanation":  "Each worker is its own process with its own memory. Use /cluster/shared-state or /cluster/counter for state every worker sees.",
	})
}

func (a *App) crash(w http.ResponseWriter, r *http.Request) {
	if !a.opts.EnableCrash {
		writeError(w, http.StatusNotFound, "the crash endpoint is disabled; start herd with --enable-crash-endpoint to use it")
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxBody)) // an unread body would turn our close into a reset
	body, _ := json.Marshal(map[string]any{
		"message":  fmt.Sprintf("Worker %d (PID: %d) is crashing... the primary will replace it", a.opts.WorkerID, a.pid),
		"workerId": a.opts.WorkerID,
		"pid":      a.pid,
	})
	// A Content-Length makes the response complete once flushed: with the
	// chunked encoding, the final chunk is only written after the handler
	// returns, which it never does here.
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	_ = http.NewResponseController(w).Flush()
	a.opts.Logger.Warn("crashing on request", "reason", "POST /cluster/crash")
	a.opts.Exit(1)
}

func (a *App) memory(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rs := procstat.RSS()
	writeJSON(w, http.StatusOK, map[string]any{
		"worker": a.ref(),
		"memory": map[string]string{
			"rss": MB(rs), "heapAlloc": MB(ms.HeapAlloc), "heapSys": MB(ms.HeapSys),
			"heapInuse": MB(ms.HeapInuse), "stackInuse": MB(ms.StackInuse), "sys": MB(ms.Sys),
		},
		"bytes": map[string]uint64{
			"rss": rs, "heapAlloc": ms.HeapAlloc, "heapSys": ms.HeapSys,
			"heapInuse": ms.HeapInuse, "stackInuse": ms.StackInuse, "sys": ms.Sys,
		},
		"numGC":      ms.NumGC,
		"goroutines": runtime.NumGoroutine(),
	})
}
