package timesource

import "time"

// passiveSource names observations that carry no Source.
const passiveSource = "passive"

// maxPassive caps the passive sources remembered (one per AWS host name,
// and virtual-host S3 buckets make those unbounded).
const maxPassive = 32

// Observe feeds a passive observation into the estimate. Its Sent and
// Received must be readings of this clock's Now; they are mapped back to
// the monotonic clock through the anchor in force when each was taken, and
// the observation is dropped when that is ambiguous (the clock was
// corrected backwards during the exchange) or impossible.
//
// An observation is dropped too when its ServerTime is before
// Config.NotBefore or absurdly far in the future (see Config.NotBefore), or
// when its round trip, measured on the monotonic clock, exceeds
// Config.MaxObservationRTT.
//
// The estimate: true time at the exchange's midpoint is ServerTime +
// Precision/2, within RTT/2 + Precision/2 + Uncertainty. An unsynced clock
// adopts the first observation at once (keeping its host-based reading when
// that lies within the observation's interval). A synced clock adopts one
// that disagrees with it by more than both uncertainties combined (the server time in a skew
// error proves the clock wrong) and drops the NTP samples that disagree
// with it too; otherwise the observation competes with the other sources on
// uncertainty.
func (c *Corrected) Observe(o Observation) {
	// Received may read earlier than Sent when the clock was corrected
	// backwards in between: order is checked on the monotonic clock below.
	if o.ServerTime.IsZero() || o.Sent.IsZero() || o.Received.IsZero() {
		c.log.Debug("observation ignored: incomplete", "source", o.Source)
		return
	}
	if o.Source == "" {
		o.Source = passiveSource
	}
	if err := checkPlausible(o.ServerTime, c.cfg.NotBefore); err != nil {
		c.log.Warn("observation ignored: implausible server time", "source", o.Source,
			"server_time", o.ServerTime, "not_before", c.cfg.NotBefore,
			"latest", latestPlausible(c.cfg.NotBefore), "error", err)
		return
	}
	prec := max(o.Precision, 0)

	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.wall.Mono()
	mS, okS := c.monoOfLocked(o.Sent, now)
	mR, okR := c.monoOfLocked(o.Received, now)
	if !okS || !okR || mR < mS {
		c.log.Debug("observation ignored: clock re-anchored during the exchange", "source", o.Source)
		return
	}
	mid := mS + (mR-mS)/2
	rtt := mR - mS
	if rtt > c.cfg.MaxObservationRTT {
		c.log.Debug("observation ignored: round trip too slow", "source", o.Source,
			"rtt", rtt, "max", c.cfg.MaxObservationRTT)
		return
	}
	s := &sample{
		source:    o.Source,
		off:       o.ServerTime.Add(prec/2).Sub(c.epoch) - mid,
		mono:      mid,
		base:      rtt/2 + prec/2 + max(o.Uncertainty, 0),
		rtt:       rtt,
		passive:   true,
		precision: prec,
	}
	cur := c.cur.Load()
	c.evictPassiveLocked(s.source, now)
	if !cur.synced {
		// The host-based estimate already lies inside the observation's
		// interval: every point there is equally likely, so keep it (no
		// step of up to a second from a coarse Date header) and adopt the
		// observation's uncertainty.
		if absDur(s.off-cur.off) <= s.base {
			s.off = cur.off
		}
		c.passive[s.source] = s
		c.installLocked(s, now, "")
		return
	}
	curU := cur.extra
	if cur.s != nil {
		curU += cur.s.uncertaintyAt(mid, c.cfg.DriftPPM)
	}
	if absDur(s.off-cur.off) > curU+s.base {
		c.dropDisagreeingLocked(s, now)
		c.passive[s.source] = s
		c.installLocked(s, now, "observation disagrees with the estimate beyond both uncertainties")
		return
	}
	if old := c.passive[s.source]; old == nil ||
		s.uncertaintyAt(now, c.cfg.DriftPPM) <= old.uncertaintyAt(now, c.cfg.DriftPPM) {
		c.passive[s.source] = s
		c.selectLocked()
	}
}

// evictPassiveLocked makes room for one more passive source by forgetting
// the one with the highest current uncertainty (never the estimate in
// force). c.mu must be held.
func (c *Corrected) evictPassiveLocked(keep string, now time.Duration) {
	if _, ok := c.passive[keep]; ok || len(c.passive) < maxPassive {
		return
	}
	cur := c.cur.Load()
	var worst string
	var worstU time.Duration
	for name, o := range c.passive {
		if o == cur.s {
			continue
		}
		if u := o.uncertaintyAt(now, c.cfg.DriftPPM); worst == "" || u > worstU {
			worst, worstU = name, u
		}
	}
	delete(c.passive, worst)
}

// dropDisagreeingLocked forgets every sample, NTP or passive, that
// disagrees with s beyond their combined uncertainty, so that the next
// selection does not return to a disproved estimate. c.mu must be held.
func (c *Corrected) dropDisagreeingLocked(s *sample, now time.Duration) {
	disagrees := func(o *sample) bool {
		return absDur(o.off-s.off) > o.uncertaintyAt(now, c.cfg.DriftPPM)+s.base
	}
	for _, ns := range c.sources {
		kept := ns.filter[:0]
		for _, o := range ns.filter {
			if !disagrees(o) {
				kept = append(kept, o)
			}
		}
		clear(ns.filter[len(kept):])
		ns.filter = kept
	}
	for name, o := range c.passive {
		if disagrees(o) {
			delete(c.passive, name)
		}
	}
}

// absDur returns |d|.
func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
