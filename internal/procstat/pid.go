package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// State returns the state letter of process pid as /proc/PID/stat gives it
// (R running, S sleeping, T stopped, Z zombie...), or 0 when there is no
// such process or no /proc.
func State(pid int) byte {
	return stateOf(fmt.Sprintf("/proc/%d/stat", pid))
}

// Stopped reports whether every thread of process pid is stopped (state
// T). After SIGSTOP the main thread can show T while other threads still
// run for a moment, during which the process can still answer: a test that
// needs a process that answers nothing waits for Stopped.
func Stopped(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, f := range tasks {
		if stateOf(f) != 'T' {
			return false
		}
	}
	return len(tasks) > 0
}

// stateOf reads the state letter from a /proc stat file, or 0.
func stateOf(path string) byte {
	b, err := os.ReadFile(path) //nolint:gosec // G304: a /proc stat file of a pid
	if err != nil {
		return 0
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold ") ": look after the last one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	s := State(pid)
	return s != 0 && s != 'Z'
}

// VmRSS returns the resident set size of process pid, in bytes, from
// /proc/PID/status.
func VmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	n, err := ParseVmRSS(string(b))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return n, nil
}

// ParseVmRSS returns VmRSS in bytes from the text of a /proc/PID/status file.
func ParseVmRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS line (a kernel thread or a zombie?)")
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture herd runs on).
const userHZ = 100

// CPUTime returns the CPU time process pid has used so far, user and
// system, from /proc/PID/stat (resolution 10 ms).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseCPUTime(b)
}

// ParseCPUTime returns utime+stime from the text of a /proc/PID/stat file.
func ParseCPUTime(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("procstat: no command name in stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("procstat: stat too short")
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / userHZ, nil //nolint:gosec // G115: CPU ticks of one process, far below 2^63
}
