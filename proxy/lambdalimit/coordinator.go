package lambdalimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Coordinator shares the in-flight limits with other proxies (package
// lambdalimit/fleet keeps them in Redis). With one in Config.Coordinator
// the Limiter still queues every invoke locally, in arrival order, and
// calls Acquire for each invoke it admits; the invoke leaves when Acquire
// returns a lease. The configured limits are then fleet-wide.
type Coordinator interface {
	// Acquire holds a fleet-wide slot for one invoke of fn (a queue key)
	// and returns its lease. ticket is when the invoke reached this proxy,
	// in corrected wall time: the oldest ticket across the fleet goes
	// first. In ModeShared it blocks until a slot is free or ctx ends (its
	// error is then ctx's); in ModeLocal it returns a local lease at once
	// (Shared false), as it does when the coordinator stops answering
	// while the invoke waits; in ModeClosed it fails with an error that
	// wraps ErrCoordinatorUnavailable. It never blocks beyond ctx.
	Acquire(ctx context.Context, fn string, ticket time.Time) (Lease, error)
	// Mode reports how the limits are kept now. It must be cheap: the
	// Limiter asks on every admission decision.
	Mode() Mode
	// FleetSize is how many proxies are expected to share the limits: in
	// ModeLocal each keeps ceil(limit / FleetSize) of every limit.
	FleetSize() int
}

// Lease is one slot held through a Coordinator.
type Lease interface {
	// Shared reports whether the slot counts in the fleet-wide limits
	// (false: granted locally during a fallback).
	Shared() bool
	// Release ends the lease once the invoke is over, with the upstream
	// status (0 if no answer) and headers, which feed the shared limit's
	// reaction to throttles. It must not block on the coordinator.
	Release(status int, h http.Header)
}

// Mode is how a Coordinator keeps the limits now.
type Mode int32

// The modes of a Coordinator.
const (
	// ModeShared: the limits are fleet-wide, kept by the coordinator.
	ModeShared Mode = iota
	// ModeLocal: the coordinator cannot be reached; each proxy keeps
	// ceil(limit / FleetSize) locally until it answers again.
	ModeLocal
	// ModeClosed: the coordinator cannot be reached and held invokes are
	// refused (429) until it answers again.
	ModeClosed
)

// String is the mode's name in /status, logs and metrics.
func (m Mode) String() string {
	switch m {
	case ModeShared:
		return "shared"
	case ModeLocal:
		return "local"
	case ModeClosed:
		return "closed"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// ErrCoordinatorUnavailable is wrapped by a Coordinator's Acquire error
// when it cannot reach its store and its fallback is closed.
var ErrCoordinatorUnavailable = errors.New("lambdalimit: coordinator unavailable")

// Span attributes set on the request's span (the one in Admit's ctx) when
// a Coordinator is configured.
const (
	// AttrLocalWaitMS is the time spent in the local queue.
	AttrLocalWaitMS = attribute.Key("skewproxy.queue.local_ms")
	// AttrCoordinationWaitMS is the time spent waiting for a fleet-wide
	// slot after the local queue.
	AttrCoordinationWaitMS = attribute.Key("skewproxy.queue.coordination_ms")
	// AttrCoordinatorMode is the coordinator's Mode when the wait ended.
	AttrCoordinatorMode = attribute.Key("skewproxy.coordinator.mode")
)

// errQueueTimeout is the cause of the context a coordination wait runs
// under when the queue timeout ends it.
var errQueueTimeout = errors.New("lambdalimit: queue timeout")

// scale is how the configured limits apply now.
type scale struct {
	shared bool // a coordinator keeps them fleet-wide
	div    int  // local fallback: each proxy keeps ceil(limit/div)
}

// scaleNow reads the coordinator's mode.
func (l *Limiter) scaleNow() scale {
	if l.coord == nil {
		return scale{div: 1}
	}
	if l.coord.Mode() == ModeShared {
		return scale{shared: true, div: 1}
	}
	return scale{div: max(l.coord.FleetSize(), 1)}
}

// of is limit as it applies now; 0 stays "no limit".
func (s scale) of(limit int) int {
	if limit <= 0 || s.div <= 1 {
		return limit
	}
	return (limit + s.div - 1) / s.div
}

// coordinate takes a fleet-wide slot for s, which holds a local slot that
// counts as coordinating. It returns the lease and ok; ok false with a nil
// error means the slot was given back because it does not fit the local
// fallback limits, and the invoke must queue again.
func (l *Limiter) coordinate(ctx context.Context, s slot) (Lease, bool, error) {
	remaining := l.queueTimeout - l.now().Sub(s.enq)
	cctx, cancel := context.WithTimeoutCause(ctx, max(remaining, 0), errQueueTimeout)
	defer cancel()
	// The ticket is the arrival in corrected wall time: proxies compare
	// tickets, so no host clock may date them.
	ticket := l.clock().Add(-l.now().Sub(s.enq))
	lease, err := l.coord.Acquire(cctx, s.fn.key, ticket)

	l.mu.Lock()
	now := l.now()
	l.endCoordination(s.fn)
	if err != nil {
		l.giveBack(s.fn, now, false)
		retry := s.fn.retryAfter(now)
		l.mu.Unlock()
		waited := now.Sub(s.enq)
		switch {
		case ctx.Err() != nil:
			return nil, false, fmt.Errorf("lambdalimit: invoke of %q left the queue after %s: %w", s.fn.key, waited, context.Cause(ctx))
		case errors.Is(context.Cause(cctx), errQueueTimeout):
			l.log.Debug("lambda invoke refused: queue timeout waiting for a fleet slot", "function", s.fn.key, "waited", waited)
			return nil, false, &Throttle{Reason: ReasonQueueTimeout, Function: s.fn.key, Waited: waited, RetryAfter: retry}
		}
		l.log.Debug("lambda invoke refused: coordinator unavailable", "function", s.fn.key, "err", err)
		return nil, false, &Throttle{Reason: ReasonCoordinatorUnavailable, Function: s.fn.key, Waited: waited, RetryAfter: time.Second}
	}
	if !lease.Shared() && !l.fitsLocal(s.fn) {
		// The coordinator fell back while this invoke waited for it: the
		// local share of the limits is smaller than what was admitted.
		l.giveBack(s.fn, now, false)
		l.mu.Unlock()
		lease.Release(0, nil)
		return nil, false, nil
	}
	l.inflightN.Add(1)
	l.mu.Unlock()
	return lease, true, nil
}

// endCoordination stops counting one of fn's slots as coordinating.
func (l *Limiter) endCoordination(fn *fnState) {
	fn.coordinating--
	l.coordinating--
	l.coordinatingN.Add(-1)
}

// fitsLocal reports whether fn's running invokes (one just settled
// included) fit the limits as they apply now.
func (l *Limiter) fitsLocal(fn *fnState) bool {
	sc := l.scaleNow()
	lim := fn.currentLimit(sc)
	if lim > 0 && fn.inflight-fn.coordinating > lim {
		return false
	}
	maxNow := sc.of(l.maxInflight)
	return maxNow == 0 || l.inflight-l.coordinating <= maxNow
}

// annotate puts the wait split on the request's span.
func (l *Limiter) annotate(ctx context.Context, local, coordination time.Duration) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(
		AttrLocalWaitMS.Float64(float64(local)/float64(time.Millisecond)),
		AttrCoordinationWaitMS.Float64(float64(coordination)/float64(time.Millisecond)),
		AttrCoordinatorMode.String(l.coord.Mode().String()),
	)
}
