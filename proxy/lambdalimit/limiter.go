package lambdalimit

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter admits Lambda invokes: FIFO within a function, round-robin across
// functions, under a total and a per-function in-flight limit that adapts
// to Lambda's throttles. It is safe for concurrent use. Make one with New.
//
// A waiting request costs no goroutine of its own beyond the caller's (the
// one blocked in Admit) and one timer that Admit stops before it returns.
type Limiter struct {
	maxInflight  int
	fnLimits     map[string]int // queue key -> configured limit (> 0)
	limitEvents  bool
	queueTimeout time.Duration
	maxQueue     int
	now          func() time.Time
	clock        func() time.Time // corrected wall clock, for HTTP dates
	log          *slog.Logger

	coord Coordinator // nil: the limits are this proxy's own

	inflightN     atomic.Int64 // running invokes (inflight - coordinating), lock-free
	queuedN       atomic.Int64 // mirrors queued
	coordinatingN atomic.Int64 // mirrors coordinating

	mu       sync.Mutex
	inflight int // local slots taken: running and coordinating
	// coordinating counts the slots whose invoke waits for a fleet-wide
	// slot from the Coordinator (always 0 without one).
	coordinating int
	queued       int
	fns          map[string]*fnState
	// active holds the functions with waiters in round-robin order; the
	// next free slot goes to the first admissible one from cursor on.
	active []*fnState
	cursor int
}

// fnState is one function's queue and adaptive limit. Guarded by Limiter.mu.
type fnState struct {
	key          string
	limit        int // configured limit, 0 = none
	inflight     int // local slots taken, coordinating included
	coordinating int
	peak         int // highest inflight seen since the state was made
	queue        list.List
	active       bool // in Limiter.active

	// Adaptive state: when limited, eff is the effective limit (<= limit
	// when limit > 0); when not limited the configured limit applies.
	limited   bool
	eff       int
	successes int    // successes since eff last changed
	epoch     uint64 // bumped on each decrease; one decrease per window

	pausedUntil time.Time // Retry-After: no admissions before this
	pauseTimer  *time.Timer
}

// waiter is one queued invoke. admitted and at are guarded by Limiter.mu;
// ready is closed once the waiter is admitted.
type waiter struct {
	elem     *list.Element
	enq      time.Time
	ready    chan struct{}
	admitted bool
	at       time.Time
	epoch    uint64
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	return &Limiter{
		maxInflight:  max(cfg.MaxInflight, 0),
		fnLimits:     cfg.functionLimits(),
		limitEvents:  cfg.LimitEvents,
		queueTimeout: cfg.queueTimeout(),
		maxQueue:     max(cfg.MaxQueue, 0),
		now:          cfg.now(),
		clock:        cfg.clock(),
		log:          cfg.logger(),
		coord:        cfg.Coordinator,
		fns:          make(map[string]*fnState),
	}
}

func noRelease(int, http.Header) {}

// Admit holds req until it may be sent upstream. Requests that are not
// Lambda invokes, DryRun invokes, and Event invokes (unless
// Config.LimitEvents) are admitted at once with a no-op release.
//
// On success the caller must call release exactly once when the upstream
// exchange is over, with the upstream status (0 if there was no answer)
// and the answer's headers; a 429 TooManyRequestsException lowers the
// function's effective limit and a 2xx raises it. Later calls are ignored.
// waited is the time spent in the queue.
//
// Admit fails with a *Throttle when the queue is full or the request waited
// longer than the queue timeout, and with ctx's error when ctx ends first;
// a request that fails is never admitted and holds no slot.
func (l *Limiter) Admit(ctx context.Context, req *http.Request) (release func(status int, h http.Header), waited time.Duration, err error) {
	inv, ok := Recognize(req)
	if !ok || !l.holds(inv.Type) {
		return noRelease, 0, nil
	}
	return l.AdmitInvoke(ctx, inv)
}

