package timesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/beevik/ntp"
)

// QueryFunc sends one NTP query to addr ("host:port", IPv6 bracketed) and
// returns the server's answer unvalidated. opt carries Timeout and, from the
// corrected clock, GetSystemTime (the monotonic timeline the answer's
// ClockOffset must be relative to). It must return once ctx is done.
type QueryFunc func(ctx context.Context, addr string, opt ntp.QueryOptions) (*ntp.Response, error)

// SystemQuery is the real QueryFunc: github.com/beevik/ntp over UDP, with
// the socket closed early if ctx is done.
func SystemQuery(ctx context.Context, addr string, opt ntp.QueryOptions) (*ntp.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var stop func() bool
	opt.Dialer = func(_, remote string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "udp", remote)
		if err != nil {
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	resp, err := ntp.QueryWithOptions(addr, opt)
	if stop != nil {
		stop()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return resp, nil
}

// Reasons an answer is refused, besides (*ntp.Response).Validate errors.
var (
	errKiss        = errors.New("kiss of death")
	errStratum     = errors.New("unusable stratum")
	errUnsynced    = errors.New("server not synchronized (leap indicator 3)")
	errNegativeRTT = errors.New("negative round-trip time")
	errNoResponse  = errors.New("no response")
)

// checkResponse refuses an answer that must not set the clock: a kiss of
// death, stratum 0 or 16 and above, an unsynchronized leap indicator, a
// negative round trip, or anything (*ntp.Response).Validate refuses.
func checkResponse(r *ntp.Response) error {
	switch {
	case r == nil:
		return errNoResponse
	case r.KissCode != "" || r.IsKissOfDeath():
		return fmt.Errorf("%w (code %q)", errKiss, r.KissCode)
	case r.Stratum == 0 || r.Stratum >= 16:
		return fmt.Errorf("%w %d", errStratum, r.Stratum)
	case r.Leap == ntp.LeapNotInSync:
		return errUnsynced
	case r.RTT < 0:
		return errNegativeRTT
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("invalid answer: %w", err)
	}
	return nil
}

// responseUncertainty bounds the error of an answer: half the round trip
// plus the server's root distance (RootDelay/2 + RootDispersion).
func responseUncertainty(r *ntp.Response) time.Duration {
	return r.RTT/2 + r.RootDelay/2 + r.RootDispersion
}

// leapString names a leap indicator for the `time` command.
func leapString(l ntp.LeapIndicator) string {
	switch l {
	case ntp.LeapNoWarning:
		return "none"
	case ntp.LeapAddSecond:
		return "insert"
	case ntp.LeapDelSecond:
		return "delete"
	default:
		return "unsynchronized"
	}
}

// monoTime is the monotonic timeline handed to the NTP client, so that an
// answer's ClockOffset is relative to it and not to the steppable wall.
func (c *Corrected) monoTime() time.Time { return c.epoch.Add(c.wall.Mono()) }

// queryOnce asks one source for one sample and feeds it to the filter. It
// reports whether the sample was accepted and whether it agreed with the
// estimate in force (a stable source may be polled less often).
func (c *Corrected) queryOnce(ctx context.Context, ns *ntpSource) (ok, stable bool) {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout+time.Second)
	defer cancel()
	resp, err := c.query(qctx, ns.src.Addr(), ntp.QueryOptions{
		Timeout:       c.cfg.Timeout,
		GetSystemTime: c.monoTime,
	})
	m := c.wall.Mono()
	if err == nil {
		err = checkResponse(resp)
	}
	var server time.Time // the true time the answer implies at m
	if err == nil {
		server = c.epoch.Add(m + resp.ClockOffset)
		err = checkPlausible(server, c.cfg.NotBefore)
	}

	if hook := c.cfg.OnSample; hook != nil && err == nil {
		defer hook(ns.name, resp.RTT) // registered before the lock: runs after the unlock
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.statLocked(ns.name)
	st.queries++
	if err != nil {
		if ctx.Err() != nil {
			return false, false
		}
		st.rejected++
		switch {
		case errors.Is(err, errImplausibleTime):
			// Warn once per episode, not on every poll.
			level := slog.LevelWarn
			if errors.Is(ns.lastErr, errImplausibleTime) {
				level = slog.LevelDebug
			}
			c.log.Log(ctx, level, "time source answered an implausible time",
				"source", ns.name, "server_time", server, "not_before", c.cfg.NotBefore,
				"latest", latestPlausible(c.cfg.NotBefore), "error", err)
		case ns.lastErr == nil:
			c.log.Warn("time source failed", "source", ns.name, "error", err)
		default:
			c.log.Debug("time source failed", "source", ns.name, "error", err)
		}
		ns.lastErr = err
		return false, false
	}
	st.accepted++
	ns.lastErr = nil
	s := &sample{
		source:  ns.name,
		off:     resp.ClockOffset,
		mono:    m,
		base:    responseUncertainty(resp),
		rtt:     resp.RTT,
		smeared: ns.smeared,
	}
	cur := c.cur.Load()
	diff := s.off - cur.off
	if diff < 0 {
		diff = -diff
	}
	stable = cur.synced && diff <= max(s.base, 2*time.Millisecond)
	ns.add(s)
	c.selectLocked()
	return true, stable
}

// statLocked returns the counters of a source. c.mu must be held.
func (c *Corrected) statLocked(name string) *sourceStat {
	st := c.counts[name]
	if st == nil {
		st = &sourceStat{}
		c.counts[name] = st
	}
	return st
}

// kickChan returns the channel closed by the next disturbance.
func (c *Corrected) kickChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kick
}

// pollSource queries one source until ctx is done: a burst at start and
// after every disturbance, then one query per poll interval (see
// pollSchedule).
func (c *Corrected) pollSource(ctx context.Context, ns *ntpSource) {
	sched := pollSchedule{min: c.cfg.MinPoll, max: c.cfg.MaxPoll}
	burst := true
	for {
		kick := c.kickChan()
		var ok, stable bool
		if burst {
			ok = c.burst(ctx, ns, kick)
		} else {
			ok, stable = c.queryOnce(ctx, ns)
		}
		burst = false
		t := time.NewTimer(sched.next(ok, stable))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-kick:
			t.Stop()
			burst = true
			sched.disturbed()
		case <-t.C:
		}
	}
}

