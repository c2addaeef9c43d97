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

// quote is the client's input, escaped (strconv.Quote) and short: at most
// MaxQuoted bytes of the escaped form, cut at a character boundary and
// followed by "…" when cut. It bounds the escaped form, not the input: a
// byte such as '"' or 0x01 takes two to four bytes once escaped.
func quote(s string) string {
	if q := strconv.Quote(s); len(q) <= MaxQuoted+2 {
		return q
	}
	// The longest prefix whose escaped form fits (the length grows with
	// the prefix, so a binary search over character boundaries finds it).
	lo, hi := 0, len(s)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		for mid > lo && mid < len(s) && !utf8.RuneStart(s[mid]) {
			mid--
		}
		if mid == lo || len(strconv.Quote(s[:mid])) > MaxQuoted+2 {
			hi = mid - 1
			if mid == lo {
				break
			}
			continue
		}
		lo = mid
	}
	for lo > 0 && lo < len(s) && !utf8.RuneStart(s[lo]) {
		lo--
	}
	return strconv.Quote(s[:lo]) + "…"
}

// writeJSON writes v as a JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // an API, not a page: '&' stays one byte
	_ = enc.Encode(v)        // the client may be gone; nothing useful to do then
}

// writeError writes {"error": msg} with the given status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
