package fleet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet/fleettest"
)

func invokeReq(fn string) *http.Request {
	return httptest.NewRequest(http.MethodPost,
		"http://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"+fn+"/invocations", nil)
}

// TestFleetLimitersShareOneLimit: two limiters (two proxies) with
// coordinators on one Redis hold a burst of 3 × 40 invokes to one limit of
// 6 in flight over both, with every invoke admitted.
func TestFleetLimitersShareOneLimit(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.MaxInflight = 6
	cfg.FunctionMaxInflight = map[string]int{"a": 4}
	var limiters []*lambdalimit.Limiter
	for range 3 {
		limiters = append(limiters, lambdalimit.New(lambdalimit.Config{
			MaxInflight:         cfg.MaxInflight,
			FunctionMaxInflight: cfg.FunctionMaxInflight,
			QueueTimeout:        30 * time.Second,
			Coordinator:         newCoordinator(t, cfg),
		}))
	}
	var now, peak, peakA, nowA atomic.Int64
	var failed atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 120 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := []string{"a", "b"}[i%2]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rel, _, err := limiters[i%3].Admit(ctx, invokeReq(fn))
			if err != nil {
				failed.Add(1)
				t.Errorf("invoke %d: %v", i, err)
				return
			}
			n := now.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			if fn == "a" {
				n := nowA.Add(1)
				for p := peakA.Load(); n > p && !peakA.CompareAndSwap(p, n); p = peakA.Load() {
				}
			}
			time.Sleep(20 * time.Millisecond)
			if fn == "a" {
				nowA.Add(-1)
			}
			now.Add(-1)
			rel(http.StatusOK, http.Header{})
		}()
	}
	wg.Wait()
	t.Logf("120 invokes over 3 proxies in %v: peak %d in flight (limit 6), function a peak %d (limit 4)",
		time.Since(start).Round(time.Millisecond), peak.Load(), peakA.Load())
	if peak.Load() > 6 || peakA.Load() > 4 {
		t.Errorf("peak %d (a: %d) above the fleet limits 6 (4)", peak.Load(), peakA.Load())
	}
	if peak.Load() < 4 {
		t.Errorf("peak %d: the fleet used few of its 6 slots", peak.Load())
	}
}

// TestFleetAdmissionOverhead measures what the coordinator adds to one
// uncontended admission (acquire on the function's and the all-functions
// semaphore, then the release) with Redis on loopback, against the local
// limiter alone. The figures go to the log (and to
// $SKEWPROXY_FLEET_BENCH_OUT, for `make bench`, which alone runs it). It
// asserts no timing.
func TestFleetAdmissionOverhead(t *testing.T) {
	if os.Getenv("SKEWPROXY_FLEET_BENCH_OUT") == "" {
		t.Skip("a measurement for make bench (set SKEWPROXY_FLEET_BENCH_OUT)")
	}
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.MaxInflight = 100
	cfg.FunctionMaxInflight = map[string]int{"f": 100}
	shared := lambdalimit.New(lambdalimit.Config{MaxInflight: 100, Coordinator: newCoordinator(t, cfg)})
	local := lambdalimit.New(lambdalimit.Config{MaxInflight: 100})
	const n = 2000
	measure := func(l *lambdalimit.Limiter) []time.Duration {
		ds := make([]time.Duration, 0, n)
		ctx := context.Background()
		for i := range n + 100 {
			req := invokeReq("f")
			start := time.Now()
			rel, _, err := l.Admit(ctx, req)
			d := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			rel(http.StatusOK, http.Header{})
			if i >= 100 { // warm-up: connections, script cache
				ds = append(ds, d)
			}
		}
		slices.Sort(ds)
		return ds
	}
	base := measure(local)
	with := measure(shared)
	pct := func(ds []time.Duration, p float64) time.Duration { return ds[int(float64(len(ds)-1)*p)] }
	p50, p99 := pct(with, 0.5)-pct(base, 0.5), pct(with, 0.99)-pct(base, 0.99)
	line := "fleet admission overhead (Redis on loopback, uncontended, function + all-functions semaphores): p50 " +
		p50.Round(time.Microsecond).String() + ", p99 " + p99.Round(time.Microsecond).String() +
		" (local limiter alone: p50 " + pct(base, 0.5).String() + ", p99 " + pct(base, 0.99).String() + ")"
	t.Log(line)
	if out := os.Getenv("SKEWPROXY_FLEET_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(line+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	// No timed assertion: the figures are reported, never judged here.
}

// BenchmarkFleetAdmit is one uncontended admission and release through a
// coordinator on a loopback Redis (two scripts to acquire; the release
// runs in the background).
func BenchmarkFleetAdmit(b *testing.B) {
	r := fleettest.Start(b)
	cfg := testConfig(b, r)
	cfg.MaxInflight = 1000
	l := lambdalimit.New(lambdalimit.Config{MaxInflight: 1000, Coordinator: newCoordinator(b, cfg)})
	ctx := context.Background()
	for b.Loop() {
		rel, _, err := l.Admit(ctx, invokeReq("f"))
		if err != nil {
			b.Fatal(err)
		}
		rel(http.StatusOK, http.Header{})
	}
}
