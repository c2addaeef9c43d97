package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuQuota reads this process's cgroup CPU quota under the filesystem root
// (a directory holding proc/self/cgroup, proc/self/mountinfo and the cgroup
// mounts they name; "/" for the real system). It returns the quota in CPUs
// (0 when unlimited) and the file it came from. The quota is the smallest
// of the cgroup's own and its ancestors' up to the mount, as the kernel
// enforces every level. A v1 cpu controller (cpu.cfs_quota_us /
// cpu.cfs_period_us) is read when the process is in one; otherwise the
// v2 unified hierarchy (cpu.max).
func cpuQuota(root string) (float64, string, error) {
	groups, err := readProcCgroup(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, "", err
	}
	mounts, err := readMountinfo(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return 0, "", err
	}
	// A v1 hierarchy holding the cpu controller means it is not on v2 (a
	// hybrid system mounts a v2 hierarchy without controllers beside v1).
	if g, ok := groups["cpu"]; ok {
		for _, m := range mounts {
			if m.fstype == "cgroup" && m.hasOption("cpu") {
				if dir, ok := m.dirOf(g); ok {
					return walkQuota(root, m.point, dir, readCFS)
				}
			}
		}
	}
	if g, ok := groups[""]; ok {
		for _, m := range mounts {
			if m.fstype == "cgroup2" {
				if dir, ok := m.dirOf(g); ok {
					return walkQuota(root, m.point, dir, readCPUMax)
				}
			}
		}
	}
	return 0, "", errors.New("cluster: no cgroup cpu controller mounted for this process")
}

// walkQuota reads the quota in mountpoint/dir and each parent up to the
// mount point, and returns the smallest.
func walkQuota(root, mountpoint, dir string, read func(dir string) (float64, string, error)) (float64, string, error) {
	best, bestFile := 0.0, ""
	for {
		q, file, err := read(filepath.Join(root, mountpoint, dir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, "", err
		}
		if err == nil && q > 0 && (best == 0 || q < best) {
			best, bestFile = q, strings.TrimPrefix(file, filepath.Clean(root))
			if !strings.HasPrefix(bestFile, "/") {
				bestFile = "/" + bestFile
			}
		}
		if dir == "/" || dir == "." || dir == "" {
			return best, bestFile, nil
		}
		dir = path.Dir(dir)
	}
}

// readCPUMax reads cgroup v2's cpu.max: "max 100000" or "150000 100000".
func readCPUMax(dir string) (float64, string, error) {
	file := filepath.Join(dir, "cpu.max")
	b, err := os.ReadFile(file) //nolint:gosec // G304: a cgroup file whose path herd builds from the cgroup mounts
	if err != nil {
		return 0, file, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f) > 2 {
		return 0, file, fmt.Errorf("cluster: %s: unexpected contents %q", file, b)
	}
	if f[0] == "max" {
		return 0, file, nil
	}
	period := 100000.0
	if len(f) == 2 {
		if period, err = strconv.ParseFloat(f[1], 64); err != nil || period <= 0 {
			return 0, file, fmt.Errorf("cluster: %s: bad period %q", file, f[1])
		}
	}
	quota, err := strconv.ParseFloat(f[0], 64)
	if err != nil || quota <= 0 {
		return 0, file, fmt.Errorf("cluster: %s: bad quota %q", file, f[0])
	}
	return quota / period, file, nil
}

// readCFS reads cgroup v1's cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us.
func readCFS(dir string) (float64, string, error) {
	file := filepath.Join(dir, "cpu.cfs_quota_us")
	qb, err := os.ReadFile(file) //nolint:gosec // G304: a cgroup file whose path herd builds from the cgroup mounts
	if err != nil {
		return 0, file, err
	}
	quota, err := strconv.ParseInt(strings.TrimSpace(string(qb)), 10, 64)
	if err != nil {
		return 0, file, fmt.Errorf("cluster: %s: bad quota %q", file, qb)
	}
	if quota <= 0 {
		return 0, file, nil
	}
	pfile := filepath.Join(dir, "cpu.cfs_period_us")
	pb, err := os.ReadFile(pfile) //nolint:gosec // G304: a cgroup file whose path herd builds from the cgroup mounts
	if err != nil {
		return 0, file, err
	}
	period, err := strconv.ParseInt(strings.TrimSpace(string(pb)), 10, 64)
	if err != nil || period <= 0 {
		return 0, file, fmt.Errorf("cluster: %s: bad period %q", pfile, pb)
	}
	return float64(quota) / float64(period), file, nil
}

// readProcCgroup maps each controller of /proc/self/cgroup ("" for the v2
// unified hierarchy) to the process's cgroup path in it.
func readProcCgroup(file string) (map[string]string, error) {
	b, err := os.ReadFile(file) //nolint:gosec // G304: /proc/self/cgroup (a test's copy in tests)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	groups := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			groups[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			groups[c] = parts[2]
		}
	}
	return groups, nil
}

type mount struct {
	root, point, fstype string
	super               []string
}

func (m mount) hasOption(o string) bool {
	for _, s := range m.super {
		if s == o {
			return true
		}
	}
	return false
}

// dirOf returns cgroup path g relative to the mount: in a container the
// mount's root is often the container's own cgroup, which
// /proc/self/cgroup names in full.
func (m mount) dirOf(g string) (string, bool) {
	if m.root == "/" {
		return g, true
	}
	if g == m.root {
		return "/", true
	}
	if rel, ok := strings.CutPrefix(g, m.root+"/"); ok {
		return "/" + rel, true
	}
	// A cgroup namespace shows "/" while the mount's root is the host path.
	if g == "/" {
		return "/", true
	}
	return "", false
}

// readMountinfo reads the cgroup mounts of /proc/self/mountinfo.
func readMountinfo(file string) ([]mount, error) {
	f, err := os.Open(file) //nolint:gosec // G304: /proc/self/mountinfo (a test's copy in tests)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	defer f.Close()
	var mounts []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source super
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 3 || (rf[0] != "cgroup" && rf[0] != "cgroup2") {
			continue
		}
		mounts = append(mounts, mount{root: unescapeMount(lf[3]), point: unescapeMount(lf[4]), fstype: rf[0], super: strings.Split(rf[2], ",")})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", file, err)
	}
	return mounts, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
