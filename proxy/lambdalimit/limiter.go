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

	inflightN atomic.Int64 // mirrors inflight for lock-free reads
	queuedN   atomic.Int64 // mirrors queued

	mu       sync.Mutex
	inflight int
	queued   int
	fns      map[string]*fnState
	// active holds the functions with waiters in round-robin order; the
	// next free slot goes to the first admissible one from cursor on.
	active []*fnState
	cursor int
}

// fnState is one function's queue and adaptive limit. Guarded by Limiter.mu.
type fnState struct {
	key      string
	limit    int // configured limit, 0 = none
	inflight int
	peak     int // highest inflight seen since the state was made
	queue    list.List
	active   bool // in Limiter.active

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
func (l *Limiter) AdmitInvoke(ctx context.Context, inv Invoke) (release func(status int, h http.Header), waited time.Duration, err error) {
	key := inv.Function
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("lambdalimit: invoke of %q: %w", key, context.Cause(ctx))
	}
	l.mu.Lock()
	fn := l.state(key)
	now := l.now()
	if fn.queue.Len() == 0 && l.globalFree() && fn.admissible(now) {
		epoch := l.take(fn)
		l.mu.Unlock()
		return l.releaser(fn, epoch), 0, nil
	}
	if l.maxQueue > 0 && l.queued >= l.maxQueue {
		t := &Throttle{Reason: ReasonQueueFull, Function: key, RetryAfter: fn.retryAfter(now)}
		l.prune(fn, now)
		l.mu.Unlock()
		l.log.Debug("lambda invoke refused: queue full", "function", key, "queued", l.queuedN.Load())
		return nil, 0, t
	}
	w := &waiter{enq: now, ready: make(chan struct{})}
	w.elem = fn.queue.PushBack(w)
	l.queued++
	l.queuedN.Add(1)
	l.activate(fn)
	l.mu.Unlock()

	timer := time.NewTimer(l.queueTimeout)
	defer timer.Stop()
	select {
	case <-w.ready:
		return l.releaser(fn, w.epoch), w.at.Sub(w.enq), nil
	case <-timer.C:
		return l.leave(fn, w, nil)
	case <-ctx.Done():
		return l.leave(fn, w, ctx)
	}
}

// leave takes w out of the queue after a timeout (ctx == nil) or a
// cancellation. If w was admitted in the meantime, a timed-out waiter keeps
// its slot and a cancelled one gives it back unused.
func (l *Limiter) leave(fn *fnState, w *waiter, ctx context.Context) (func(int, http.Header), time.Duration, error) {
	l.mu.Lock()
	now := l.now()
	if w.admitted {
		waited := w.at.Sub(w.enq)
		if ctx == nil {
			l.mu.Unlock()
			return l.releaser(fn, w.epoch), waited, nil
		}
		l.giveBack(fn, now)
		l.mu.Unlock()
		return nil, waited, fmt.Errorf("lambdalimit: invoke of %q abandoned after %s: %w", fn.key, waited, context.Cause(ctx))
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
		return nil, waited, fmt.Errorf("lambdalimit: invoke of %q left the queue after %s: %w", fn.key, waited, context.Cause(ctx))
	}
	l.log.Debug("lambda invoke refused: queue timeout", "function", fn.key, "waited", waited)
	return nil, waited, &Throttle{Reason: ReasonQueueTimeout, Function: fn.key, Waited: waited, RetryAfter: retry}
}

// releaser returns the release function of one admitted invoke.
func (l *Limiter) releaser(fn *fnState, epoch uint64) func(int, http.Header) {
	var done atomic.Bool
	return func(status int, h http.Header) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		now := l.now()
		l.adapt(fn, epoch, status, h, now)
		l.giveBack(fn, now)
	}
}

// giveBack frees fn's slot and hands free slots to waiters.
func (l *Limiter) giveBack(fn *fnState, now time.Time) {
	fn.inflight--
	l.inflight--
	l.inflightN.Add(-1)
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

func (l *Limiter) globalFree() bool {
	return l.maxInflight == 0 || l.inflight < l.maxInflight
}

// currentLimit is fn's effective limit now; 0 means unlimited.
func (fn *fnState) currentLimit() int {
	if fn.limited {
		return fn.eff
	}
	return fn.limit
}

// admissible reports whether fn may start one more invoke (ignoring the
// total limit).
func (fn *fnState) admissible(now time.Time) bool {
	if now.Before(fn.pausedUntil) {
		return false
	}
	lim := fn.currentLimit()
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
func (l *Limiter) take(fn *fnState) uint64 {
	fn.inflight++
	fn.peak = max(fn.peak, fn.inflight)
	l.inflight++
	l.inflightN.Add(1)
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
	for len(l.active) > 0 && l.globalFree() {
		admitted := false
		for i := range len(l.active) {
			idx := (l.cursor + i) % len(l.active)
			fn := l.active[idx]
			if !fn.admissible(now) {
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

// Inflight is the number of held invokes in flight now.
func (l *Limiter) Inflight() int64 { return l.inflightN.Load() }

// Queued is the number of invokes waiting now.
func (l *Limiter) Queued() int64 { return l.queuedN.Load() }
