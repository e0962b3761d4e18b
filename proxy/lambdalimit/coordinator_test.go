package lambdalimit

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// fakeCoord is a Coordinator whose shared slots the test hands out: in
// ModeShared, Acquire blocks until grant is called (or, with open, grants
// at once); on a mode change every waiter gets the new mode's answer.
type fakeCoord struct {
	mu      sync.Mutex
	mode    Mode
	size    int
	open    bool
	waiters []chan Lease
	tickets []time.Time
	changed chan struct{}

	released atomic.Int32
	statuses chan int // statuses of releases, if set
}

func newFakeCoord(mode Mode, size int, open bool) *fakeCoord {
	return &fakeCoord{mode: mode, size: size, open: open, changed: make(chan struct{})}
}

type fakeLease struct {
	c      *fakeCoord
	shared bool
	once   sync.Once
}

func (l *fakeLease) Shared() bool { return l.shared }
func (l *fakeLease) Release(status int, _ http.Header) {
	l.once.Do(func() {
		l.c.released.Add(1)
		if l.c.statuses != nil {
			l.c.statuses <- status
		}
	})
}

func (c *fakeCoord) Mode() Mode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode
}

func (c *fakeCoord) FleetSize() int { return c.size }

func (c *fakeCoord) setMode(m Mode) {
	c.mu.Lock()
	c.mode = m
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// grant hands one shared slot to the oldest blocked Acquire.
func (c *fakeCoord) grant() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return false
	}
	c.waiters[0] <- &fakeLease{c: c, shared: true}
	c.waiters = c.waiters[1:]
	return true
}

func (c *fakeCoord) blocked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

func (c *fakeCoord) Acquire(ctx context.Context, fn string, ticket time.Time) (Lease, error) {
	for {
		c.mu.Lock()
		c.tickets = append(c.tickets, ticket)
		switch c.mode {
		case ModeLocal:
			c.mu.Unlock()
			return &fakeLease{c: c}, nil
		case ModeClosed:
			c.mu.Unlock()
			return nil, errors.Join(errors.New("fake: down"), ErrCoordinatorUnavailable)
		}
		if c.open {
			c.mu.Unlock()
			return &fakeLease{c: c, shared: true}, nil
		}
		ch := make(chan Lease, 1)
		c.waiters = append(c.waiters, ch)
		changed := c.changed
		c.mu.Unlock()
		select {
		case l := <-ch:
			return l, nil
		case <-changed:
			c.mu.Lock()
			for i, w := range c.waiters {
				if w == ch {
					c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				}
			}
			c.mu.Unlock()
			select {
			case l := <-ch: // granted just before the change
				return l, nil
			default:
			}
		case <-ctx.Done():
			c.mu.Lock()
			for i, w := range c.waiters {
				if w == ch {
					c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				}
			}
			c.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// TestFleetLimiterShareOfLimits: what one proxy admits at once from a
// burst, by coordinator mode: the whole limit while shared (the
// coordinator holds the fleet to it), ceil(limit / fleet size) in the
// local fallback, nothing when closed (refused at once, not queued).
func TestFleetLimiterShareOfLimits(t *testing.T) {
	tests := []struct {
		name        string
		mode        Mode
		size        int
		max, fn     int
		want        int
		wantRefused bool
	}{
		{name: "shared", mode: ModeShared, size: 3, max: 10, want: 10},
		{name: "local, fleet of 3", mode: ModeLocal, size: 3, max: 10, want: 4},
		{name: "local, fleet of 1", mode: ModeLocal, size: 1, max: 10, want: 10},
		{name: "local, function limit", mode: ModeLocal, size: 4, max: 0, fn: 9, want: 3},
		{name: "local, more proxies than slots", mode: ModeLocal, size: 40, max: 20, want: 1},
		{name: "closed", mode: ModeClosed, size: 3, max: 10, wantRefused: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coord := newFakeCoord(tc.mode, tc.size, true)
			cfg := Config{MaxInflight: tc.max, Coordinator: coord, QueueTimeout: 5 * time.Second}
			if tc.fn > 0 {
				cfg.FunctionMaxInflight = map[string]int{"f": tc.fn}
			}
			l := New(cfg)
			const n = 25
			var wg sync.WaitGroup
			var mu sync.Mutex
			var rels []func(int, http.Header)
			var refused atomic.Int32
			ctx, cancel := context.WithCancel(context.Background())
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rel, _, err := l.Admit(ctx, invokeReq("f"))
					var th *Throttle
					switch {
					case errors.As(err, &th) && th.Reason == ReasonCoordinatorUnavailable:
						refused.Add(1)
					case err != nil:
						return // cancelled at the end
					default:
						mu.Lock()
						rels = append(rels, rel)
						mu.Unlock()
					}
				}()
			}
			if tc.wantRefused {
				wg.Wait()
				cancel()
				if refused.Load() != n || l.Inflight() != 0 || l.Queued() != 0 {
					t.Fatalf("closed: %d refused, inflight %d, queued %d; want all %d refused", refused.Load(), l.Inflight(), l.Queued(), n)
				}
				return
			}
			eventually(t, "burst settled", func() bool { return l.Inflight()+l.Queued() == n })
			time.Sleep(20 * time.Millisecond)
			if got := l.Inflight(); got != int64(tc.want) {
				t.Errorf("in flight %d, want %d", got, tc.want)
			}
			if st := l.Status(); st.Mode != tc.mode.String() {
				t.Errorf("status mode %q, want %q", st.Mode, tc.mode)
			}
			cancel()
			mu.Lock()
			for _, rel := range rels {
				ok200(rel)
			}
			mu.Unlock()
			wg.Wait()
		})
	}
}

