package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// FuzzReadDotenv: any .env file gives an error or settings with proper
// keys, and the settings it gives, written back one per line as KEY='VALUE',
// read back the same.
func FuzzReadDotenv(f *testing.F) {
	for _, s := range []string{
		"PORT=3102\n",
		"# comment\nexport HOST=127.0.0.1\n\nREDIS_URL=\"redis://:s3cret@localhost:6379/0\"\n",
		"A='single # not a comment'\nB=value # a comment\nC=\n",
		"=novalue\n", "NOEQUALS\n", "BAD KEY=1\n", "K=\"unterminated\n", "K='\n", "\xff=\xfe\n",
		"K=" + strings.Repeat("v", 70000) + "\n",
		"WINDOWS=1\r\nLINES=2\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, ".env")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		vals, err := readDotenv(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		keys := make([]string, 0, len(vals))
		for k, v := range vals {
			if k == "" || strings.ContainsAny(k, " \t\n=") || strings.HasPrefix(k, "#") {
				t.Fatalf("%q: key %q", data, k)
			}
			if strings.Contains(v.val, "\n") {
				t.Fatalf("%q: value of %s spans lines: %q", data, k, v.val)
			}
			if v.line < 1 || v.line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("%q: %s from line %d", data, k, v.line)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s='%s'\n", k, vals[k].val)
		}
		again := filepath.Join(dir, "again.env")
		if err := os.WriteFile(again, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readDotenv(again)
		if err != nil || !maps.Equal(values(got), values(vals)) {
			t.Fatalf("%q read %q; written back as %q it reads %q, %v", data, values(vals), b.String(), values(got), err)
		}
	})
}

// values drops the line numbers, which a rewritten file does not keep.
func values(m map[string]dotenvEntry) map[string]string {
	out := make(map[string]string, len(m))
	for k, e := range m {
		out[k] = e.val
	}
	return out
}
