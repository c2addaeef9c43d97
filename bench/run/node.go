package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// nodeDir is the Node example, relative to the module root (where
// `go run ./bench/run` runs).
const nodeDir = "examples/node"

// nodeAvailable says why the Node cluster contender cannot run, or nil.
func nodeAvailable() error {
	if _, err := exec.LookPath("node"); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules")); err != nil {
		return fmt.Errorf("%w (run npm ci in %s)", err, nodeDir)
	}
	return nil
}

// startNode runs examples/node/bin.js (Node's cluster module, n workers) on
// a free loopback port, in a process group of its own, and returns once
// all n workers have answered. stop sends the group SIGTERM, waits up to
// 10s, then SIGKILLs the group (every process in it was started here).
func startNode(ctx context.Context, n int) (addr string, stop func() error, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr = "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command("node", "bin.js")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "WORKERS="+strconv.Itoa(n), "NODE_ENV=production")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("node bin.js: %w", err)
	}
	doneC := make(chan struct{})
	go func() { _ = cmd.Wait(); close(doneC) }()
	pgid := cmd.Process.Pid
	stop = func() error {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-doneC: // its exit status after SIGTERM says nothing
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-doneC
			return errors.New("node bin.js: not stopped 10s after SIGTERM")
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // a worker the primary left behind
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	seen := map[string]bool{}
	for len(seen) < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = stop()
			return "", nil, fmt.Errorf("node bin.js: %d of %d workers answered within 30s", len(seen), n)
		}
		if w, err := nodeWorker(addr); err == nil {
			seen[w] = true
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addr, stop, nil
}

// nodeWorker asks GET /pid on a new connection.
func nodeWorker(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer closeNow(c)
	return requestWorker(c, bufio.NewReader(c))
}
