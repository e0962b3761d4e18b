package fleet

import (
	"time"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

// Status is a snapshot of the coordinator for the proxy's /status
// ("lambda": {"coordinator": ...}).
type Status struct {
	// Mode is "shared", "local" (fallback) or "closed" (fallback).
	Mode string `json:"mode"`
	// Fallback is the mode Redis failing leads to: "local" or "closed".
	Fallback string `json:"fallback"`
	// Redis is the coordinator URL without credentials or options.
	Redis     string `json:"redis"`
	Namespace string `json:"namespace"`
	// Instance is this proxy's id in Redis (lease ids start with it).
	Instance string `json:"instance"`
	// FleetSize divides the limits in the local fallback; ProxiesSeen is
	// the live proxies at the last heartbeat.
	FleetSize   int `json:"fleet_size"`
	ProxiesSeen int `json:"proxies_seen"`
	// Since is when the mode last changed (corrected time, RFC 3339).
	Since string `json:"since"`
	// LastError is the Redis failure that caused the last fallback.
	LastError string `json:"last_error,omitempty"`
	// Fallbacks counts the changes from shared to a fallback mode.
	Fallbacks int64 `json:"fallbacks"`
	// Leases counts the slots this proxy holds; Waiting the invokes of
	// this proxy waiting for a fleet-wide slot.
	Leases  int `json:"leases"`
	Waiting int `json:"waiting"`
	// RoundTripMS is the last successful Redis round trip.
	RoundTripMS float64 `json:"round_trip_ms"`
	// LeaseTTLSeconds is how long a slot outlives a proxy that stopped.
	LeaseTTLSeconds float64 `json:"lease_ttl_seconds"`
	// Functions are the semaphores this proxy asked Redis about in the
	// last minute, as Redis last answered: slots held across the fleet and
	// the effective limit (0 = none; below the configured limit after
	// Lambda throttled).
	Functions map[string]SemaphoreStatus `json:"functions,omitempty"`
	// Global is the all-functions semaphore, if there is one.
	Global *SemaphoreStatus `json:"global,omitempty"`
}

// statusMemory is how long Status remembers a semaphore after the last
// answer about it.
const statusMemory = time.Minute

// SemaphoreStatus is one semaphore's part of Status.
type SemaphoreStatus struct {
	Held           int64 `json:"held"`
	EffectiveLimit int64 `json:"effective_limit"`
	Waiting        int   `json:"waiting"`
}

// Status returns a snapshot of the coordinator.
func (c *Coordinator) Status() Status {
	fallback := c.fallbackMode().String()
	st := Status{
		Mode:            c.Mode().String(),
		Fallback:        fallback,
		Redis:           c.display,
		Namespace:       c.cfg.ns,
		Instance:        c.instance,
		FleetSize:       c.FleetSize(),
		ProxiesSeen:     int(c.seen.Load()),
		Fallbacks:       c.fallbacks.Load(),
		RoundTripMS:     float64(c.lastRTT.Load()) / float64(time.Millisecond),
		LeaseTTLSeconds: c.cfg.LeaseTTL.Seconds(),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Since = c.since.UTC().Format(time.RFC3339Nano)
	if c.Mode() != lambdalimit.ModeShared {
		st.LastError = c.lastErr
	}
	st.Leases = len(c.leases)
	now := c.cfg.Clock()
	for name, last := range c.last {
		if now.Sub(last.at) > statusMemory {
			delete(c.last, name)
		}
	}
	for name, last := range c.last {
		ss := SemaphoreStatus{Held: last.held, EffectiveLimit: last.eff}
		if s := c.sems[name]; s != nil {
			ss.Waiting = len(s.waiting)
		}
		if name == globalSem {
			if c.gsem != nil {
				ss.Waiting = len(c.gsem.waiting)
			}
			st.Global = &ss
			continue
		}
		if st.Functions == nil {
			st.Functions = map[string]SemaphoreStatus{}
		}
		st.Functions[name] = ss
	}
	for _, s := range c.sems {
		st.Waiting += len(s.waiting)
	}
	if c.gsem != nil {
		st.Waiting += len(c.gsem.waiting)
	}
	return st
}

// Detail is a one-line account of the mode for /readyz: "shared", or the
// fallback with its cause.
func (c *Coordinator) Detail() string {
	m := c.Mode()
	if m == lambdalimit.ModeShared {
		return "shared: Lambda limits are fleet-wide (" + c.display + ")"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.String() + " fallback since " + c.since.UTC().Format(time.RFC3339) + ": " + c.lastErr
}
