package fleet

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet/fleettest"
)

// TestFleetSemaphore: two coordinators on one Redis share a function's
// limit and the limit over all functions.
func TestFleetSemaphore(t *testing.T) {
	r := fleettest.Start(t)
	tests := []struct {
		name    string
		max     int
		fnLimit int
		fns     [2]string // the functions the two proxies invoke
		want    int       // slots granted before the next waits
	}{
		{name: "per function", fnLimit: 3, fns: [2]string{"f", "f"}, want: 3},
		{name: "all functions", max: 2, fns: [2]string{"f", "g"}, want: 2},
		{name: "both, function tighter", max: 5, fnLimit: 2, fns: [2]string{"f", "f"}, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, r)
			cfg.MaxInflight = tc.max
			if tc.fnLimit > 0 {
				cfg.FunctionMaxInflight = map[string]int{"f": tc.fnLimit}
			}
			cs := []*Coordinator{newCoordinator(t, cfg), newCoordinator(t, cfg)}
			var held []lambdalimit.Lease
			for i := range tc.want {
				held = append(held, mustAcquire(t, cs[i%2], tc.fns[i%2]))
			}
			// Full: the next one, from either proxy, waits.
			for i, c := range cs {
				if l, err := acquire(t, c, tc.fns[i], 150*time.Millisecond); err == nil {
					l.Release(0, nil)
					t.Fatalf("proxy %d got slot %d of %d", i, tc.want+1, tc.want)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("proxy %d: %v, want a deadline", i, err)
				}
			}
			// A release on one proxy lets the other in at once (message).
			got := make(chan time.Duration, 1)
			go func() {
				start := time.Now()
				l, err := acquire(t, cs[1], tc.fns[1], 5*time.Second)
				if err == nil {
					defer ok200(l)
				}
				got <- time.Since(start)
			}()
			time.Sleep(100 * time.Millisecond)
			ok200(held[0])
			if d := <-got; d > time.Second {
				t.Errorf("the waiter got the freed slot after %v", d)
			}
			for _, l := range held[1:] {
				ok200(l)
			}
		})
	}
}

// TestFleetOldestTicketFirst: with one slot, waiters from two proxies are
// granted by ticket (arrival in corrected time), not by the order in which
// they reached Redis.
func TestFleetOldestTicketFirst(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.FunctionMaxInflight = map[string]int{"f": 1}
	cfg.PollInterval = 20 * time.Millisecond
	a, b := newCoordinator(t, cfg), newCoordinator(t, cfg)
	hold := mustAcquire(t, a, "f")

	base := time.Now()
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	// Arrivals: b's ticket base+3, then a's base+1, then b's base+2: they
	// register in that order, and must be granted 1, 2, 3.
	for _, w := range []struct {
		c  *Coordinator
		at int
	}{{b, 3}, {a, 1}, {b, 2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := w.c.Acquire(ctx, "f", base.Add(time.Duration(w.at)*time.Millisecond))
			if err != nil {
				t.Errorf("ticket %d: %v", w.at, err)
				return
			}
			mu.Lock()
			order = append(order, w.at)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			ok200(l)
		}()
		time.Sleep(100 * time.Millisecond) // each registers before the next arrives
	}
	ok200(hold)
	wg.Wait()
	if len(order) != 3 || order[0] != 1 || order[1] != 2 || order[2] != 3 {
		t.Errorf("granted in ticket order %v, want [1 2 3]", order)
	}
}

