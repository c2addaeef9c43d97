package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot writes files (path relative to the root → contents) under a
// temporary directory standing for "/".
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v2Mount = "30 22 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	v1Mount = "31 22 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n" +
		"34 22 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)

func TestCPUQuota(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		want     float64
		wantFile string
		cores    int // with 8 CPUs in the affinity mask
	}{
		{
			name: "v2 one cpu (docker --cpus 1)",
			files: map[string]string{
				"proc/self/cgroup":                 "0::/\n",
				"proc/self/mountinfo":              v2Mount,
				"sys/fs/cgroup/cpu.max":            "100000 100000\n",
				"sys/fs/cgroup/unrelated/cpu.max":  "max 100000\n",
				"sys/fs/cgroup/cgroup.controllers": "cpu\n",
			},
			want: 1, wantFile: "/sys/fs/cgroup/cpu.max", cores: 1,
		},
		{
			name: "v2 half a cpu rounds up to one",
			files: map[string]string{
				"proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
				"proc/self/mountinfo":                    v2Mount,
				"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "50000 100000\n",
			},
			want: 0.5, wantFile: "/sys/fs/cgroup/kubepods/pod1/c1/cpu.max", cores: 1,
		},
		{
			name: "v2 2.5 cpus in a parent, none in the leaf",
			files: map[string]string{
				"proc/self/cgroup":                                "0::/system.slice/herd.service\n",
				"proc/self/mountinfo":                             v2Mount,
				"sys/fs/cgroup/system.slice/cpu.max":              "250000 100000\n",
				"sys/fs/cgroup/system.slice/herd.service/cpu.max": "max 100000\n",
			},
			want: 2.5, wantFile: "/sys/fs/cgroup/system.slice/cpu.max", cores: 3,
		},
		{
			name: "v2 unlimited",
			files: map[string]string{
				"proc/self/cgroup":        "0::/a\n",
				"proc/self/mountinfo":     v2Mount,
				"sys/fs/cgroup/a/cpu.max": "max 100000\n",
			},
			want: 0, cores: 8,
		},
		{
			name: "v1 one cpu",
			files: map[string]string{
				"proc/self/cgroup":    "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n",
				"proc/self/mountinfo": v1Mount,
				"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "100000\n",
				"sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
			},
			want: 1, wantFile: "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", cores: 1,
		},
		{
			name: "v1 container view: the mount's root is the container's cgroup",
			files: map[string]string{
				"proc/self/cgroup":                            "3:cpu,cpuacct:/docker/abc\n",
				"proc/self/mountinfo":                         "31 22 0:28 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "250000\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
			},
			want: 2.5, wantFile: "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", cores: 3,
		},
		{
			name: "hybrid: v1 cpu controller beside an empty v2 hierarchy",
			files: map[string]string{
				"proc/self/cgroup": "1:cpu:/probe\n0::/\n",
				"proc/self/mountinfo": "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
					"40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
				"sys/fs/cgroup/cpu/probe/cpu.cfs_quota_us":  "100000\n",
				"sys/fs/cgroup/cpu/probe/cpu.cfs_period_us": "100000\n",
				"sys/fs/cgroup/cpu/cpu.cfs_quota_us":        "-1\n",
				"sys/fs/cgroup/cpu/cpu.cfs_period_us":       "100000\n",
			},
			want: 1, wantFile: "/sys/fs/cgroup/cpu/probe/cpu.cfs_quota_us", cores: 1,
		},
		{
			name: "v1 no quota (-1)",
			files: map[string]string{
				"proc/self/cgroup":                    "1:cpu:/\n",
				"proc/self/mountinfo":                 "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
				"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
				"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
			},
			want: 0, cores: 8,
		},
		{
			name: "quota above the affinity mask: the mask wins",
			files: map[string]string{
				"proc/self/cgroup":      "0::/\n",
				"proc/self/mountinfo":   v2Mount,
				"sys/fs/cgroup/cpu.max": "1600000 100000\n",
			},
			want: 16, wantFile: "/sys/fs/cgroup/cpu.max", cores: 8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeRoot(t, tt.files)
			got, file, err := cpuQuota(root)
			if err != nil {
				t.Fatalf("cpuQuota: %v", err)
			}
			if got != tt.want || file != tt.wantFile {
				t.Errorf("cpuQuota = %v from %q, want %v from %q", got, file, tt.want, tt.wantFile)
			}
			l := CPULimit{Online: 8, Quota: got, QuotaFile: file}
			if c := l.Cores(); c != tt.cores {
				t.Errorf("Cores() = %d, want %d (%s)", c, tt.cores, l.Reason())
			}
		})
	}
}

func TestCPUQuotaErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no proc", map[string]string{}, "cgroup"},
		{"no cpu controller", map[string]string{
			"proc/self/cgroup":    "4:memory:/\n",
			"proc/self/mountinfo": v1Mount,
		}, "no cgroup cpu controller"},
		{"garbage cpu.max", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"proc/self/mountinfo":   v2Mount,
			"sys/fs/cgroup/cpu.max": "lots\n",
		}, "bad quota"},
		{"garbage period", map[string]string{
			"proc/self/cgroup":                    "1:cpu:/\n",
			"proc/self/mountinfo":                 "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "50000\n",
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": "0\n",
		}, "bad period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _, err := cpuQuota(fakeRoot(t, tt.files))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "cluster: ") {
				t.Fatalf("cpuQuota = %v, %v; want an error containing %q", q, err, tt.want)
			}
			// Unknown quota: plan for the affinity mask.
			if c := (CPULimit{Online: 4, Err: err}).Cores(); c != 4 {
				t.Errorf("Cores() with an unknown quota = %d, want 4", c)
			}
		})
	}
}

func TestCPULimitGOMAXPROCSWins(t *testing.T) {
	l := CPULimit{Online: 8, Quota: 1, QuotaFile: "/x", GOMAXPROCS: 3}
	if c := l.Cores(); c != 3 {
		t.Fatalf("Cores() = %d, want 3", c)
	}
	if !strings.Contains(l.Reason(), "GOMAXPROCS=3") {
		t.Fatalf("Reason() = %q", l.Reason())
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b\\`); got != `/a b\\` {
		t.Fatalf("got %q", got)
	}
}