// pollSchedule decides when a source is queried next. A source that has
// never answered is retried after 1, 2, 4 ... s (up to min); an answering
// source is polled every min, doubling up to max while its answers agree
// with the estimate, and back to min after a failure, a disagreeing answer
// or a disturbance.
type pollSchedule struct {
	min, max time.Duration
	interval time.Duration // current interval once answered; 0 = min
	retry    time.Duration // next retry while never answered; 0 = 1 s
	answered bool
}

// next returns the wait after a query that succeeded (ok) and agreed with
// the estimate (stable).
func (p *pollSchedule) next(ok, stable bool) time.Duration {
	if p.interval == 0 {
		p.interval = p.min
	}
	if p.retry == 0 {
		p.retry = min(time.Second, p.min)
	}
	p.answered = p.answered || ok
	switch {
	case !p.answered:
		wait := p.retry
		p.retry = min(2*p.retry, p.min)
		return wait
	case ok && stable:
		p.interval = min(2*p.interval, p.max)
	default:
		p.interval = p.min
	}
	return p.interval
}

// disturbed resets the interval after a disturbance.
func (p *pollSchedule) disturbed() { p.interval = p.min }

// burst sends BurstSamples quick queries, BurstGap apart, so that the
// filter has a low-delay sample soon; it stops early when ctx is done or a
// new disturbance starts another burst.
func (c *Corrected) burst(ctx context.Context, ns *ntpSource, kick <-chan struct{}) bool {
	any := false
	for i := range c.cfg.BurstSamples {
		if i > 0 {
			t := time.NewTimer(c.cfg.BurstGap)
			select {
			case <-ctx.Done():
				t.Stop()
				return any
			case <-kick:
				t.Stop()
				return any
			case <-t.C:
			}
		}
		ok, _ := c.queryOnce(ctx, ns)
		any = any || ok
	}
	return any
}