// TestFleetLeaseLapsesWhenProxyDies: a proxy that stops renewing (closed
// without releasing, as after kill -9) loses its slots within one TTL;
// one that keeps running keeps them past many TTLs.
func TestFleetLeaseLapsesWhenProxyDies(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.LeaseTTL = 600 * time.Millisecond
	cfg.FunctionMaxInflight = map[string]int{"f": 2}
	alive := newCoordinator(t, cfg)
	dying, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	long := mustAcquire(t, alive, "f")
	defer ok200(long)
	_ = mustAcquire(t, dying, "f") // never released
	// Renewed: after 3 TTLs the running lease still counts.
	time.Sleep(3 * cfg.LeaseTTL)
	if l, err := acquire(t, alive, "f", 100*time.Millisecond); err == nil {
		l.Release(0, nil)
		t.Fatal("a third slot was granted while two leases ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dying.Close(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l := mustAcquire(t, alive, "f")
	defer ok200(l)
	took := time.Since(start)
	t.Logf("slot of the stopped proxy free after %v (lease TTL %v)", took, cfg.LeaseTTL)
	if took > cfg.LeaseTTL+500*time.Millisecond {
		t.Errorf("slot came back after %v, more than one TTL (%v)", took, cfg.LeaseTTL)
	}
}

// TestFleetSharedAdaptiveLimit: a 429 seen by one proxy halves the limit
// every proxy gets slots under; successes raise it back by one per window.
func TestFleetSharedAdaptiveLimit(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.FunctionMaxInflight = map[string]int{"f": 8}
	a, b := newCoordinator(t, cfg), newCoordinator(t, cfg)
	var held []lambdalimit.Lease
	for i := range 4 {
		held = append(held, mustAcquire(t, []*Coordinator{a, b}[i%2], "f"))
	}
	// Two 429s of the same window: one halving, from 4 held to 2.
	held[0].Release(http.StatusTooManyRequests, throttled(""))
	held[1].Release(http.StatusTooManyRequests, throttled(""))
	eventually(t, 2*time.Second, "halved limit seen by b", func() bool {
		l, err := acquire(t, b, "f", 100*time.Millisecond)
		if err == nil {
			l.Release(0, nil)
		}
		return b.Status().Functions["f"].EffectiveLimit == 2
	})
	// 2 still held = the effective limit: b waits.
	if l, err := acquire(t, b, "f", 150*time.Millisecond); err == nil {
		l.Release(0, nil)
		t.Fatal("b got a slot above the halved fleet limit")
	}
	held[2].Release(http.StatusOK, nil)
	held[3].Release(http.StatusOK, nil)
	// Additive increase: 2 successes -> 3, 3 more -> 4, ... up to 8.
	var seen []int64
	for i := 0; i < 100; i++ {
		l := mustAcquire(t, a, "f")
		ok200(l)
		eventually(t, time.Second, "release recorded", func() bool { return a.Status().Leases == 0 })
		if eff := a.Status().Functions["f"].EffectiveLimit; len(seen) == 0 || seen[len(seen)-1] != eff {
			seen = append(seen, eff)
		}
		if seen[len(seen)-1] == 8 {
			break
		}
	}
	t.Logf("effective limit while recovering: %v", seen)
	if seen[len(seen)-1] != 8 {
		t.Fatalf("limit did not recover to 8: %v", seen)
	}
}

// TestFleetRetryAfterPausesFleet: a Retry-After on one proxy's 429 holds
// the other proxy's grants for that long.
func TestFleetRetryAfterPausesFleet(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	a, b := newCoordinator(t, cfg), newCoordinator(t, cfg)
	l := mustAcquire(t, a, "f")
	l.Release(http.StatusTooManyRequests, throttled("1"))
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	l2 := mustAcquire(t, b, "f")
	ok200(l2)
	if took := time.Since(start); took < 700*time.Millisecond || took > 2*time.Second {
		t.Errorf("b waited %v after a Retry-After: 1 seen by a, want about 1s", took)
	}
}

// TestFleetFallback: Redis stopped (or frozen) mid-use: Acquire never
// hangs, the mode changes once (local or closed, per config), running
// leases survive, and when Redis is back the mode returns to shared and
// the leases granted meanwhile are registered.
func TestFleetFallback(t *testing.T) {
	tests := []struct {
		name   string
		closed bool
		freeze bool // SIGSTOP (slow) instead of a crash
	}{
		{name: "local after crash"},
		{name: "closed after crash", closed: true},
		{name: "local when frozen", freeze: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fleettest.Start(t)
			cfg := testConfig(t, r)
			cfg.FailClosed = tc.closed
			cfg.FunctionMaxInflight = map[string]int{"f": 4}
			var modes []lambdalimit.Mode
			var mu sync.Mutex
			cfg.OnModeChange = func(m lambdalimit.Mode) { mu.Lock(); modes = append(modes, m); mu.Unlock() }
			c := newCoordinator(t, cfg)
			running := mustAcquire(t, c, "f")
			defer ok200(running)

			if tc.freeze {
				r.Freeze(t)
			} else {
				r.Stop(t)
			}
			start := time.Now()
			l, err := acquire(t, c, "f", 10*time.Second)
			took := time.Since(start)
			if took > 3*cfg.Timeout {
				t.Errorf("Acquire with Redis down took %v (timeout %v)", took, cfg.Timeout)
			}
			want := lambdalimit.ModeLocal
			if tc.closed {
				want = lambdalimit.ModeClosed
				if !errors.Is(err, lambdalimit.ErrCoordinatorUnavailable) {
					t.Fatalf("closed fallback: Acquire = %v, want ErrCoordinatorUnavailable", err)
				}
			} else {
				if err != nil || l.Shared() {
					t.Fatalf("local fallback: Acquire = (%v, %v), want a local lease", l, err)
				}
				defer ok200(l)
			}
			if got := c.Mode(); got != want {
				t.Fatalf("mode %v, want %v", got, want)
			}
			st := c.Status()
			if st.Mode != want.String() || st.LastError == "" || st.Fallbacks != 1 {
				t.Errorf("status in fallback: %+v", st)
			}
			t.Logf("fell back in %v: %s", took.Round(time.Millisecond), c.Detail())

			if tc.freeze {
				r.Thaw(t)
			} else {
				r.Restart(t)
			}
			eventually(t, 3*time.Second, "shared mode again", func() bool { return c.Mode() == lambdalimit.ModeShared })
			mu.Lock()
			if len(modes) != 2 || modes[0] != want || modes[1] != lambdalimit.ModeShared {
				t.Errorf("mode changes %v, want [%v shared]", modes, want)
			}
			mu.Unlock()
			// The running leases are in Redis again (a restart lost them).
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
			defer rdb.Close()
			wantHeld := int64(2)
			if tc.closed {
				wantHeld = 1
			}
			eventually(t, 2*time.Second, "leases registered again", func() bool {
				n, _ := rdb.ZCard(context.Background(), keysFor(cfg.Namespace, "f").leases).Result()
				return n == wantHeld
			})
		})
	}
}

// TestFleetRedisDownAtStart: New does not fail when Redis is not there;
// the coordinator starts in its fallback and turns shared when it comes.
func TestFleetRedisDownAtStart(t *testing.T) {
	r := fleettest.Start(t)
	r.Stop(t)
	cfg := testConfig(t, r)
	start := time.Now()
	c := newCoordinator(t, cfg)
	if took := time.Since(start); took > 2*cfg.Timeout {
		t.Errorf("New took %v with Redis down", took)
	}
	if c.Mode() != lambdalimit.ModeLocal {
		t.Fatalf("mode %v with Redis down at start, want local", c.Mode())
	}
	r.Restart(t)
	eventually(t, 3*time.Second, "shared", func() bool { return c.Mode() == lambdalimit.ModeShared })
	ok200(mustAcquire(t, c, "f"))
}

// TestFleetCancelledWaiterLeavesNoTrace: waiters that give up are dropped
// from Redis, so they never hold back the waiters behind them.
func TestFleetCancelledWaiterLeavesNoTrace(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.FunctionMaxInflight = map[string]int{"f": 1}
	cfg.LeaseTTL = 5 * time.Second // longer than the test: only the drop can clear them
	a, b := newCoordinator(t, cfg), newCoordinator(t, cfg)
	hold := mustAcquire(t, a, "f")
	var gaveUp atomic.Int32
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			// Older tickets than the waiter below.
			if _, err := a.Acquire(ctx, "f", time.Now().Add(-time.Hour+time.Duration(i))); err != nil {
				gaveUp.Add(1)
			}
		}()
	}
	wg.Wait()
	if gaveUp.Load() != 5 {
		t.Fatalf("%d of 5 waiters gave up", gaveUp.Load())
	}
	done := make(chan error, 1)
	go func() {
		l, err := acquire(t, b, "f", 5*time.Second)
		if err == nil {
			ok200(l)
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ok200(hold)
	start := time.Now()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("b waited %v behind waiters that had left", took)
	}
}