// TestFleetLimiterFallbackWhileWaiting: six invokes wait for shared slots
// when the coordinator falls back to local with a fleet of 3: two (the
// local share of 6) go at once, the other four queue again in arrival
// order, and go as slots free.
func TestFleetLimiterFallbackWhileWaiting(t *testing.T) {
	coord := newFakeCoord(ModeShared, 3, false)
	l := New(Config{MaxInflight: 6, Coordinator: coord, QueueTimeout: 10 * time.Second})
	type result struct {
		i   int
		rel func(int, http.Header)
		err error
	}
	results := make(chan result, 6)
	for i := range 6 {
		go func() {
			rel, _, err := l.Admit(context.Background(), invokeReq("f"))
			results <- result{i, rel, err}
		}()
		eventually(t, "waiting for the coordinator", func() bool { return coord.blocked() == i+1 })
	}
	if got := l.Coordinating(); got != 6 {
		t.Fatalf("coordinating %d, want 6", got)
	}
	if st := l.Status(); st.Coordinating != 6 || st.Inflight != 0 {
		t.Fatalf("status %+v, want 6 coordinating and none in flight", st)
	}
	coord.setMode(ModeLocal)
	var running []result
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		running = append(running, r)
	}
	eventually(t, "four queued again", func() bool { return l.Queued() == 4 && l.Coordinating() == 0 })
	if got := l.Inflight(); got != 2 {
		t.Fatalf("in flight %d after the fallback, want 2", got)
	}
	select {
	case r := <-results:
		t.Fatalf("invoke %d admitted beyond the local share", r.i)
	case <-time.After(50 * time.Millisecond):
	}
	// Each release lets exactly one more go, until all six ran.
	for admitted := 2; len(running) > 0; {
		ok200(running[0].rel)
		running = running[1:]
		if admitted == 6 {
			continue
		}
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			running = append(running, r)
			admitted++
		case <-time.After(5 * time.Second):
			t.Fatalf("no admission after a release; queued %d", l.Queued())
		}
		if got := l.Inflight(); got > 2 {
			t.Fatalf("in flight %d, above the local share 2", got)
		}
	}
	if l.Inflight() != 0 || l.Queued() != 0 || l.Coordinating() != 0 {
		t.Fatalf("end: inflight %d queued %d coordinating %d", l.Inflight(), l.Queued(), l.Coordinating())
	}
}

