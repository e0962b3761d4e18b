package main

// End-to-end proof of fleet-wide Lambda limits (issue 17) through the real
// binary: several `skewproxy serve` processes share one real redis-server
// (fleettest, on loopback) with --lambda-coordinator, real aws-sdk-go-v2
// Lambda clients burst through all of them at once, and the verifying fake
// AWS enforces the function's reserved concurrency. Then the faults: one
// proxy killed with SIGKILL mid-burst, and Redis stopped and restarted
// mid-burst.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/redis/go-redis/v9"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet/fleettest"
	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// fleetE2EStatus is the part of /status the fleet tests read.
type fleetE2EStatus struct {
	Lambda struct {
		Inflight     int    `json:"inflight"`
		Queued       int    `json:"queued"`
		Coordinating int    `json:"coordinating"`
		Mode         string `json:"mode"`
		Coordinator  struct {
			Mode        string `json:"mode"`
			Fallback    string `json:"fallback"`
			Redis       string `json:"redis"`
			Instance    string `json:"instance"`
			ProxiesSeen int    `json:"proxies_seen"`
			FleetSize   int    `json:"fleet_size"`
			Fallbacks   int    `json:"fallbacks"`
			LastError   string `json:"last_error"`
		} `json:"coordinator"`
	} `json:"lambda"`
}

func fleetE2EGetStatus(t *testing.T, p *runningProxy) fleetE2EStatus {
	t.Helper()
	var st fleetE2EStatus
	p.getJSON(t, "/status", &st)
	return st
}

