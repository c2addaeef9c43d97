// Command gofd is an HTTP server for "herd run": it serves the listening
// sockets it inherits the systemd way (LISTEN_FDS from fd 3, checked
// against LISTEN_PID) with net.FileListener, tells herd it is ready with
// sd_notify's READY=1, sends WATCHDOG=1 while it is healthy, and on SIGTERM
// drains: it stops accepting, answers what is in flight with
// "Connection: close", and exits once every connection is done.
//
//	go build -o gofd ./examples/gofd && herd run -- ./gofd
//
// Routes: / (hello), /pid ({"processid": pid}), /slow?ms=N (answers after N
// milliseconds). Every answer carries X-Worker-Id and X-Worker-Pid. It uses
// only the standard library: this is what any Go server needs to run under
// herd run (or systemd socket activation) without the cluster package.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	lns, err := inherited()
	if err != nil {
		log.Fatalf("gofd: %v (run it under herd run, or systemd socket activation)", err)
	}
	pid := os.Getpid()
	worker := os.Getenv("HERD_RUN_WORKER")
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from gofd, pid %d\n", pid)
	})
	mux.HandleFunc("GET /pid", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(map[string]int{"processid": pid}); err != nil {
			fmt.Fprintf(os.Stderr, "gofd: writing /pid: %v\n", err)
		}
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		fmt.Printf("slow request started: %d ms\n", ms)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %d ms in pid %d\n", ms, pid)
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Id", worker)
		w.Header().Set("X-Worker-Pid", strconv.Itoa(pid))
		if draining.Load() {
			w.Header().Set("Connection", "close") // net/http closes after this answer
		}
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Printf("gofd: %v", err)
			}
		}()
	}
	if os.Getenv("GOFD_NO_NOTIFY") == "" {
		notify("READY=1")
		go watchdog()
	}
	log.Printf("gofd: pid %d serving %d inherited socket(s)", pid, len(lns))

	sigC := make(chan os.Signal, 1)
	signal.Notify(sigC, syscall.SIGTERM, syscall.SIGINT)
	<-sigC
	// Stop accepting: connections still waiting in the shared queue go to
	// the other workers. Requests on open connections are answered with
	// Connection: close; a connection idle for a second after that is closed.
	draining.Store(true)
	notify("STOPPING=1")
	for _, ln := range lns {
		ln.Close()
	}
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("gofd: shutdown: %v", err)
	}
	wg.Wait()
}

// inherited returns the listening sockets passed as fd 3 and up.
func inherited() ([]net.Listener, error) {
	if p := os.Getenv("LISTEN_PID"); p != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("LISTEN_PID=%q is not this process (%d)", p, os.Getpid())
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("LISTEN_FDS=%q: no socket passed", os.Getenv("LISTEN_FDS"))
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	var lns []net.Listener
	for i := range n {
		name := "fd" + strconv.Itoa(3+i)
		if i < len(names) {
			name = names[i]
		}
		f := os.NewFile(uintptr(3+i), name)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd %d (%s): %w", 3+i, name, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// notify sends one sd_notify message, if NOTIFY_SOCKET is set.
func notify(msg string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Printf("gofd: notify: %v", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		log.Printf("gofd: notify: %v", err)
	}
}

// watchdog sends WATCHDOG=1 at half the interval WATCHDOG_USEC asks for.
func watchdog() {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 || os.Getenv("WATCHDOG_PID") != strconv.Itoa(os.Getpid()) {
		return
	}
	for range time.Tick(time.Duration(usec) * time.Microsecond / 2) {
		notify("WATCHDOG=1")
	}
}
