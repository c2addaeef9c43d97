// Package procstat reads figures about this process from the OS.
package procstat

import (
	"bytes"
	"os"
	"strconv"
)

// RSS returns this process's resident set size in bytes, or 0 if unknown.
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize()) //nolint:gosec // G115: the page size is positive
}
