//go:build !linux

package procstat

// RSS returns 0: resident set size is only read on Linux.
func RSS() uint64 { return 0 }
