package loadtest

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadtestParseMix(t *testing.T) {
	good := []struct {
		in   string
		want []MixEntry
	}{
		{"95:/,5:/api/300000000", []MixEntry{{"/", 95}, {"/api/300000000", 5}}},
		{"95%:/, 5%:/api/300000000", []MixEntry{{"/", 95}, {"/api/300000000", 5}}},
		{"97.5%:/,2.5%:/slow", []MixEntry{{"/", 97.5}, {"/slow", 2.5}}},
		{"1:/", []MixEntry{{"/", 1}}},
		{"3:pid,1:/search?q=a:b", []MixEntry{{"pid", 3}, {"/search?q=a:b", 1}}},
	}
	for _, tt := range good {
		got, err := ParseMix(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "want WEIGHT:PATH"},
		{"/", "want WEIGHT:PATH"},
		{"95:", "want WEIGHT:PATH"},
		{":/", "want WEIGHT:PATH"},
		{"95:/,", "entry 2"},
		{"0:/", "whole number of 1 or more"},
		{"-1:/", "whole number of 1 or more"},
		{"1.5:/", "whole number of 1 or more"},
		{"x:/", `weight "x"`},
		{"95%:/,5:/x", "one form throughout"},
		{"90%:/,5%:/x", "sum to 95%: want 100%"},
		{"0%:/,100%:/x", "percentage above 0"},
		{"101%:/", "at most 100"},
		{"1:/,1:/", `"/" given twice`},
		{"1:http://other/x", "not a URL of its own"},
		{"1://other/x", "not a URL of its own"},
		{"1:/a b", "without spaces"},
		{strings.Repeat("1:/x,", 16) + "1:/y", "at most 16"},
	}
	for _, tt := range bad {
		_, err := ParseMix(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseMix(%q) = %v, want one line containing %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadtestMixConfigInvalid(t *testing.T) {
	for _, mix := range [][]MixEntry{
		{{"/", 0}},
		{{"/", math.NaN()}},
		{{"/", 1}, {"/", 2}},
		{{"http://x/", 1}},
		{{"", 1}},
	} {
		if err := (Config{URL: DefaultURL, Mix: mix}).Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("mix %v: got %v, want ErrInvalidConfig", mix, err)
		}
	}
}

// Paths resolve against the URL as links do.
func TestLoadtestMixResolve(t *testing.T) {
	tg, err := prepare(Config{URL: "http://h:1/app/page?x=1", Mix: []MixEntry{{"/", 1}, {"api/2", 1}, {"/q?a=b", 1}, {"../up", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range tg.kinds {
		got = append(got, k.uri)
	}
	if want := []string{"/", "/app/api/2", "/q?a=b", "/up"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resolved %v, want %v", got, want)
	}
	if !strings.HasPrefix(string(tg.kinds[1].req), "GET /app/api/2 HTTP/1.1\r\nHost: h:1\r\n") {
		t.Errorf("request %q", tg.kinds[1].req)
	}
}

// The i-th request's kind depends on the seed and i only, and the kinds
// follow their weights.
func TestLoadtestMixPick(t *testing.T) {
	mix := []MixEntry{{"/a", 70}, {"/b", 20}, {"/c", 10}}
	seq := func(seed uint64) []int {
		tg, err := prepare(Config{URL: DefaultURL, Mix: mix, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var s []int
		for i := int64(1); i <= 100000; i++ {
			s = append(s, tg.pick(i))
		}
		return s
	}
	a, b, c := seq(7), seq(7), seq(8)
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave two sequences")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("seeds 7 and 8 gave the same sequence")
	}
	var n [3]int
	for _, k := range a {
		n[k]++
	}
	for k, want := range []float64{0.7, 0.2, 0.1} {
		if got := float64(n[k]) / float64(len(a)); math.Abs(got-want) > 0.01 {
			t.Errorf("kind %d: share %.4f of 100000 draws, want %.2f ± 0.01", k, got, want)
		}
	}
}

// A real run of a mix: the server sees each kind as often as the report
// says, the kinds follow their weights, each has its own latency, errors
// and rate, and a count-bounded run with the same seed sends the same mix.
func TestLoadtestMixRun(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int64{}
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.RequestURI()]++
		mu.Unlock()
		switch r.URL.Path {
		case "/slow":
			time.Sleep(5 * time.Millisecond)
		case "/missing":
			http.NotFound(w, r)
			return
		}
		hello(w, r)
	})
	cfg := Config{URL: s.URL + "/", Requests: 2000, Concurrency: 8, Seed: 3,
		Mix: []MixEntry{{"/", 80}, {"/slow", 15}, {"/missing?x=1", 5}}}
	res := run(t, cfg)

	if len(res.Kinds) != 3 {
		t.Fatalf("got %d kinds, want 3: %+v", len(res.Kinds), res.Kinds)
	}
	var total int64
	for i, k := range res.Kinds {
		total += k.Requests
		mu.Lock()
		served := seen[k.URI]
		mu.Unlock()
		if served != k.Requests {
			t.Errorf("kind %s: server saw %d, report says %d", k.Path, served, k.Requests)
		}
		if want := cfg.Mix[i].Weight / 100; math.Abs(float64(k.Requests)/2000-want) > 0.05 || k.Share != want {
			t.Errorf("kind %s: %d of 2000 requests (share %v), want about %.0f%%", k.Path, k.Requests, k.Share, want*100)
		}
		if k.Latency.P50 <= 0 || k.Latency.Max < k.Latency.P99 {
			t.Errorf("kind %s: latency %+v, want its own percentiles", k.Path, k.Latency)
		}
	}
	if total != res.Requests || res.Requests != 2000 {
		t.Errorf("kinds add up to %d, run has %d, want 2000", total, res.Requests)
	}
	fast, slow, missing := res.Kinds[0], res.Kinds[1], res.Kinds[2]
	if slow.Latency.P50 < 5*time.Millisecond || fast.Latency.P50 >= slow.Latency.P50 {
		t.Errorf("p50: / %v, /slow %v; want /slow at least 5ms and above /", fast.Latency.P50, slow.Latency.P50)
	}
	if missing.Failed() != missing.Requests || missing.Status[404] != missing.Requests || missing.RPS() != 0 || fast.Failed() != 0 || fast.RPS() <= 0 {
		t.Errorf("/missing: %d failed of %d, rps %v; /: %d failed, rps %v; want all and 0, none and above 0",
			missing.Failed(), missing.Requests, missing.RPS(), fast.Failed(), fast.RPS())
	}
	if res.Failed() != missing.Requests {
		t.Errorf("run failed %d, want the %d of /missing", res.Failed(), missing.Requests)
	}

	// Same seed, same count: exactly the same kinds.
	again := run(t, cfg)
	for i := range again.Kinds {
		if again.Kinds[i].Requests != res.Kinds[i].Requests {
			t.Errorf("second run with seed 3: kind %s sent %d, first run %d", again.Kinds[i].Path, again.Kinds[i].Requests, res.Kinds[i].Requests)
		}
	}

	var text strings.Builder
	_ = res.WriteText(&text, false)
	for _, want := range []string{"Mix       3 kinds, each request picks one by weight (seed 3)", "/missing?x=1", " 80.0% ", " 15.0% "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	b, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Mix struct {
			Seed  uint64
			Kinds []struct {
				Path             string
				Share            float64
				Requests, Failed int64
				RPS              float64
				Latency          map[string]float64 `json:"latency_ms"`
				Status           map[string]int64
				Errors           map[string]int64
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Mix.Seed != 3 || len(doc.Mix.Kinds) != 3 || doc.Mix.Kinds[1].Path != "/slow" || doc.Mix.Kinds[1].Latency["p99"] < 5 ||
		doc.Mix.Kinds[2].Status["404"] != missing.Requests || doc.Mix.Kinds[2].Errors["non_2xx"] != missing.Requests {
		t.Errorf("JSON mix: %+v\n%s", doc.Mix, b)
	}
}
