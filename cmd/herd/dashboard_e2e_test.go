package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herd-go/herd/cluster"
	"github.com/herd-go/herd/internal/herdtest"
)

// browser starts Debian's chromium, headless, with a fresh profile and no
// background networking (the machine's network is closed), and collects
// every console error and uncaught exception of its pages.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed for the dashboard test: install it with 'apt-get install -y chromium' (make test does): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	var mu sync.Mutex
	var errs []string
	err = chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				errs = append(errs, "console.error: "+strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			errs = append(errs, fmt.Sprintf("exception: %s at %s:%d", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				errs = append(errs, "log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// waitPage polls a JavaScript condition in the page until it is true.
func waitPage(t *testing.T, ctx context.Context, timeout time.Duration, what, js string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for the page to show %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pageText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rowJS is a JavaScript expression for a cell of worker id's row.
func rowJS(id int, cell string) string {
	return fmt.Sprintf(`((document.querySelector('#workers tr[data-worker="%d"] td.%s')||{}).textContent||"")`, id, cell)
}

func TestDashboardInABrowser(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2")
	p.WaitReady(30 * time.Second)
	base := adminURL(t, p)
	// The token, beside the control socket herdtest gives the server.
	tok, err := os.ReadFile(cluster.TokenPath(p.ControlSocket))
	if err != nil {
		t.Fatalf("the admin token file: %v", err)
	}
	ctx, consoleErrors := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#token="+strings.TrimSpace(string(tok)))); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	// Every worker, with its pid, ready.
	before := status(t, p)
	for _, w := range before.Workers {
		waitPage(t, ctx, 20*time.Second, fmt.Sprintf("worker %d ready with pid %d", w.ID, w.PID),
			fmt.Sprintf(`%s === "ready" && %s === "%d"`, rowJS(w.ID, "state"), rowJS(w.ID, "pid"), w.PID))
	}

	// The numbers move under load.
	l := startLoad(t, p.URL+"/api/20", 8)
	l.waitRequests(t, p, 500)
	// Which worker takes the load's few connections is up to the kernel:
	// the totals and some worker's row must move.
	waitPage(t, ctx, 20*time.Second, "requests/s above 0 in the totals and in a worker's row",
		`parseFloat(document.querySelector("#total-rps").textContent.replace(/,/g,"")) > 0 && `+
			`[...document.querySelectorAll("#workers td.rps")].some(td => parseFloat(td.textContent.replace(/,/g,"")) > 0)`)
	waitPage(t, ctx, 20*time.Second, "a p99 latency", `/ms$/.test(document.querySelector("#total-lat").textContent)`)
	n1 := pageText(t, ctx, `#total-requests`)
	waitPage(t, ctx, 20*time.Second, "the request total growing", fmt.Sprintf(`document.querySelector("#total-requests").textContent !== %q`, n1))
	if path := os.Getenv("HERD_DASHBOARD_SCREENSHOT"); path != "" {
		time.Sleep(20 * time.Second) // let the sparklines fill: a picture for the README, not a condition
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A worker killed with SIGKILL shows as died, then replaced.
	victim := workerPID(t, p, 1)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, 20*time.Second, "the SIGKILL in the events",
		fmt.Sprintf(`[...document.querySelectorAll("#events li.kind-died")].some(li => li.textContent.includes("pid %d") && li.textContent.includes("killed"))`, victim))
	waitPage(t, ctx, 20*time.Second, "worker 1 replaced and ready",
		fmt.Sprintf(`%s === "ready" && %s !== "%d" && %s !== "–"`, rowJS(1, "state"), rowJS(1, "pid"), victim, rowJS(1, "pid")))
	waitPage(t, ctx, 20*time.Second, "worker 1's restart counted", rowJS(1, "restarts")+` === "1"`)

	// The reload button replaces every worker.
	old := readyPIDs(status(t, p))
	if err := chromedp.Do(ctx, chromedp.Click("#reload")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, 60*time.Second, "the reload's outcome", `document.querySelector("#msg").textContent.includes("every worker replaced")`)
	now := readyPIDs(status(t, p))
	for pid := range old {
		if _, ok := now[pid]; ok {
			t.Errorf("worker pid %d survived the reload from the dashboard: before %v, after %v", pid, old, now)
		}
	}
	for pid, id := range now {
		waitPage(t, ctx, 20*time.Second, fmt.Sprintf("worker %d's new pid %d", id, pid), fmt.Sprintf(`%s === "%d"`, rowJS(id, "pid"), pid))
	}
	l.halt() // the SIGKILL dropped the requests on its connections: not this test's subject
	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %q", errs)
	}
}