// TestFleetRenewal: a routine renewal extends only what Redis holds (a
// lease released while the renewal was on its way stays released), while
// a Redis that lost this proxy's data (restarted unnoticed) gets every
// running lease back at the next renewal.
func TestFleetRenewal(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(ctx context.Context, rdb *redis.Client, leases string) error
		wantHeld int64
	}{
		{name: "lease removed by a release in flight", wantHeld: 0,
			mutate: func(ctx context.Context, rdb *redis.Client, leases string) error {
				return rdb.Del(ctx, leases).Err()
			}},
		{name: "redis lost everything", wantHeld: 1,
			mutate: func(ctx context.Context, rdb *redis.Client, _ string) error {
				return rdb.FlushAll(ctx).Err()
			}},
		{name: "nothing happened", wantHeld: 1,
			mutate: func(context.Context, *redis.Client, string) error { return nil }},
	}
	r := fleettest.Start(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, r)
			cfg.LeaseTTL = 30 * time.Second // only explicit renewals below
			c := newCoordinator(t, cfg)
			l := mustAcquire(t, c, "f")
			defer l.Release(0, nil)
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
			defer rdb.Close()
			ctx := context.Background()
			key := keysFor(cfg.Namespace, "f").leases
			if err := tc.mutate(ctx, rdb, key); err != nil {
				t.Fatal(err)
			}
			if err := c.renew(false); err != nil {
				t.Fatal(err)
			}
			if n, _ := rdb.ZCard(ctx, key).Result(); n != tc.wantHeld {
				t.Errorf("after a renewal Redis holds %d leases, want %d", n, tc.wantHeld)
			}
		})
	}
}

