package timesource

import (
	"log/slog"
	"slices"
	"time"
)

// filterSize is how many recent samples each NTP source keeps; the one with
// the smallest round-trip delay is that source's estimate (the NTP clock
// filter, RFC 5905 §10).
const filterSize = 8

// historySize is how many past anchors are kept to map Observation readings
// back to the monotonic clock.
const historySize = 32

// sample is one accepted measurement of true time, immutable once made.
type sample struct {
	// source names it: "ntp://HOST[:PORT]" or the Observation's Source.
	source string
	// off: true time = epoch + mono + off.
	off time.Duration
	// mono is the monotonic reading of the measurement.
	mono time.Duration
	// base is the uncertainty at mono: RTT/2 + root distance for NTP,
	// RTT/2 + Precision/2 + Uncertainty for an observation.
	base time.Duration
	// rtt is the round-trip delay of the exchange.
	rtt       time.Duration
	smeared   bool
	passive   bool
	precision time.Duration
}

// uncertaintyAt is the sample's uncertainty at monotonic reading m: its
// base plus the drift allowance, which grows with the sample's age.
func (s *sample) uncertaintyAt(m time.Duration, ppm float64) time.Duration {
	age := m - s.mono
	if age < 0 {
		age = -age
	}
	return s.base + time.Duration(float64(age)*ppm/1e6)
}

// ntpSource is one configured NTP source and its clock filter. All fields
// but src, err, name and smeared are guarded by Corrected.mu.
type ntpSource struct {
	src     Source
	err     error // parse error: the source is never queried
	name    string
	smeared bool

	filter  []*sample // the last filterSize accepted samples, oldest first
	lastErr error     // the last query failure; nil after a success
}

// best returns the minimum-delay sample of the filter, or nil.
func (ns *ntpSource) best() *sample {
	var b *sample
	for _, s := range ns.filter {
		if b == nil || s.rtt < b.rtt {
			b = s
		}
	}
	return b
}

// add appends s to the filter, dropping the oldest beyond filterSize.
func (ns *ntpSource) add(s *sample) {
	ns.filter = append(ns.filter, s)
	if len(ns.filter) > filterSize {
		ns.filter = slices.Delete(ns.filter, 0, len(ns.filter)-filterSize)
	}
}

// selectLocked picks the candidate with the lowest current uncertainty (NTP
// sources first, in configured order, on ties) and installs it. c.mu must be
// held.
func (c *Corrected) selectLocked() {
	m := c.wall.Mono()
	var best *sample
	var bestU time.Duration
	consider := func(s *sample) {
		if s == nil {
			return
		}
		if u := s.uncertaintyAt(m, c.cfg.DriftPPM); best == nil || u < bestU {
			best, bestU = s, u
		}
	}
	for _, ns := range c.sources {
		consider(ns.best())
	}
	names := make([]string, 0, len(c.passive))
	for name := range c.passive {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		consider(c.passive[name])
	}
	if best != nil {
		c.installLocked(best, m, "")
	}
}

// installLocked makes s the current estimate (unless it already is) and
// logs what changed. why, when set, explains a forced switch. c.mu must be
// held.
func (c *Corrected) installLocked(s *sample, m time.Duration, why string) {
	cur := c.cur.Load()
	if cur.s == s {
		return
	}
	next := &anchor{gen: cur.gen + 1, off: s.off, from: m, synced: true, s: s}
	c.pushLocked(next)
	attrs := []any{
		"source", s.source,
		"offset", c.cfg.HostOffset + c.wall.Now().Sub(c.epoch.Add(m+s.off)),
		"uncertainty", s.uncertaintyAt(m, c.cfg.DriftPPM),
		"step", s.off - cur.off,
	}
	if why != "" {
		attrs = append(attrs, "reason", why)
	}
	switch {
	case cur.s == nil:
		c.log.Info("clock synchronized", attrs...)
	case cur.s.source != s.source:
		c.log.Info("time source changed", append(attrs, "previous", cur.s.source)...)
	case why != "":
		c.log.Warn("clock corrected", attrs...)
	default:
		c.log.Debug("clock estimate updated", attrs...)
	}
	if cur.s != nil && cur.s.smeared != s.smeared {
		// Smeared and unsmeared time differ by up to half a second around
		// a leap second: never switch between them silently.
		c.log.Warn("switching between leap-smeared and unsmeared time",
			slog.String("from", cur.s.source), slog.Bool("from_smeared", cur.s.smeared),
			slog.String("to", s.source), slog.Bool("to_smeared", s.smeared))
	}
	c.readyOnce.Do(func() { close(c.ready) })
}

// pushLocked stores a as the current anchor and records it in the history.
// c.mu must be held.
func (c *Corrected) pushLocked(a *anchor) {
	c.cur.Store(a)
	c.history = append(c.history, a)
	if len(c.history) > historySize {
		c.history = slices.Delete(c.history, 0, len(c.history)-historySize)
	}
}

// monoOfLocked maps a reading of Now back to the monotonic clock, through
// the anchor that was current when it was taken. It fails when no anchor
// explains the reading or when two anchors explain it differently (the
// clock was corrected backwards around that time). c.mu must be held.
func (c *Corrected) monoOfLocked(t time.Time, now time.Duration) (time.Duration, bool) {
	// A reader may load an anchor just before it is replaced and read the
	// monotonic clock just after: allow that much past the anchor's end.
	const slack = 50 * time.Millisecond
	rel := t.Sub(c.epoch)
	var found bool
	var first time.Duration
	for i := len(c.history) - 1; i >= 0; i-- {
		a := c.history[i]
		until := now
		if i+1 < len(c.history) {
			until = c.history[i+1].from
		}
		m := rel - a.off
		if m < a.from || m > until+slack {
			continue
		}
		if !found {
			found, first = true, m
			continue
		}
		if d := m - first; d > time.Millisecond || d < -time.Millisecond {
			return 0, false
		}
	}
	return first, found
}
