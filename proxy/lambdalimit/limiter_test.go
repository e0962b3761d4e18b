package lambdalimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAdmitPassesWhatItDoesNotHold(t *testing.T) {
	l := New(Config{MaxInflight: 1, MaxQueue: 1, QueueTimeout: time.Second})
	hold := admit(t, l, "f") // the only slot is taken
	defer ok200(hold)

	event := invokeReq("f")
	event.Header.Set("X-Amz-Invocation-Type", "Event")
	dry := invokeReq("f")
	dry.Header.Set("X-Amz-Invocation-Type", "DryRun")
	tests := []struct {
		name string
		req  *http.Request
	}{
		{name: "not lambda", req: httptest.NewRequest(http.MethodPut, "http://s3.us-east-1.amazonaws.com/b/k", nil)},
		{name: "lambda get function", req: httptest.NewRequest(http.MethodGet, "http://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f", nil)},
		{name: "event", req: event},
		{name: "dry run", req: dry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			rel, waited, err := l.Admit(ctx, tc.req)
			if err != nil || rel == nil || waited != 0 {
				t.Fatalf("Admit = (%v, %v, %v), want immediate admission", rel != nil, waited, err)
			}
			rel(http.StatusTooManyRequests, http.Header{"X-Amzn-Errortype": {"TooManyRequestsException"}})
			if got := l.Inflight(); got != 1 {
				t.Errorf("Inflight = %d after a pass-through, want 1", got)
			}
		})
	}
	if st := l.Status(); st.Functions["f"].EffectiveLimit != 0 {
		t.Errorf("a pass-through release adapted the limit: %+v", st.Functions["f"])
	}
}

func TestLimitEventsHoldsEvents(t *testing.T) {
	l := New(Config{MaxInflight: 1, LimitEvents: true, QueueTimeout: 50 * time.Millisecond})
	hold := admit(t, l, "f")
	defer ok200(hold)
	req := invokeReq("f")
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	_, _, err := l.Admit(context.Background(), req)
	var th *Throttle
	if !errors.As(err, &th) || th.Reason != ReasonQueueTimeout {
		t.Fatalf("Event invoke with LimitEvents: err = %v, want a queue timeout", err)
	}
}

func TestFIFOWithinFunction(t *testing.T) {
	const n = 20
	l := New(Config{MaxInflight: 1, QueueTimeout: 10 * time.Second})
	hold := admit(t, l, "other")

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, _, err := l.Admit(context.Background(), invokeReq("arn:aws:lambda:us-east-1:123456789012:function:f"))
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			ok200(rel)
		}()
		eventually(t, "waiter queued", func() bool { return l.Queued() == int64(i+1) })
	}
	ok200(hold)
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("admission order %v, want 0..%d", order, n-1)
		}
	}
	if len(order) != n {
		t.Fatalf("%d admitted, want %d", len(order), n)
	}
}

