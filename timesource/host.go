package timesource

import (
	"sync"
	"time"
)

// HostClock is a Clock that reads only the host clock, shifted by a fixed
// offset (the --clock-offset simulation). It never syncs: it is the fallback
// used before any time source exists and in tests.
type HostClock struct {
	offset time.Duration

	mu   sync.Mutex
	last Observation
}

var _ Clock = (*HostClock)(nil)

// NewHostClock returns a host clock shifted by offset.
func NewHostClock(offset time.Duration) *HostClock {
	return &HostClock{offset: offset}
}

// Now returns the host time plus the configured offset.
func (h *HostClock) Now() time.Time { return time.Now().Add(h.offset) }

// Status reports an unsynced host clock.
func (h *HostClock) Status() Status {
	return Status{Source: "host", CorrectedTime: h.Now(), Reason: "no time source configured"}
}

// Observe records the observation and otherwise ignores it.
func (h *HostClock) Observe(o Observation) {
	h.mu.Lock()
	h.last = o
	h.mu.Unlock()
}
