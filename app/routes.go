package app

import "net/http"

func (a *App) routes(mux *http.ServeMux) {
	a.sharedStateRoutes(mux)
}