// AdmitInvoke is Admit for an invoke already recognised by Recognize. It
// holds inv whatever its Type.
//
// With a Coordinator the invoke first waits here, in the local queue, and
// then for a fleet-wide slot; waited covers both, and the split goes on the
// span in ctx (AttrLocalWaitMS, AttrCoordinationWaitMS). The queue timeout
// bounds the two together.
func (l *Limiter) AdmitInvoke(ctx context.Context, inv Invoke) (release func(status int, h http.Header), waited time.Duration, err error) {
	key := inv.Function
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("lambdalimit: invoke of %q: %w", key, context.Cause(ctx))
	}
	s, waited, err := l.queue(ctx, key, time.Time{})
	if err != nil || l.coord == nil {
		if err != nil {
			return nil, waited, err
		}
		return l.releaser(s, nil), waited, nil
	}
	var coordination time.Duration
	for {
		start := l.now()
		lease, ok, err := l.coordinate(ctx, s)
		coordination += l.now().Sub(start)
		if ok || err != nil {
			total := l.now().Sub(s.enq)
			l.annotate(ctx, total-coordination, coordination)
			if err != nil {
				return nil, total, err
			}
			return l.releaser(s, lease), total, nil
		}
		// Back in the queue, at its arrival's place.
		if s, waited, err = l.queue(ctx, key, s.enq); err != nil {
			l.annotate(ctx, waited-coordination, coordination)
			return nil, waited, err
		}
	}
}

// slot is one local admission: a slot of fn taken at at by an invoke that
// arrived at enq (both on the Limiter's own timeline).
type slot struct {
	fn      *fnState
	epoch   uint64
	enq, at time.Time
}

// queue waits in fn's queue until a local slot is free and takes it. enq
// is zero for a new arrival; a requeued invoke passes its arrival, keeps
// its place by age, is never refused as queue-full, and has what is left
// of the queue timeout.
func (l *Limiter) queue(ctx context.Context, key string, enq time.Time) (slot, time.Duration, error) {
	requeue := !enq.IsZero()
	l.mu.Lock()
	fn := l.state(key)
	now := l.now()
	if !requeue {
		enq = now
	}
	sc := l.scaleNow()
	if fn.queue.Len() == 0 && l.globalFree(sc) && fn.admissible(now, sc) {
		epoch := l.take(fn)
		l.mu.Unlock()
		return slot{fn: fn, epoch: epoch, enq: enq, at: now}, now.Sub(enq), nil
	}
	if !requeue && l.maxQueue > 0 && l.queued >= l.maxQueue {
		t := &Throttle{Reason: ReasonQueueFull, Function: key, RetryAfter: fn.retryAfter(now)}
		l.prune(fn, now)
		l.mu.Unlock()
		l.log.Debug("lambda invoke refused: queue full", "function", key, "queued", l.queuedN.Load())
		return slot{}, 0, t
	}
	w := &waiter{enq: enq, ready: make(chan struct{})}
	if requeue {
		w.elem = fn.insertByAge(w)
	} else {
		w.elem = fn.queue.PushBack(w)
	}
	l.queued++
	l.queuedN.Add(1)
	l.activate(fn)
	l.mu.Unlock()

	timer := time.NewTimer(max(l.queueTimeout-now.Sub(enq), 0))
	defer timer.Stop()
	select {
	case <-w.ready:
		return slot{fn: fn, epoch: w.epoch, enq: enq, at: w.at}, w.at.Sub(enq), nil
	case <-timer.C:
		return l.leave(fn, w, nil)
	case <-ctx.Done():
		return l.leave(fn, w, ctx)
	}
}

// insertByAge puts w into fn's queue behind every waiter that arrived
// before it.
func (fn *fnState) insertByAge(w *waiter) *list.Element {
	for e := fn.queue.Back(); e != nil; e = e.Prev() {
		if !e.Value.(*waiter).enq.After(w.enq) {
			return fn.queue.InsertAfter(w, e)
		}
	}
	return fn.queue.PushFront(w)
}

