// Package admin is herd's control plane, served by the primary: the
// control socket's protocol (ServeControl, for cluster.Options.ServeControl)
// and its typed client (Client: Status, Reload, Upgrade, Scale, Stop,
// WaitReady), and the admin HTTP listener with the Prometheus/OpenMetrics
// endpoint, the live dashboard and its actions.
//
// The admin HTTP listener (Handler, for cluster.Admin.Handler) serves:
//
//	GET  /                          the dashboard (embedded; no external resources)
//	GET  /metrics                   Prometheus text or OpenMetrics, by Accept
//	GET  /api/view                  the dashboard's data, JSON
//	GET  /api/stream                the same as server-sent events, about once a second
//	GET  /api/status                the status document (as herd status --json)
//	POST /api/reload                rolling reload; answers once every worker is replaced
//	POST /api/scale?n=N             run N workers; answers once they are ready
//	POST /api/workers/{id}/restart  replace one worker; answers once the new one serves
//
// Reading needs no token on a loopback listener; on any other it needs the
// token when one is configured, as "Authorization: Bearer TOKEN" or
// "?token=TOKEN" (with none, the operator chose to expose the figures).
// Actions always need the token, and are refused, with the reason, when no
// token is configured.
// Errors are JSON {"error": "..."}.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herd-go/herd/cluster"
)

// actionTimeout bounds how long an action's request waits for the outcome.
const actionTimeout = 10 * time.Minute

// Handler returns the admin plane for a running primary; it is what
// cluster.Admin.Handler wants. It starts a sampler that keeps the
// dashboard's history and stops when the primary's loop ends.
func Handler(ac cluster.AdminContext) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(ac.Plane)); err != nil {
		return nil, fmt.Errorf("admin: registering the collector: %w", err)
	}
	s := &server{ac: ac, hist: newHistory(ac.Plane, time.Second, historyLen)}
	go s.hist.run()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.Handle("GET /static/", staticFiles())
	mux.HandleFunc("GET /api/view", s.view)
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("GET /api/status", s.status)
	mux.HandleFunc("POST /api/reload", s.action(func(ctx context.Context, r *http.Request) (string, error) {
		return "every worker replaced", ac.Plane.Reload(ctx)
	}))
	mux.HandleFunc("POST /api/scale", s.action(func(ctx context.Context, r *http.Request) (string, error) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > 1024 {
			return "", badRequestError{fmt.Sprintf("invalid n %q: must be a whole number from 1 to 1024", r.URL.Query().Get("n"))}
		}
		return fmt.Sprintf("%d workers ready", n), ac.Plane.Scale(ctx, n)
	}))
	mux.HandleFunc("POST /api/workers/{id}/restart", s.action(func(ctx context.Context, r *http.Request) (string, error) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 1 {
			return "", badRequestError{fmt.Sprintf("invalid worker id %q: must be a positive whole number", r.PathValue("id"))}
		}
		return fmt.Sprintf("worker %d replaced", id), ac.Plane.Restart(ctx, id)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.guard(mux), nil
}

type server struct {
	ac   cluster.AdminContext
	hist *history
}

// badRequestError is an action's error caused by its input.
type badRequestError struct{ msg string }

func (e badRequestError) Error() string { return e.msg }

// guard asks for the token where reading needs one.
func (s *server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && !s.ac.Loopback && s.ac.Token != "" && !s.authorized(r) {
			writeError(w, http.StatusUnauthorized, "this admin listener is not on loopback: send the admin token (Authorization: Bearer TOKEN, or ?token=TOKEN)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *server) authorized(r *http.Request) bool {
	if s.ac.Token == "" {
		return false
	}
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.ac.Token)) == 1
}

// actionsWhy says why actions are refused, or "" when they are allowed
// with the token.
func (s *server) actionsWhy() string {
	if s.ac.Token != "" {
		return ""
	}
	if !s.ac.Loopback {
		return "actions are off: this admin listener is not on loopback and no admin token is configured (set --admin-token/ADMIN_TOKEN)"
	}
	return "actions are off: no admin token is configured and none could be written (set --admin-token/ADMIN_TOKEN)"
}

// action wraps a command: token check, then run, then a JSON answer.
func (s *server) action(run func(ctx context.Context, r *http.Request) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if why := s.actionsWhy(); why != "" {
			writeError(w, http.StatusForbidden, why)
			return
		}
		if !s.authorized(r) {
			hint := "send it as Authorization: Bearer TOKEN"
			if s.ac.TokenPath != "" {
				hint += "; the token is in " + s.ac.TokenPath
			}
			writeError(w, http.StatusUnauthorized, "this action needs the admin token: "+hint)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
		defer cancel()
		msg, err := run(ctx, r)
		var br badRequestError
		switch {
		case errors.As(err, &br):
			writeError(w, http.StatusBadRequest, br.msg)
		case errors.Is(err, cluster.ErrExiting):
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case err != nil:
			writeError(w, http.StatusConflict, err.Error())
		default:
			writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message": msg})
		}
	}
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.ac.Plane.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) view(w http.ResponseWriter, r *http.Request) {
	v := s.hist.latest()
	if v == nil {
		writeError(w, http.StatusServiceUnavailable, "no figures yet: try again in a second")
		return
	}
	v.Actions = s.actionsView()
	writeJSON(w, http.StatusOK, v)
}

func (s *server) actionsView() actionsView {
	return actionsView{Allowed: s.ac.Token != "", Why: s.actionsWhy(), TokenPath: s.ac.TokenPath}
}

// stream sends the view as server-sent events each time the sampler
// takes one, until the client goes or the primary exits.
func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	for {
		v, next := s.hist.wait()
		if v != nil {
			v.Actions = s.actionsView()
			b, err := json.Marshal(v)
			if err != nil {
				return
			}
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(w, "event: view\ndata: %s\n\n", b); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		select {
		case <-next:
		case <-r.Context().Done():
			return
		case <-s.ac.Plane.Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
