package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// The dashboard is one page and its script and style sheet, embedded: it
// loads nothing from elsewhere, so it works on a machine with no internet.
//
//go:embed dashboard/index.html dashboard/app.js dashboard/style.css
var dashboardFS embed.FS

func (s *server) dashboard(w http.ResponseWriter, r *http.Request) {
	b, err := dashboardFS.ReadFile("dashboard/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "admin: dashboard missing from the build")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(b)
}

// staticFiles serves the page's script and style sheet under /static/.
func staticFiles() http.Handler {
	sub, _ := fs.Sub(dashboardFS, "dashboard")
	fsrv := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fsrv.ServeHTTP(w, r)
	})
}
