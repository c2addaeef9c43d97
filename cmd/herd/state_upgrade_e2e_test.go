package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
)

// A binary upgrade hands the bbolt state file from the old primary to the
// new one (store.Host's Release, then NewHostOpening in the new primary):
// the counter goes on from where it was, and no write is lost or doubled.
func TestStateFileFollowsABinaryUpgrade(t *testing.T) {
	dir := t.TempDir()
	bin := herdtest.CopyBinary(t, dir)
	state := filepath.Join(dir, "state.db")
	p := herdtest.Start(t, herdtest.Options{Binary: bin, Dir: dir}, "serve", "--workers", "1", "--state-file", state)
	p.WaitReady(30 * time.Second)
	for i := range 3 {
		if code, _, body := p.Do("POST", "/cluster/counter", ""); code != 200 {
			t.Fatalf("counter %d: %d %s", i+1, code, body)
		}
	}
	old := p.Cmd.Process.Pid
	herdtest.Deploy(t, herdtest.Binary(t), bin)
	if code, out := herdCmd(t, p, "upgrade"); code != 0 {
		t.Fatalf("herd upgrade: exit %d: %s", code, out)
	}
	if s := status(t, p); s.PrimaryPID == old {
		t.Fatalf("the control socket still reaches the old primary %d", old)
	}
	code, _, body := p.Do("POST", "/cluster/counter", "")
	if code != 200 || !strings.Contains(string(body), `"counter":4`) {
		t.Fatalf("counter after the upgrade: %d %s, want 4 (the new primary serves the same state file)", code, body)
	}
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Errorf("the old primary exited with %d after handing over, want 0", code)
	}
	if code, out := herdCmd(t, p, "stop"); code != 0 {
		t.Fatalf("herd stop: exit %d: %s", code, out)
	}
}