// leave takes w out of the queue after a timeout (ctx == nil) or a
// cancellation. If w was admitted in the meantime, a timed-out waiter keeps
// its slot and a cancelled one gives it back unused.
func (l *Limiter) leave(fn *fnState, w *waiter, ctx context.Context) (slot, time.Duration, error) {
	l.mu.Lock()
	now := l.now()
	if w.admitted {
		waited := w.at.Sub(w.enq)
		if ctx == nil {
			l.mu.Unlock()
			return slot{fn: fn, epoch: w.epoch, enq: w.enq, at: w.at}, waited, nil
		}
		if l.coord != nil {
			l.endCoordination(fn)
		}
		l.giveBack(fn, now, l.coord == nil)
		l.mu.Unlock()
		return slot{}, waited, fmt.Errorf("lambdalimit: invoke of %q abandoned after %s: %w", fn.key, waited, context.Cause(ctx))
	}
	fn.queue.Remove(w.elem)
	l.queued--
	l.queuedN.Add(-1)
	if fn.queue.Len() == 0 {
		l.deactivate(fn)
	}
	waited := now.Sub(w.enq)
	retry := fn.retryAfter(now)
	l.prune(fn, now)
	l.mu.Unlock()
	if ctx != nil {
		return slot{}, waited, fmt.Errorf("lambdalimit: invoke of %q left the queue after %s: %w", fn.key, waited, context.Cause(ctx))
	}
	l.log.Debug("lambda invoke refused: queue timeout", "function", fn.key, "waited", waited)
	return slot{}, waited, &Throttle{Reason: ReasonQueueTimeout, Function: fn.key, Waited: waited, RetryAfter: retry}
}

// releaser returns the release function of one admitted invoke; lease is
// its fleet-wide slot (nil without a Coordinator). An invoke that ran on a
// shared lease feeds the shared limit only; the local adaptive limit
// learns from the others.
func (l *Limiter) releaser(s slot, lease Lease) func(int, http.Header) {
	var done atomic.Bool
	return func(status int, h http.Header) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		if lease != nil {
			lease.Release(status, h)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		now := l.now()
		if lease == nil || !lease.Shared() {
			l.adapt(s.fn, s.epoch, status, h, now)
		}
		l.giveBack(s.fn, now, true)
	}
}

// giveBack frees one of fn's slots (running: its invoke was sent; else it
// never settled) and hands free slots to waiters.
func (l *Limiter) giveBack(fn *fnState, now time.Time, running bool) {
	fn.inflight--
	l.inflight--
	if running {
		l.inflightN.Add(-1)
	}
	l.dispatch(now)
	l.prune(fn, now)
}

func (l *Limiter) holds(t InvocationType) bool {
	return t == RequestResponse || (t == Event && l.limitEvents)
}

// state returns fn's state, making it on first use.
func (l *Limiter) state(key string) *fnState {
	fn, ok := l.fns[key]
	if !ok {
		fn = &fnState{key: key, limit: l.fnLimits[key]}
		l.fns[key] = fn
	}
	return fn
}

// prune forgets fn when nothing distinguishes it from a fresh state, so
// that arbitrary function names cannot grow the map without bound.
func (l *Limiter) prune(fn *fnState, now time.Time) {
	if fn.inflight == 0 && fn.queue.Len() == 0 && !fn.limited && !now.Before(fn.pausedUntil) && l.fns[fn.key] == fn {
		if fn.pauseTimer != nil {
			fn.pauseTimer.Stop()
			fn.pauseTimer = nil
		}
		delete(l.fns, fn.key)
	}
}

func (l *Limiter) globalFree(sc scale) bool {
	m := sc.of(l.maxInflight)
	return m == 0 || l.inflight < m
}

