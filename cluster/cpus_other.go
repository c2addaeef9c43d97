//go:build !linux

package cluster

import "errors"

func cpuQuota(root string) (float64, string, error) {
	return 0, "", errors.New("cluster: cgroup CPU quotas are read on Linux only")
}
