package app

import (
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// MaxQuoted is how many bytes of the client's own input an error message
// quotes at most; longer input is cut at a character boundary and ends in
// "…", so that a 100 KB URL gets a short error, not a 100 KB one.
const MaxQuoted = 64

// clip returns s cut to at most MaxQuoted bytes (at a UTF-8 boundary),
// followed by "…" when it was cut.
func clip(s string) string {
	if len(s) <= MaxQuoted {
		return s
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quote is strconv.Quote of clip(s): the client's input, short and escaped.
func quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	c := clip(s)
	return strconv.Quote(c[:len(c)-len("…")]) + "…"
}

// writeJSON writes v as a JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may be gone; nothing useful to do then
}

// writeError writes {"error": msg} with the given status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
