package app

import "net/http"

// sharedStateRoutes registers the shared-state routes (issue 3). Placeholder
// until the store lands: it registers nothing.
func (a *App) sharedStateRoutes(mux *http.ServeMux) {}
