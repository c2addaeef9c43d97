package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// cgroupV1CPU is where a cgroup v1 cpu controller is mounted on the
// machines herd is tested on.
const cgroupV1CPU = "/sys/fs/cgroup/cpu"

// TestServeFollowsTheCgroupCPUQuota starts the real binary in a child cgroup
// limited to one CPU (cfs_quota 100000/100000, what docker run --cpus 1 sets)
// on a machine with more CPUs: herd must start one worker, where Go's own
// GOMAXPROCS would say 2. It needs root and a writable cgroup v1 cpu
// controller; without them it fails saying so rather than skip.
func TestServeFollowsTheCgroupCPUQuota(t *testing.T) {
	if _, err := os.Stat(filepath.Join(cgroupV1CPU, "cpu.cfs_quota_us")); err != nil {
		t.Fatalf("this test needs a cgroup v1 cpu controller at %s (as root): %v", cgroupV1CPU, err)
	}
	dir := filepath.Join(cgroupV1CPU, fmt.Sprintf("herdtest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("this test needs to create a child cgroup (run as root): %v", err)
	}
	t.Cleanup(func() {
		// The cgroup can go once every process in it has exited; herdtest's
		// cleanup (registered later, so run first) kills them.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("removing cgroup %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	for file, val := range map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
			t.Fatalf("setting %s: %v", file, err)
		}
	}
	// The shell moves itself into the cgroup, then becomes herd: herd reads
	// its quota from its first instruction on.
	script := `echo $$ > "$CG/cgroup.procs" && exec "$HERD" "$@"`
	p := herdtest.Start(t, herdtest.Options{
		Binary: "/bin/sh",
		Env:    []string{"CG=" + dir, "HERD=" + herdtest.Binary(t)},
	}, "-c", script, "sh", "serve")
	p.WaitReady(30 * time.Second)

	running := p.WaitMsg(5*time.Second, "primary running")
	if got := running.Int("workers"); got != 1 {
		t.Errorf("workers = %d, want 1 under a one-CPU quota", got)
	}
	if got := running.Int("gomaxprocs_per_worker"); got != 1 {
		t.Errorf("gomaxprocs_per_worker = %d, want 1", got)
	}
	limit := p.WaitMsg(5*time.Second, "cpu limit")
	if q, _ := limit["cgroup_quota_cpus"].(float64); q != 1 {
		t.Errorf("cgroup_quota_cpus = %v, want 1 (log: %v)", limit["cgroup_quota_cpus"], limit)
	}
	if f := limit.Str("quota_file"); f != filepath.Join(dir, "cpu.cfs_quota_us") {
		t.Errorf("quota_file = %q, want the test's cgroup", f)
	}
	// The primary really runs in the cgroup.
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if !containsLine(string(procs), strconv.Itoa(running.Int("pid"))) {
		t.Errorf("primary pid %d not in %s/cgroup.procs: %q", running.Int("pid"), dir, procs)
	}
	code, _, _ := p.Do("GET", "/", "")
	if code != 200 {
		t.Errorf("GET / = %d", code)
	}
	p.Signal(15)
	if c := p.Wait(30 * time.Second); c != 0 {
		t.Errorf("exit code %d after SIGTERM", c)
	}
}

func containsLine(s, line string) bool {
	for _, l := range splitLines(s) {
		if l == line {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
