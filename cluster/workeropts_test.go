package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestWorkerOptionsRoundTrip(t *testing.T) {
	want := Options{ShutdownTimeout: 7 * time.Second, HeartbeatInterval: 250 * time.Millisecond, MaxConns: 12}
	env := want.workerOptionsEnv()
	_, val, ok := strings.Cut(env, "=")
	if !ok || !strings.HasPrefix(env, envWorkerOptions+"=") {
		t.Fatalf("env entry %q", env)
	}
	got := Options{ShutdownTimeout: time.Minute, HeartbeatInterval: time.Second}.withDefaults()
	got.applyWorkerOptions(val)
	if got.ShutdownTimeout != want.ShutdownTimeout || got.HeartbeatInterval != want.HeartbeatInterval || got.MaxConns != want.MaxConns {
		t.Errorf("got shutdown %s heartbeat %s max-conns %d, want %s %s %d",
			got.ShutdownTimeout, got.HeartbeatInterval, got.MaxConns, want.ShutdownTimeout, want.HeartbeatInterval, want.MaxConns)
	}
}

func TestWorkerOptionsIgnoreGarbage(t *testing.T) {
	o := Options{ShutdownTimeout: time.Minute, MaxConns: 3}
	o.applyWorkerOptions("shutdown-timeout=-1s max-conns=abc heartbeat= nonsense =x")
	if o.ShutdownTimeout != time.Minute || o.MaxConns != 3 || o.HeartbeatInterval != 0 {
		t.Errorf("garbage changed options: %+v", o)
	}
}
