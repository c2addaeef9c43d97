package cluster

import (
	"bytes"
	"os"
	"strconv"
)

// treeRSS returns the resident memory of process pid and all its
// descendants, in bytes (0 if pid is gone), from /proc.
func treeRSS(pid int) uint64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	children := map[int][]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := parentPID(n); pp > 0 {
			children[pp] = append(children[pp], n)
		}
	}
	var sum uint64
	page := uint64(os.Getpagesize()) //nolint:gosec // G115: the page size is positive
	queue := []int{pid}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		sum += residentPages(n) * page
		queue = append(queue, children[n]...)
	}
	return sum
}

// parentPID reads the ppid from /proc/PID/stat (after the command name,
// which may itself hold spaces and parentheses), or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(string(f[1]))
	return n
}

// residentPages reads the resident page count from /proc/PID/statm, or 0.
func residentPages(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return n
}