// fleetE2EWait polls every proxy's /status until cond holds for all.
func fleetE2EWait(t *testing.T, ps []*runningProxy, within time.Duration, what string, cond func(fleetE2EStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		all := true
		var last fleetE2EStatus
		for _, p := range ps {
			if last = fleetE2EGetStatus(t, p); !cond(last) {
				all = false
				break
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not seen on every proxy within %v; last lambda status %+v", what, within, last.Lambda)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetE2EProxies starts n proxies in front of fake, each with args (the
// coordinator flags, the limits).
func fleetE2EProxies(t *testing.T, fake *proxytest.AWS, ntp string, n int, args ...string) []*runningProxy {
	t.Helper()
	var ps []*runningProxy
	for range n {
		ps = append(ps, startProxy(t, proxyOptions{
			Args: append([]string{
				"--resolve", lambdaE2EHost + ":443=" + fake.URL(),
				"--upstream-ca", fake.CAFile(t),
				"--time-source", "ntp://" + ntp,
			}, args...),
			Env: proxyCredsEnv(proxyKeys),
		}))
	}
	return ps
}

// fleetE2EBurst sends per invokes of fn through each proxy at once (one
// SDK client per proxy, making up to attempts attempts, as the SDKs retry
// throttles) and returns the errors by proxy and the wall time.
func fleetE2EBurst(ctx context.Context, ps []*runningProxy, fn string, per, attempts int) ([][]error, time.Duration) {
	errs := make([][]error, len(ps))
	clients := make([]*lambda.Client, len(ps))
	for i, p := range ps {
		o := lambdaE2EClient(p, per).Options()
		o.RetryMaxAttempts = attempts
		clients[i] = lambda.New(o)
		errs[i] = make([]error, per)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ps {
		for j := range per {
			wg.Go(func() { _, errs[i][j] = lambdaE2EInvoke(ctx, clients[i], fn) })
		}
	}
	wg.Wait()
	return errs, time.Since(start)
}

// fleetE2EStats reads the fake's counters once it has recorded every
// request it answered (a client can hold its answer a moment before the
// fake's handler returns and counts it).
func fleetE2EStats(t *testing.T, fake *proxytest.AWS) proxytest.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !fake.WaitIdle(ctx) {
		t.Error("the fake still has requests in its handler after 5s")
	}
	return fake.Stats()
}

// fleetE2EBookkeepingLag is how soon after an invoke's end the fake may
// still count it. Its handler frees the invocation when it returns, after
// it has flushed the answer: a proxy can read the whole answer, release
// the slot, and send the next invoke a moment before the fake's handler
// returns, and the fake throttles that one (seen once in a few runs on a
// loaded machine, 13 ms after an end; Lambda frees concurrency when the
// function returns, before its answer reaches the client).
const fleetE2EBookkeepingLag = 50 * time.Millisecond

// fleetE2ECheckThrottles fails the test for every invoke the fake
// throttled, except one that arrived within fleetE2EBookkeepingLag of
// another invoke's end (run is the functions' run time). The clients
// retry throttles, as the SDKs do, so such an invoke still succeeds.
func fleetE2ECheckThrottles(t *testing.T, fake *proxytest.AWS, run time.Duration) {
	t.Helper()
	reqs := fake.Requests()
	for _, q := range reqs {
		if q.Status != http.StatusTooManyRequests {
			continue
		}
		gap := time.Duration(1 << 62)
		for _, o := range reqs {
			if o.Status == http.StatusOK {
				if d := q.Time.Sub(o.Time.Add(run)); d >= -5*time.Millisecond && d < gap {
					gap = d
				}
			}
		}
		if gap > fleetE2EBookkeepingLag {
			t.Errorf("fake throttled an invoke (nearest end of another %v before): the fleet limit did not hold", gap)
			continue
		}
		t.Logf("fake throttled an invoke that arrived %v after another ended: the fake's bookkeeping lag, not the limit", gap)
	}
}

func countFailed(errs []error) (n int, first error) {
	for _, err := range errs {
		if err != nil {
			if n == 0 {
				first = err
			}
			n++
		}
	}
	return n, first
}

// TestLambdaFleetE2EBurst: three proxies share one coordinator and
// --lambda-max-inflight 20; 3 × 60 one-second invokes hit all three at
// once against reserved concurrency 20 and a 5 s signature window. All
// succeed, never more than 20 run at the endpoint, no throttle, no expired
// signature. The control: the same burst through three proxies without
// the coordinator is throttled.
func TestLambdaFleetE2EBurst(t *testing.T) {
	const (
		fn    = "fleet-burst"
		limit = 20
		per   = 60
	)
	r := fleettest.Start(t)
	ntp := ntptest.Start(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
		Credentials: proxyKeys,
		// Shorter than the burst (about 9 s): an invoke signed when it
		// reached a proxy and sent after its wait would be refused.
		Window:       5 * time.Second,
		FutureWindow: 5 * time.Second,
		Functions:    map[string]proxytest.FunctionBehavior{fn: {Delay: time.Second, ReservedConcurrency: limit}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The control: per-process limits add up to 3 × 20 against 20.
	alone := fleetE2EProxies(t, fake, ntp, 3, "--lambda-max-inflight", fmt.Sprint(limit))
	for _, p := range alone {
		p.waitReady(t, 15*time.Second)
	}
	errs, took := fleetE2EBurst(ctx, alone, fn, per, 1)
	failed := 0
	for _, e := range errs {
		n, _ := countFailed(e)
		failed += n
	}
	control := fleetE2EStats(t, fake)
	t.Logf("control, no coordinator: %d of %d invokes failed in %v; fake throttled %d, max in flight %d",
		failed, 3*per, took.Round(time.Millisecond), control.Throttled, control.MaxInFlight[fn])
	if control.Throttled == 0 || failed == 0 {
		t.Fatalf("the control burst was not throttled (%d throttles): the test proves nothing", control.Throttled)
	}
	for _, p := range alone {
		_ = p.Stop(t)
	}
	fake.Reset()

	ps := fleetE2EProxies(t, fake, ntp, 3,
		"--lambda-max-inflight", fmt.Sprint(limit),
		"--lambda-coordinator", r.URL(),
		"--lambda-coordinator-namespace", "e2e-burst",
		"--lambda-coordinator-lease-ttl", "3s")
	for _, p := range ps {
		p.waitReady(t, 15*time.Second)
	}
	fleetE2EWait(t, ps, 5*time.Second, "three live proxies in Redis", func(s fleetE2EStatus) bool {
		return s.Lambda.Coordinator.Mode == "shared" && s.Lambda.Coordinator.ProxiesSeen == 3
	})
	errs, took = fleetE2EBurst(ctx, ps, fn, per, 3)
	for i, e := range errs {
		if n, first := countFailed(e); n > 0 {
			t.Errorf("proxy %d: %d of %d invokes failed, first: %v", i, n, per, first)
		}
	}
	st := fleetE2EStats(t, fake)
	var oldest time.Duration
	for _, req := range fake.Requests() {
		if req.Verified != nil {
			oldest = max(oldest, req.Time.Sub(req.Verified.SigningTime))
		}
	}
	t.Logf("fleet of 3 with one coordinator: %d invokes in %v; fake verified %d, failures %v, throttled %d, max in flight %d; oldest signature on arrival %v",
		3*per, took.Round(time.Millisecond), st.Operations["Lambda.Invoke"], st.Failures, st.Throttled, st.MaxInFlight[fn], oldest)
	ran := 0
	for _, req := range fake.Requests() {
		if req.Status == http.StatusOK {
			ran++
		}
	}
	if ran != 3*per {
		t.Errorf("fake ran %d invokes, want %d", ran, 3*per)
	}
	for kind, n := range st.Failures {
		if n > 0 {
			t.Errorf("fake refused %d requests for %s", n, kind)
		}
	}
	fleetE2ECheckThrottles(t, fake, time.Second)
	if got := st.MaxInFlight[fn]; got > limit || got < limit/2 {
		t.Errorf("fake max in flight %d, want in [%d, %d]", got, limit/2, limit)
	}
	if floor := time.Duration(3*per/limit) * time.Second; took < floor {
		t.Errorf("burst took %v, less than %v: the fleet limit did not hold", took, floor)
	}
	final := fleetE2EGetStatus(t, ps[0])
	if c := final.Lambda.Coordinator; c.Mode != "shared" || c.Fallbacks != 0 || c.Redis != r.URL() || c.Instance == "" {
		t.Errorf("/status coordinator after the burst: %+v", c)
	}
	var ready map[string]any
	if code := ps[0].getJSON(t, "/readyz", &ready); code != http.StatusOK || !strings.Contains(fmt.Sprint(ready["lambda_coordinator"]), "shared") {
		t.Errorf("/readyz %d %v, want 200 with the coordinator's mode", code, ready)
	}
	waits, _ := lambdaE2EQueueWaitMetric(t, ps[0])
	if metrics := adminMetrics(t, ps[0]); !strings.Contains(metrics, `skewproxy_lambda_coordinator_mode{mode="shared"`) ||
		!strings.Contains(metrics, "skewproxy_lambda_coordination_wait_seconds_count") ||
		!strings.Contains(metrics, `skewproxy_lambda_coordinator_rtt_seconds_count{op="acquire"`) {
		t.Errorf("coordinator series missing from /metrics (queue waits %v)", waits)
	}
}

// adminMetrics returns the proxy's /metrics text.
func adminMetrics(t *testing.T, p *runningProxy) string {
	t.Helper()
	resp, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// TestLambdaFleetE2EKillOneProxy: SIGKILL of one of three proxies in the
// middle of a burst: its slots in Redis lapse within the lease TTL, the
// other two finish every invoke, and the fleet limit holds throughout.
func TestLambdaFleetE2EKillOneProxy(t *testing.T) {
	const (
		fn    = "fleet-kill"
		limit = 12
		per   = 30
		ttl   = 2 * time.Second
		ns    = "e2e-kill"
	)
	r := fleettest.Start(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
		Credentials: proxyKeys,
		Functions:   map[string]proxytest.FunctionBehavior{fn: {Delay: 700 * time.Millisecond, ReservedConcurrency: limit}},
	})
	ps := fleetE2EProxies(t, fake, "127.0.0.1:1", 3,
		"--lambda-max-inflight", fmt.Sprint(limit),
		"--lambda-coordinator", r.URL(),
		"--lambda-coordinator-namespace", ns,
		"--lambda-coordinator-lease-ttl", ttl.String())
	victim := ps[2]
	instance := fleetE2EGetStatus(t, victim).Lambda.Coordinator.Instance
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	// Leases of the victim that have not lapsed (Redis's clock judges).
	liveLeases := func() int {
		now, err := rdb.Time(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		key := ns + ":{" + ns + "/" + fn + "}:leases"
		ids, err := rdb.ZRangeArgs(context.Background(), redis.ZRangeArgs{Key: key, ByScore: true, Start: now.UnixMilli(), Stop: "+inf"}).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, id := range ids {
			if strings.HasPrefix(id, instance+":") {
				n++
			}
		}
		return n
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type burst struct {
		errs [][]error
		took time.Duration
	}
	done := make(chan burst, 1)
	go func() {
		errs, took := fleetE2EBurst(ctx, ps, fn, per, 3)
		done <- burst{errs, took}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for liveLeases() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the victim never held a slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	held := liveLeases()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for liveLeases() > 0 {
		if time.Since(killed) > ttl+time.Second {
			t.Fatalf("the killed proxy still holds %d slots %v after SIGKILL (lease TTL %v)", liveLeases(), time.Since(killed), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	freed := time.Since(killed)
	t.Logf("SIGKILL of a proxy holding %d slots: they lapsed %v later (lease TTL %v)", held, freed.Round(time.Millisecond), ttl)
	if freed > ttl+200*time.Millisecond {
		t.Errorf("slots came back after %v, more than one TTL (%v)", freed, ttl)
	}

	b := <-done
	for i, e := range b.errs[:2] {
		if n, first := countFailed(e); n > 0 {
			t.Errorf("surviving proxy %d: %d of %d invokes failed, first: %v", i, n, per, first)
		}
	}
	victimFailed, _ := countFailed(b.errs[2])
	st := fleetE2EStats(t, fake)
	t.Logf("burst of 3 × %d in %v: the killed proxy's client saw %d failures; fake throttled %d, max in flight %d",
		per, b.took.Round(time.Millisecond), victimFailed, st.Throttled, st.MaxInFlight[fn])
	fleetE2ECheckThrottles(t, fake, 700*time.Millisecond)
	if st.MaxInFlight[fn] > limit {
		t.Errorf("fleet limit broken around the kill: max in flight %d (limit %d)", st.MaxInFlight[fn], limit)
	}
}

// TestLambdaFleetE2ERedisRestart: Redis is killed mid-burst and started
// again (empty). No invoke is lost or hangs; every proxy falls back to its
// local share (logged once, in /status, /readyz and /metrics) and returns
// to shared limits when Redis answers, registering the leases it ran
// meanwhile.
func TestLambdaFleetE2ERedisRestart(t *testing.T) {
	const (
		fn    = "fleet-redis"
		limit = 10
		per   = 40
	)
	r := fleettest.Start(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
		Credentials: proxyKeys,
		Functions:   map[string]proxytest.FunctionBehavior{fn: {Delay: 400 * time.Millisecond}},
	})
	ps := fleetE2EProxies(t, fake, "127.0.0.1:1", 3,
		"--lambda-max-inflight", fmt.Sprint(limit),
		"--lambda-coordinator", r.URL(),
		"--lambda-coordinator-namespace", "e2e-redis",
		"--lambda-coordinator-lease-ttl", "2s")
	fleetE2EWait(t, ps, 5*time.Second, "three live proxies in Redis", func(s fleetE2EStatus) bool {
		return s.Lambda.Coordinator.ProxiesSeen == 3
	})
	logsBefore := make([]int, len(ps))
	for i, p := range ps {
		logsBefore[i] = len(p.Logs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type burst struct {
		errs [][]error
		took time.Duration
	}
	done := make(chan burst, 1)
	go func() {
		errs, took := fleetE2EBurst(ctx, ps, fn, per, 3)
		done <- burst{errs, took}
	}()
	fleetE2EWait(t, ps[:1], 10*time.Second, "invokes in flight", func(s fleetE2EStatus) bool { return s.Lambda.Inflight > 0 })
	time.Sleep(500 * time.Millisecond)
	r.Stop(t)
	stopped := time.Now()
	fleetE2EWait(t, ps, 5*time.Second, "local fallback", func(s fleetE2EStatus) bool {
		c := s.Lambda.Coordinator
		return s.Lambda.Mode == "local" && c.Mode == "local" && c.Fallbacks == 1 && c.LastError != "" && c.FleetSize == 3
	})
	t.Logf("every proxy in local fallback %v after Redis stopped", time.Since(stopped).Round(time.Millisecond))
	var ready map[string]any
	if code := ps[1].getJSON(t, "/readyz", &ready); code != http.StatusOK || !strings.Contains(fmt.Sprint(ready["lambda_coordinator"]), "local") {
		t.Errorf("/readyz in fallback: %d %v, want 200 naming the local fallback", code, ready)
	}
	if m := adminMetrics(t, ps[1]); !strings.Contains(m, `skewproxy_lambda_coordinator_fallbacks_total{mode="local"`) ||
		!strings.Contains(m, `skewproxy_lambda_coordinator_mode{mode="local"`) {
		t.Error("/metrics shows no fallback")
	}
	time.Sleep(time.Second)
	r.Restart(t)
	restarted := time.Now()
	fleetE2EWait(t, ps, 5*time.Second, "shared again", func(s fleetE2EStatus) bool {
		return s.Lambda.Mode == "shared" && s.Lambda.Coordinator.Mode == "shared"
	})
	t.Logf("every proxy shared again %v after Redis restarted", time.Since(restarted).Round(time.Millisecond))

	var b burst
	select {
	case b = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("the burst hung after Redis came back")
	}
	for i, e := range b.errs {
		if n, first := countFailed(e); n > 0 {
			t.Errorf("proxy %d: %d of %d invokes lost, first: %v", i, n, per, first)
		}
	}
	st := fleetE2EStats(t, fake)
	t.Logf("burst of 3 × %d (limit %d) across the outage in %v: fake served %d, max in flight %d",
		per, limit, b.took.Round(time.Millisecond), st.Operations["Lambda.Invoke"], st.MaxInFlight[fn])
	if st.Operations["Lambda.Invoke"] != 3*per {
		t.Errorf("fake served %d invokes, want %d", st.Operations["Lambda.Invoke"], 3*per)
	}
	// Shared: 10; local: 3 × ceil(10/3) = 12; the changes of mode may add
	// the slots running when they happen.
	if got := st.MaxInFlight[fn]; got > 2*limit {
		t.Errorf("max in flight %d across the outage, want at most %d", got, 2*limit)
	}
	for i, p := range ps {
		logs := p.Logs()[logsBefore[i]:]
		down := strings.Count(logs, "lambda coordinator unavailable")
		up := strings.Count(logs, "lambda coordinator answers again")
		if down != 1 || up != 1 {
			t.Errorf("proxy %d logged %d fallbacks and %d recoveries, want one each", i, down, up)
		}
		if strings.Contains(logs, `"level":"ERROR"`) {
			t.Errorf("proxy %d logged an error across the outage", i)
		}
	}
}

// TestLambdaFleetE2EFlags: the coordinator flags are checked before the
// proxy starts, and an error never prints the URL's password.
func TestLambdaFleetE2EFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "scheme", args: []string{"--lambda-coordinator", "http://127.0.0.1:6379"}, want: "redis:// or rediss://"},
		{name: "database", args: []string{"--lambda-coordinator", "redis://:hunter2@127.0.0.1:6379/x"}, want: "database"},
		{name: "fallback", args: []string{"--lambda-coordinator-fallback", "open"}, want: "want local or closed"},
		{name: "fleet size", args: []string{"--lambda-coordinator-fleet-size", "-1"}, want: "fleet-size must be >= 0"},
		{name: "lease ttl", args: []string{"--lambda-coordinator-lease-ttl", "100ms"}, want: "at least 500ms"},
		{name: "password file", args: []string{"--lambda-coordinator-password-file", "/nonexistent/pw"}, want: "password-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)
			_, stderr, code := runBinary(t, "", nil, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("the error prints the password: %q", stderr)
			}
		})
	}
}