func TestRoundRobinAcrossFunctions(t *testing.T) {
	l := New(Config{MaxInflight: 1, QueueTimeout: 10 * time.Second})
	hold := admit(t, l, "other")

	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	enqueue := func(fn string, want int64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, _, err := l.Admit(context.Background(), invokeReq(fn))
			if err != nil {
				t.Errorf("%s: %v", fn, err)
				return
			}
			mu.Lock()
			order = append(order, fn)
			mu.Unlock()
			ok200(rel)
		}()
		eventually(t, fn+" queued", func() bool { return l.Queued() == want })
	}
	for i := range 5 {
		enqueue("flood", int64(i+1))
	}
	enqueue("trickle", 6)
	enqueue("third", 7)
	ok200(hold)
	wg.Wait()
	want := []string{"flood", "trickle", "third", "flood", "flood", "flood", "flood"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

func TestLimitsNeverExceeded(t *testing.T) {
	limits := map[string]int{"a": 2, "arn:aws:lambda:us-east-1:123456789012:function:b": 3}
	const total = 5
	l := New(Config{MaxInflight: total, FunctionMaxInflight: limits, QueueTimeout: 20 * time.Second})
	fnLimit := map[string]int64{"a": 2, "b": 3, "c": total}

	var (
		global atomic.Int64
		peak   atomic.Int64
		per    = map[string]*atomic.Int64{"a": {}, "b": {}, "c": {}}
		perMax = map[string]*atomic.Int64{"a": {}, "b": {}, "c": {}}
		wg     sync.WaitGroup
	)
	raise := func(v *atomic.Int64, n int64) {
		for {
			old := v.Load()
			if n <= old || v.CompareAndSwap(old, n) {
				return
			}
		}
	}
	idents := []string{"a", "b:prod", "c", "123456789012:function:b", "a:7"}
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ident := idents[i%len(idents)]
			key := FunctionKey(ident)
			rel, _, err := l.Admit(context.Background(), invokeReq(ident))
			if err != nil {
				t.Errorf("Admit: %v", err)
				return
			}
			raise(&peak, global.Add(1))
			raise(perMax[key], per[key].Add(1))
			time.Sleep(time.Duration(i%3) * 100 * time.Microsecond)
			per[key].Add(-1)
			global.Add(-1)
			ok200(rel)
		}()
	}
	wg.Wait()
	if got := peak.Load(); got > total || got < 2 {
		t.Errorf("peak total in flight %d, want 2..%d", got, total)
	}
	for k, lim := range fnLimit {
		if got := perMax[k].Load(); got > lim {
			t.Errorf("function %s peaked at %d in flight, limit %d", k, got, lim)
		}
	}
	if l.Inflight() != 0 || l.Queued() != 0 {
		t.Errorf("after all releases: inflight %d queued %d", l.Inflight(), l.Queued())
	}
	st := l.Status()
	if len(st.Functions) != 2 || st.Functions["b"].Limit != 3 || st.Functions["a"].Limit != 2 {
		t.Errorf("idle status functions = %+v, want only the configured a and b", st.Functions)
	}
}

func TestQueueTimeout(t *testing.T) {
	const timeout = 60 * time.Millisecond
	l := New(Config{MaxInflight: 1, QueueTimeout: timeout})
	hold := admit(t, l, "f")

	start := time.Now()
	rel, waited, err := l.Admit(context.Background(), invokeReq("f"))
	elapsed := time.Since(start)
	var th *Throttle
	if !errors.As(err, &th) || rel != nil {
		t.Fatalf("Admit = %v, want *Throttle", err)
	}
	if th.Reason != ReasonQueueTimeout || th.Function != "f" || th.Failure() != "queue_timeout" {
		t.Errorf("throttle = %+v (failure %q)", th, th.Failure())
	}
	if waited < timeout || th.Waited < timeout || elapsed > 5*time.Second {
		t.Errorf("waited %v (throttle says %v, elapsed %v), want >= %v", waited, th.Waited, elapsed, timeout)
	}
	if l.Queued() != 0 || l.Inflight() != 1 {
		t.Errorf("after timeout: queued %d inflight %d, want 0 and 1", l.Queued(), l.Inflight())
	}
	ok200(hold)
	ok200(admit(t, l, "f")) // the slot is free again
	if l.Inflight() != 0 {
		t.Errorf("inflight %d at the end", l.Inflight())
	}
}

func TestQueueFull(t *testing.T) {
	l := New(Config{MaxInflight: 1, MaxQueue: 2, QueueTimeout: 10 * time.Second})
	hold := admit(t, l, "f")
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, _, err := l.Admit(context.Background(), invokeReq([]string{"f", "g"}[i]))
			if err != nil {
				t.Errorf("queued waiter: %v", err)
				return
			}
			ok200(rel)
		}()
	}
	eventually(t, "two queued", func() bool { return l.Queued() == 2 })

	start := time.Now()
	_, waited, err := l.Admit(context.Background(), invokeReq("h"))
	var th *Throttle
	if !errors.As(err, &th) || th.Reason != ReasonQueueFull {
		t.Fatalf("third waiter: err = %v, want queue full", err)
	}
	if waited != 0 || time.Since(start) > time.Second {
		t.Errorf("queue full took %v (waited %v), want at once", time.Since(start), waited)
	}
	if _, ok := l.Status().Functions["h"]; ok {
		t.Errorf("a refused function stays in the status: %+v", l.Status().Functions)
	}
	ok200(hold)
	wg.Wait()
	if l.Inflight() != 0 || l.Queued() != 0 {
		t.Errorf("end: inflight %d queued %d", l.Inflight(), l.Queued())
	}
}

