package lambdalimit

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// adapt feeds one upstream answer of fn into its effective limit.
//
// Decrease: a 429 whose x-amzn-ErrorType is TooManyRequestsException (the
// header is enough: ConcurrentInvocationLimitExceeded,
// ReservedFunctionConcurrentInvocationLimitExceeded and the rate reasons
// all carry it) halves the effective limit, floor 1. The base is the
// function's in-flight count when the answer came (including the throttled
// request), capped by the limit in force, so a function without a
// configured limit drops from "unlimited" to half of what Lambda refused.
// Only the first throttle of a window decreases: a request admitted before
// the last decrease does not decrease again (as TCP halves once per round
// trip), so a burst of 20 simultaneous 429s halves once, not 20 times.
// A Retry-After on the answer (seconds or an HTTP date, capped at the queue
// timeout) pauses admissions of the function until then.
//
// Increase: while the function runs below its normal limit, every
// effective-limit's worth of 2xx answers raises it by one (+1 per window,
// additive). It returns to the configured limit once it reaches it, or, for
// a function without a configured limit, to unlimited once it exceeds the
// highest in-flight count seen for the function.
//
// Other statuses (4xx, 5xx, 0 for no answer) change nothing.
//
// With a Coordinator in a fallback mode the configured limit here is the
// proxy's local share of it.
func (l *Limiter) adapt(fn *fnState, epoch uint64, status int, h http.Header, now time.Time) {
	sc := l.scaleNow()
	switch {
	case Throttled(status, h):
		if epoch == fn.epoch {
			base := fn.inflight // still counts the throttled request
			if lim := fn.currentLimit(sc); lim > 0 {
				base = min(base, lim)
			}
			fn.eff = max(base/2, 1)
			fn.limited = true
			fn.successes = 0
			fn.epoch++
			l.log.Debug("lambda function throttled upstream: limit lowered",
				"function", fn.key, "effective_limit", fn.eff)
		}
		if d := parseRetryAfter(h.Get("Retry-After"), l.clock); d > 0 {
			l.pause(fn, now.Add(min(d, l.queueTimeout)), now)
		}
	case status >= 200 && status < 300 && fn.limited:
		fn.successes++
		if fn.successes < fn.eff {
			return
		}
		fn.successes = 0
		fn.eff++
		if lim := sc.of(fn.limit); (lim > 0 && fn.eff >= lim) || (lim == 0 && fn.eff > fn.peak) {
			fn.limited = false
			fn.eff = 0
			l.log.Debug("lambda function limit recovered", "function", fn.key, "limit", fn.limit)
		}
	}
}

// isTooManyRequests reports whether the answer's x-amzn-ErrorType is
// TooManyRequestsException (the value may carry ":url" or "prefix#" parts,
// as the SDKs' SanitizeErrorCode allows).
func isTooManyRequests(h http.Header) bool {
	v := h.Get("X-Amzn-Errortype")
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[:i]
	}
	if i := strings.LastIndexByte(v, '#'); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v) == "TooManyRequestsException"
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date,
// the latter judged by the corrected wall clock. It returns 0 when absent,
// malformed or in the past.
func parseRetryAfter(v string, wall func() time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > 24*3600 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(wall()); d > 0 {
			return d
		}
	}
	return 0
}

// pause stops admissions of fn until until (never shortening an existing
// pause) and arms one timer per function that hands out slots when it ends.
func (l *Limiter) pause(fn *fnState, until, now time.Time) {
	if !until.After(fn.pausedUntil) {
		return
	}
	fn.pausedUntil = until
	l.log.Debug("lambda function paused by Retry-After", "function", fn.key, "for", until.Sub(now))
	l.armPause(fn, until.Sub(now))
}

func (l *Limiter) armPause(fn *fnState, d time.Duration) {
	if fn.pauseTimer != nil {
		fn.pauseTimer.Stop()
	}
	fn.pauseTimer = time.AfterFunc(d, func() { l.pauseEnded(fn) })
}

// pauseEnded runs on the pause timer's goroutine.
func (l *Limiter) pauseEnded(fn *fnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns[fn.key] != fn {
		return // forgotten meanwhile
	}
	now := l.now()
	if d := fn.pausedUntil.Sub(now); d > 0 {
		// Config.Now runs behind the timer's clock; look again later.
		l.armPause(fn, min(d, time.Second))
		return
	}
	fn.pauseTimer = nil
	l.dispatch(now)
	l.prune(fn, now)
}

// Throttled reports whether an upstream answer is Lambda's own throttle
// (429 with x-amzn-ErrorType TooManyRequestsException): the answers that
// halve an adaptive limit. A Coordinator uses it for the shared limit.
func Throttled(status int, h http.Header) bool {
	return status == http.StatusTooManyRequests && isTooManyRequests(h)
}

// RetryAfter reads an answer's Retry-After (delay-seconds or an HTTP date
// judged by wall, the corrected clock); 0 when absent, malformed or past.
func RetryAfter(h http.Header, wall func() time.Time) time.Duration {
	return parseRetryAfter(h.Get("Retry-After"), wall)
}
