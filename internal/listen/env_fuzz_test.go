package listen

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	for _, tc := range []struct {
		fds, names string
		set        bool
		want       []string
		ok         bool
	}{
		{"", "", false, nil, true},
		{"0", "", true, nil, true},
		{"1", "http", true, []string{"http"}, true},
		{"2", "http:admin", true, []string{"http", "admin"}, true},
		{"2", "http:http", true, nil, false}, // a name twice would leak a descriptor
		{"1", "", true, []string{""}, true},
		{"2", "http", true, nil, false},
		{"x", "http", true, nil, false},
		{"-1", "", true, nil, false},
		{"65", "", true, nil, false},
		{"", "", true, nil, false},
	} {
		got, err := ParseEnv(tc.fds, tc.names, tc.set)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ParseEnv(%q, %q, %v) = %q, %v; want %q, ok %v", tc.fds, tc.names, tc.set, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzParseEnv: whatever LISTEN_FDS and LISTEN_FDNAMES hold, ParseEnv
// returns an error or names that match the count, are distinct, and come
// back the same through Env (what a primary sets for its workers).
func FuzzParseEnv(f *testing.F) {
	f.Add("1", "http", true)
	f.Add("2", "http:admin", true)
	f.Add("0", "", true)
	f.Add("3", "a::b", true)
	f.Add("2", "x:x", true)
	f.Add("+1", "a", true)
	f.Add("99999999999999999999", "", true)
	f.Fuzz(func(t *testing.T, fds, fdNames string, set bool) {
		names, err := ParseEnv(fds, fdNames, set)
		if err != nil {
			if len(err.Error()) > 400 {
				t.Fatalf("error of %d bytes quotes too much: %.100q", len(err.Error()), err)
			}
			return
		}
		if len(names) > maxInherited {
			t.Fatalf("%d names, more than %d", len(names), maxInherited)
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] || strings.Contains(n, ":") {
				t.Fatalf("ParseEnv(%q, %q) = %q: a name twice or with a colon", fds, fdNames, names)
			}
			seen[n] = true
		}
		named := make([]Named, len(names))
		for i, n := range names {
			named[i] = Named{Name: n, File: os.Stdin}
		}
		env := Env(named)
		again, err := ParseEnv(strings.TrimPrefix(env[0], EnvFDs+"="), strings.TrimPrefix(env[1], EnvFDNames+"="), true)
		if err != nil || !slices.Equal(again, names) {
			t.Fatalf("names %q through Env: %q, %v", names, again, err)
		}
	})
}