func TestCancelLeavesQueue(t *testing.T) {
	l := New(Config{MaxInflight: 1, QueueTimeout: 10 * time.Second})
	hold := admit(t, l, "f")

	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		rel func(int, http.Header)
		err error
	}
	done := make(chan result, 1)
	go func() {
		rel, _, err := l.Admit(ctx, invokeReq("f"))
		done <- result{rel, err}
	}()
	eventually(t, "waiter queued", func() bool { return l.Queued() == 1 })
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) || r.rel != nil {
		t.Fatalf("cancelled waiter: err = %v, release %v", r.err, r.rel != nil)
	}
	var th *Throttle
	if errors.As(r.err, &th) {
		t.Errorf("a cancelled waiter got a Throttle")
	}
	if l.Queued() != 0 {
		t.Errorf("queued %d after cancel", l.Queued())
	}
	ok200(hold)
	if l.Inflight() != 0 {
		t.Fatalf("inflight %d: the cancelled waiter was admitted", l.Inflight())
	}
	ok200(admit(t, l, "f"))
}

func TestCancelRacingAdmissionLeaksNoSlot(t *testing.T) {
	l := New(Config{MaxInflight: 1, QueueTimeout: 10 * time.Second})
	var admitted, cancelled int
	for range 200 {
		hold := admit(t, l, "f")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			rel, _, err := l.Admit(ctx, invokeReq("f"))
			if err == nil {
				ok200(rel)
			}
			done <- err
		}()
		eventually(t, "waiter queued", func() bool { return l.Queued() == 1 })
		go cancel()
		ok200(hold)
		if err := <-done; err == nil {
			admitted++
		} else {
			cancelled++
		}
		cancel()
		if l.Inflight() != 0 || l.Queued() != 0 {
			t.Fatalf("inflight %d queued %d after a cancel race", l.Inflight(), l.Queued())
		}
	}
	t.Logf("admitted %d, cancelled %d", admitted, cancelled)
}

func TestAdmitWithDoneContext(t *testing.T) {
	l := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Admit(ctx, invokeReq("f")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if l.Inflight() != 0 {
		t.Fatalf("inflight %d", l.Inflight())
	}
}

func TestReleaseTwiceCountsOnce(t *testing.T) {
	l := New(Config{MaxInflight: 2})
	a := admit(t, l, "f")
	b := admit(t, l, "f")
	ok200(a)
	ok200(a)
	if got := l.Inflight(); got != 1 {
		t.Fatalf("inflight %d after releasing one twice, want 1", got)
	}
	ok200(b)
}

func TestQueueAgeUsesConfigClock(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := New(Config{MaxInflight: 1, QueueTimeout: 10 * time.Second, Now: clock})
	hold := admit(t, l, "f")
	done := make(chan time.Duration, 1)
	go func() {
		rel, waited, err := l.Admit(context.Background(), invokeReq("f"))
		if err == nil {
			ok200(rel)
		}
		done <- waited
	}()
	eventually(t, "queued", func() bool { return l.Queued() == 1 })
	mu.Lock()
	now = now.Add(90 * time.Second)
	mu.Unlock()
	if got := l.Status().Functions["f"].OldestWaitMS; got != 90000 {
		t.Errorf("oldest_wait_ms = %d, want 90000", got)
	}
	ok200(hold)
	if got := <-done; got != 90*time.Second {
		t.Errorf("waited %v, want 90s", got)
	}
}
