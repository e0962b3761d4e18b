package lambdalimit

import "time"

// Status is a snapshot of the limiter for the proxy's /status ("lambda").
type Status struct {
	// Inflight and Queued count held invokes across all functions.
	Inflight int `json:"inflight"`
	Queued   int `json:"queued"`
	// Coordinating counts invokes past the local queue that wait for a
	// fleet-wide slot (only with a Coordinator).
	Coordinating int `json:"coordinating,omitempty"`
	// Mode is the Coordinator's mode ("shared", "local", "closed"); empty
	// without one.
	Mode string `json:"mode,omitempty"`
	// MaxInflight is the total limit; 0 means none.
	MaxInflight int `json:"max_inflight"`
	// Functions lists the functions with traffic, a configured limit or an
	// adapted limit, by queue key (the bare function name).
	Functions map[string]FunctionStatus `json:"functions"`
}

// FunctionStatus is one function's part of Status.
type FunctionStatus struct {
	Inflight     int `json:"inflight"`
	Queued       int `json:"queued"`
	Coordinating int `json:"coordinating,omitempty"`
	// Limit is the configured limit; 0 means none.
	Limit int `json:"limit"`
	// EffectiveLimit is the limit this proxy's queue applies now: after
	// adapting to Lambda's throttles, or in a coordinator's local fallback
	// its share of the limit; 0 means unlimited. While a coordinator
	// shares the limits it is the configured one (the fleet's adaptive
	// limit is in the coordinator's status).
	EffectiveLimit int `json:"effective_limit"`
	// PausedUntil is set while an upstream Retry-After holds admissions.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// OldestWaitMS is the queue age of the function's oldest waiter.
	OldestWaitMS int64 `json:"oldest_wait_ms,omitempty"`
}

// Status returns a snapshot of the limiter.
func (l *Limiter) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	sc := l.scaleNow()
	st := Status{
		Inflight:     l.inflight - l.coordinating,
		Queued:       l.queued,
		Coordinating: l.coordinating,
		MaxInflight:  l.maxInflight,
		Functions:    make(map[string]FunctionStatus, len(l.fns)+len(l.fnLimits)),
	}
	if l.coord != nil {
		st.Mode = l.coord.Mode().String()
	}
	for key, n := range l.fnLimits {
		st.Functions[key] = FunctionStatus{Limit: n, EffectiveLimit: sc.of(n)}
	}
	for key, fn := range l.fns {
		fs := FunctionStatus{
			Inflight:       fn.inflight - fn.coordinating,
			Queued:         fn.queue.Len(),
			Coordinating:   fn.coordinating,
			Limit:          fn.limit,
			EffectiveLimit: fn.currentLimit(sc),
		}
		if now.Before(fn.pausedUntil) {
			// Reported in corrected wall time; the pause itself runs on
			// the limiter's own timeline.
			t := l.clock().Add(fn.pausedUntil.Sub(now))
			fs.PausedUntil = &t
		}
		if front := fn.queue.Front(); front != nil {
			fs.OldestWaitMS = now.Sub(front.Value.(*waiter).enq).Milliseconds()
		}
		st.Functions[key] = fs
	}
	return st
}
