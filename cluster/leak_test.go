package cluster_test

import (
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkLeaks fails the test if, once everything else the test registered
// has been cleaned up (it must be called first), this process holds more
// descriptors or goroutines than when it was called. Goroutines the
// runtime keeps for good once started (os/signal's) do not count.
func checkLeaks(t *testing.T) {
	t.Helper()
	fds0, gs0 := openFDs(t), goroutines()
	t.Cleanup(func() {
		var fds, gs int
		deadline := time.Now().Add(10 * time.Second)
		for {
			http.DefaultClient.CloseIdleConnections()
			fds, gs = openFDs(t), goroutines()
			if fds <= fds0 && gs <= gs0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if fds > fds0 {
			t.Errorf("descriptors leaked: %d open after the test, %d before", fds, fds0)
		}
		if gs > gs0 {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines leaked: %d after the test, %d before:\n%s", gs, gs0, buf[:runtime.Stack(buf, true)])
		}
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}

func goroutines() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "os/signal.") {
			n++
		}
	}
	return n
}