// TestFleetLimiterTicketIsCorrectedArrival: the ticket handed to the
// coordinator is the arrival in corrected wall time (Config.Clock), not
// the host clock and not the time the invoke left the local queue.
func TestFleetLimiterTicketIsCorrectedArrival(t *testing.T) {
	coord := newFakeCoord(ModeShared, 1, true)
	skew := 3 * time.Hour
	corrected := func() time.Time { return time.Now().Add(skew) }
	l := New(Config{MaxInflight: 1, Coordinator: coord, Clock: corrected, QueueTimeout: 5 * time.Second})
	first := admit(t, l, "f")
	arrived := corrected()
	done := make(chan func(int, http.Header), 1)
	go func() { done <- admit(t, l, "f") }()
	eventually(t, "queued", func() bool { return l.Queued() == 1 })
	time.Sleep(300 * time.Millisecond)
	ok200(first)
	ok200(<-done)
	coord.mu.Lock()
	ticket := coord.tickets[len(coord.tickets)-1]
	coord.mu.Unlock()
	if d := ticket.Sub(arrived); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("ticket %v is %v from the corrected arrival, want about 0 (it waited 300ms)", ticket, d)
	}
}

// TestFleetLimiterQueueTimeoutCoversCoordination: the queue timeout bounds
// the local wait and the coordinator's together; the refusal frees the
// slot, and a shared lease's release feeds the coordinator, not the local
// adaptive limit.
func TestFleetLimiterQueueTimeoutCoversCoordination(t *testing.T) {
	coord := newFakeCoord(ModeShared, 1, false)
	coord.statuses = make(chan int, 4)
	l := New(Config{MaxInflight: 2, Coordinator: coord, QueueTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, waited, err := l.Admit(context.Background(), invokeReq("f"))
	var th *Throttle
	if !errors.As(err, &th) || th.Reason != ReasonQueueTimeout {
		t.Fatalf("Admit = %v, want a queue timeout", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > time.Second || waited < 200*time.Millisecond {
		t.Errorf("refused after %v (waited %v), want about the 200ms queue timeout", took, waited)
	}
	if l.Inflight() != 0 || l.Coordinating() != 0 {
		t.Fatalf("after the refusal: inflight %d coordinating %d", l.Inflight(), l.Coordinating())
	}

	go func() {
		eventually(t, "blocked", func() bool { return coord.blocked() == 1 })
		coord.grant()
	}()
	rel := admit(t, l, "f")
	rel(http.StatusTooManyRequests, http.Header{"X-Amzn-Errortype": {"TooManyRequestsException"}})
	if got := <-coord.statuses; got != http.StatusTooManyRequests {
		t.Errorf("coordinator saw status %d", got)
	}
	if st := l.Status(); st.Functions["f"].EffectiveLimit != 0 {
		t.Errorf("a shared lease's 429 lowered the local limit: %+v", st.Functions["f"])
	}
}

// TestFleetLimiterSpanAttributes: with a coordinator the request's span
// says how the wait split between the local queue and the coordinator,
// and in which mode.
func TestFleetLimiterSpanAttributes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	coord := newFakeCoord(ModeShared, 1, false)
	l := New(Config{MaxInflight: 1, Coordinator: coord, QueueTimeout: 5 * time.Second})
	go func() {
		eventually(t, "blocked", func() bool { return coord.blocked() == 1 })
		time.Sleep(100 * time.Millisecond)
		coord.grant()
	}()
	ctx, span := tp.Tracer("test").Start(context.Background(), "invoke")
	rel, waited, err := l.Admit(ctx, invokeReq("f"))
	if err != nil {
		t.Fatal(err)
	}
	ok200(rel)
	span.End()
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range rec.Ended()[0].Attributes() {
		attrs[kv.Key] = kv.Value
	}
	coordMS, localMS := attrs[AttrCoordinationWaitMS].AsFloat64(), attrs[AttrLocalWaitMS].AsFloat64()
	if coordMS < 90 || localMS > 20 || attrs[AttrCoordinatorMode].AsString() != "shared" {
		t.Errorf("span attributes %v, want ~100ms of coordination, ~0 local, mode shared", attrs)
	}
	if d := float64(waited.Milliseconds()) - (coordMS + localMS); d < -2 || d > 2 {
		t.Errorf("waited %v, but the span's parts add up to %.1fms", waited, coordMS+localMS)
	}
}