// TestFleetFunctionSlotRenewedWhileWaitingForGlobal: an invoke that holds
// its function's slot and waits longer than the TTL for one of all
// functions keeps the function's slot (it is renewed meanwhile).
func TestFleetFunctionSlotRenewedWhileWaitingForGlobal(t *testing.T) {
	r := fleettest.Start(t)
	cfg := testConfig(t, r)
	cfg.LeaseTTL = 300 * time.Millisecond
	cfg.MaxInflight = 1
	cfg.FunctionMaxInflight = map[string]int{"f": 1}
	a, b := newCoordinator(t, cfg), newCoordinator(t, cfg)
	other := mustAcquire(t, a, "g") // takes the only global slot
	waiting := make(chan lambdalimit.Lease, 1)
	go func() {
		l, err := acquire(t, b, "f", 10*time.Second) // f's slot, then waits for global
		if err != nil {
			t.Error(err)
		}
		waiting <- l
	}()
	time.Sleep(4 * cfg.LeaseTTL)
	// f's slot must still be held by b's waiter: a cannot take it.
	if l, err := acquire(t, a, "f", 100*time.Millisecond); err == nil {
		l.Release(0, nil)
		t.Fatal("f's slot lapsed while its holder waited for the all-functions slot")
	}
	ok200(other)
	if l := <-waiting; l != nil {
		ok200(l)
	}
}
