package herdenv

import (
	"slices"
	"testing"
)

func TestCleanDropsHerdsSettingsOnly(t *testing.T) {
	in := []string{"PATH=/bin", "PORT=8080", "CLUSTER_WORKERS=3", "HOME=/root", "GOMAXPROCS=1", "PORTABLE=yes", "REDIS_URL=redis://x"}
	want := []string{"PATH=/bin", "HOME=/root", "PORTABLE=yes"}
	if got := Clean(in); !slices.Equal(got, want) {
		t.Errorf("Clean(%q) = %q, want %q", in, got, want)
	}
}
