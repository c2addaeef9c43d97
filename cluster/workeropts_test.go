package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestWorkerOptionsRoundTrip(t *testing.T) {
	want := Options{ShutdownTimeout: 7 * time.Second, HeartbeatInterval: 250 * time.Millisecond, MaxConns: 12, DisableRequestMetrics: true}
	env := want.workerOptionsEnv()
	_, val, ok := strings.Cut(env, "=")
	if !ok || !strings.HasPrefix(env, envWorkerOptions+"=") {
		t.Fatalf("env entry %q", env)
	}
	got := Options{ShutdownTimeout: time.Minute, HeartbeatInterval: time.Second}.withDefaults()
	got.applyWorkerOptions(val)
	if got.ShutdownTimeout != want.ShutdownTimeout || got.HeartbeatInterval != want.HeartbeatInterval || got.MaxConns != want.MaxConns ||
		got.DisableRequestMetrics != want.DisableRequestMetrics {
		t.Errorf("got shutdown %s heartbeat %s max-conns %d request metrics off %v, want %s %s %d %v",
			got.ShutdownTimeout, got.HeartbeatInterval, got.MaxConns, got.DisableRequestMetrics,
			want.ShutdownTimeout, want.HeartbeatInterval, want.MaxConns, want.DisableRequestMetrics)
	}
	// And back on: a worker whose own Options say off follows its primary.
	got.applyWorkerOptions(strings.TrimPrefix(Options{}.workerOptionsEnv(), envWorkerOptions+"="))
	if got.DisableRequestMetrics {
		t.Error("request-metrics=true from the primary left the worker's request metrics off")
	}
}

func TestWorkerOptionsIgnoreGarbage(t *testing.T) {
	o := Options{ShutdownTimeout: time.Minute, MaxConns: 3}
	o.applyWorkerOptions("shutdown-timeout=-1s max-conns=abc heartbeat= nonsense =x request-metrics=maybe")
	if o.ShutdownTimeout != time.Minute || o.MaxConns != 3 || o.HeartbeatInterval != 0 || o.DisableRequestMetrics {
		t.Errorf("garbage changed options: %+v", o)
	}
}
