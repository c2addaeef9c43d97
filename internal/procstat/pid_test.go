package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\therd\nVmPeak:\t 1240192 kB\nVmHWM:\t   15000 kB\nVmRSS:\t   14348 kB\nThreads:\t7\n"
	got, err := ParseVmRSS(status)
	if err != nil || got != 14348*1024 {
		t.Errorf("ParseVmRSS = %d, %v; want %d", got, err, 14348*1024)
	}
	if _, err := ParseVmRSS("Name:\tkthreadd\nState:\tS (sleeping)\n"); err == nil {
		t.Error("ParseVmRSS without VmRSS: want an error")
	}
}

// This process runs, a reaped child is gone, an unreaped one is a zombie.
func TestStateAndVmRSSOfRealProcesses(t *testing.T) {
	if s := State(os.Getpid()); s != 'R' && s != 'S' {
		t.Errorf("State(self) = %q, want R or S", s)
	}
	if n, err := VmRSS(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("VmRSS(self) = %d, %v; want a positive size", n, err)
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// It exits at once and stays a zombie until Wait reaps it.
	for deadline := time.Now().Add(5 * time.Second); State(pid) != 'Z' && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := State(pid); s != 'Z' || Alive(pid) {
		t.Errorf("an exited, unreaped child: State %q, Alive %v; want Z and false", s, Alive(pid))
	}
	_ = cmd.Wait()
	if s := State(pid); s != 0 || Alive(pid) {
		t.Errorf("a reaped child: State %q, Alive %v; want 0 and false", s, Alive(pid))
	}
}

func TestCPUTimeGrowsWithWork(t *testing.T) {
	// A command name holding ") " must not shift the fields.
	got, err := ParseCPUTime([]byte("42 (a) b) R 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0"))
	if err != nil || got != 3*time.Second {
		t.Fatalf("ParseCPUTime = %v, %v; want 3s (250+50 ticks)", got, err)
	}
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 1 << 20 {
			x += i
		}
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow while this process computed (%d)", x)
		}
	}
}
