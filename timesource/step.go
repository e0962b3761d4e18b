package timesource

import (
	"context"
	"time"
)

// watchWall compares the wall clock with the monotonic clock every
// CheckInterval until ctx is done. A divergence beyond StepThreshold is a
// step of the host clock, or a resume from suspend (Linux's monotonic clock
// stops while suspended, so the estimate is then behind by the suspend); a
// monotonic gap far beyond the interval is a stall or a suspend on systems
// whose monotonic clock keeps counting. Either way every source is
// resampled at once.
func (c *Corrected) watchWall(ctx context.Context) {
	t := time.NewTicker(c.cfg.CheckInterval)
	defer t.Stop()
	// Start from the readings taken in New, so that a step between New and
	// Run is caught too.
	lastW, lastM := c.epoch.Add(c.startMono), c.startMono
	gap := max(10*c.cfg.CheckInterval, 5*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w, m := c.wall.Now(), c.wall.Mono()
		dm := m - lastM
		div := w.Sub(lastW) - dm
		lastW, lastM = w, m
		switch {
		case absDur(div) > c.cfg.StepThreshold:
			c.disturb(absDur(div), "host wall clock stepped", "step", div)
		case dm > gap:
			c.disturb(0, "monotonic clock gap (suspend or stall)", "gap", dm)
		}
	}
}

// disturb handles a detected disturbance: it forgets the samples (a
// suspend invalidates them), widens the uncertainty of the estimate in
// force by widen until a fresh sample arrives, re-bases an unsynced clock
// on the stepped host clock, and makes every source resample at once.
func (c *Corrected) disturb(widen time.Duration, what string, attrs ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.wall.Mono()
	cur := c.cur.Load()
	next := &anchor{gen: cur.gen + 1, off: cur.off, from: m, synced: cur.synced, s: cur.s, extra: cur.extra + widen}
	if !cur.synced {
		// Before any source answered the clock follows the host clock.
		next.off = c.wall.Now().Add(c.cfg.HostOffset).Sub(c.epoch) - m
		next.extra = 0
	}
	c.pushLocked(next)
	for _, ns := range c.sources {
		clear(ns.filter)
		ns.filter = ns.filter[:0]
	}
	clear(c.passive)
	close(c.kick)
	c.kick = make(chan struct{})
	c.resamp.Add(1)
	c.log.Warn(what+": resampling time sources", append(attrs, "synced", cur.synced)...)
}