// currentLimit is fn's effective limit now; 0 means unlimited. While a
// coordinator shares the limits, the configured one applies here (the
// fleet-wide adaptive limit is the coordinator's); otherwise the local
// share of it, lowered by the local adaptive limit.
func (fn *fnState) currentLimit(sc scale) int {
	if sc.shared {
		return fn.limit
	}
	lim := sc.of(fn.limit)
	if fn.limited && (lim == 0 || fn.eff < lim) {
		return fn.eff
	}
	return lim
}

// admissible reports whether fn may start one more invoke (ignoring the
// total limit). A local Retry-After pause does not hold a shared function:
// the coordinator keeps the fleet's pause.
func (fn *fnState) admissible(now time.Time, sc scale) bool {
	if !sc.shared && now.Before(fn.pausedUntil) {
		return false
	}
	lim := fn.currentLimit(sc)
	return lim == 0 || fn.inflight < lim
}

// retryAfter is the Retry-After advice for a refusal of fn.
func (fn *fnState) retryAfter(now time.Time) time.Duration {
	if d := fn.pausedUntil.Sub(now); d > time.Second {
		return d
	}
	return time.Second
}

// take counts one admission of fn and returns the adaptive epoch it
// belongs to.
// With a Coordinator the slot counts as coordinating until coordinate
// settles it.
func (l *Limiter) take(fn *fnState) uint64 {
	fn.inflight++
	fn.peak = max(fn.peak, fn.inflight)
	l.inflight++
	if l.coord != nil {
		fn.coordinating++
		l.coordinating++
		l.coordinatingN.Add(1)
	} else {
		l.inflightN.Add(1)
	}
	return fn.epoch
}

func (l *Limiter) activate(fn *fnState) {
	if !fn.active {
		fn.active = true
		l.active = append(l.active, fn)
	}
}

func (l *Limiter) deactivate(fn *fnState) {
	if !fn.active {
		return
	}
	for i, f := range l.active {
		if f == fn {
			l.removeActive(i)
			return
		}
	}
}

func (l *Limiter) removeActive(i int) {
	l.active[i].active = false
	l.active = append(l.active[:i], l.active[i+1:]...)
	if i < l.cursor {
		l.cursor--
	}
	if l.cursor >= len(l.active) {
		l.cursor = 0
	}
}

// dispatch admits waiters while slots are free: one waiter per turn, turns
// going round-robin over the functions with waiters, each function's
// waiters in arrival order. Afterwards no waiter is admissible, so a new
// arrival may be admitted at once when its function's queue is empty.
func (l *Limiter) dispatch(now time.Time) {
	sc := l.scaleNow()
	for len(l.active) > 0 && l.globalFree(sc) {
		admitted := false
		for i := range len(l.active) {
			idx := (l.cursor + i) % len(l.active)
			fn := l.active[idx]
			if !fn.admissible(now, sc) {
				continue
			}
			w := fn.queue.Remove(fn.queue.Front()).(*waiter)
			l.queued--
			l.queuedN.Add(-1)
			w.epoch = l.take(fn)
			w.admitted = true
			w.at = now
			close(w.ready)
			if fn.queue.Len() == 0 {
				l.removeActive(idx) // the next function slides into idx
				l.cursor = 0
				if idx < len(l.active) {
					l.cursor = idx
				}
			} else {
				l.cursor = (idx + 1) % len(l.active)
			}
			admitted = true
			break
		}
		if !admitted {
			return
		}
	}
}

// Inflight is the number of held invokes in flight now (sent or about to
// be: admitted, and past the Coordinator if there is one).
func (l *Limiter) Inflight() int64 { return l.inflightN.Load() }

// Coordinating is the number of invokes that left the local queue and wait
// for a fleet-wide slot from the Coordinator.
func (l *Limiter) Coordinating() int64 { return l.coordinatingN.Load() }

// Queued is the number of invokes waiting now.
func (l *Limiter) Queued() int64 { return l.queuedN.Load() }
