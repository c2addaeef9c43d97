package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-go/herd/internal/herdtest"
	"github.com/herd-go/herd/internal/redistest"
)

// TestSeveralInstancesShareOneRedis runs three herd instances (three
// "machines": separate primaries on separate ports, two workers each)
// on one real redis-server. Concurrent POST /cluster/counter through all
// of them must give exactly 1..N with no duplicate or gap; a value written
// through one instance is read through the others; and herd verify passes
// against one of them.
func TestSeveralInstancesShareOneRedis(t *testing.T) {
	redisURL, _ := redistest.Start(t)
	var hs []*herdtest.Proc
	for range 3 {
		hs = append(hs, herdtest.Start(t, herdtest.Options{}, "serve", "--workers", "2", "--redis-url", redisURL))
	}
	for _, p := range hs {
		p.WaitReady(60 * time.Second)
	}

	const clients, perClient = 15, 10 // per instance
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var values []int
	servedBy := map[string]int{} // instance URL → answers
	var wg sync.WaitGroup
	errs := make(chan error, clients*len(hs))
	for _, p := range hs {
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perClient {
					counter, _, err := postCounter(client, p.URL)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					values = append(values, counter)
					servedBy[p.URL]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := clients * perClient * len(hs)
	if len(values) != want {
		t.Fatalf("%d answers, want %d", len(values), want)
	}
	sort.Ints(values)
	for i, v := range values {
		if v != i+1 {
			t.Fatalf("counter values over 3 instances are not exactly 1..%d: position %d holds %d (duplicate or gap)", want, i, v)
		}
	}
	for _, p := range hs {
		if servedBy[p.URL] != clients*perClient {
			t.Errorf("instance %s answered %d, want %d", p.URL, servedBy[p.URL], clients*perClient)
		}
	}

	// A write through one instance is read through every other.
	key := fmt.Sprintf("machines-%d", time.Now().UnixNano())
	code, _, body := hs[0].Do("POST", "/cluster/shared-state", `{"key":"`+key+`","value":{"from":"instance 0"}}`)
	if code != 200 {
		t.Fatalf("POST /cluster/shared-state on instance 0: %d %s", code, body)
	}
	for i, p := range hs[1:] {
		code, _, body := p.Do("GET", "/cluster/shared-state/"+key, "")
		if code != 200 || !strings.Contains(string(body), `"from":"instance 0"`) {
			t.Fatalf("GET /cluster/shared-state/%s on instance %d: %d %s", key, i+1, code, body)
		}
	}
	// herd verify against one instance of the setup passes. The other
	// instances stop first: idle, but verify times CPU work in parallel.
	for _, p := range hs[:1] {
		p.Signal(15)
		p.Wait(60 * time.Second)
	}
	for _, p := range hs[2:] {
		p.Signal(15)
		p.Wait(60 * time.Second)
	}
	lockVerifyCPU(t)
	vcode, out, errOut := runVerify(t, hs[1].URL)
	if vcode != exitOK {
		t.Fatalf("herd verify %s: exit %d\n%s\n%s", hs[1].URL, vcode, out, errOut)
	}
}
