package timesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultTimeout       = time.Second
	DefaultMinPoll       = 16 * time.Second
	DefaultMaxPoll       = 64 * time.Second
	DefaultBurstSamples  = 4
	DefaultBurstGap      = 250 * time.Millisecond
	DefaultCheckInterval = time.Second
	DefaultStepThreshold = 250 * time.Millisecond
	DefaultDriftPPM      = 15
	// DefaultMaxObservationRTT is the longest Sent→Received round trip of
	// an Observation that Observe uses: aws-sdk-go-v2 and aws-sdk-js-v3
	// likewise ignore slow answers when they estimate clock skew, since a
	// Date header stamped somewhere in a long exchange says little.
	DefaultMaxObservationRTT = 2 * time.Second
)

// Config configures a Corrected clock. Zero fields take the defaults above.
type Config struct {
	// Sources is the ordered --time-source list ("ntp://HOST[:PORT]"). An
	// entry that does not parse is never queried; its error shows in
	// Status().Reason (validate with ParseSources first to refuse it).
	Sources []string
	// HostOffset is --clock-offset: it shifts only the host clock reading
	// (what Status().Offset compares against and what Now returns before
	// any source answers), never the corrected time.
	HostOffset time.Duration
	// Logger receives sync events; nil discards them.
	Logger *slog.Logger
	// Wall reads the host wall and monotonic clocks; nil uses the real ones.
	Wall WallClock
	// Query sends one NTP query; nil uses github.com/beevik/ntp.
	Query QueryFunc
	// Timeout bounds one NTP query (default 1 s).
	Timeout time.Duration
	// MinPoll and MaxPoll bound the poll interval of an answering source
	// (defaults 16 s and 64 s): it doubles while the source is stable and
	// drops to MinPoll after a disturbance or a failure.
	MinPoll, MaxPoll time.Duration
	// BurstSamples and BurstGap shape the burst of quick queries sent to a
	// source at start and after a disturbance (defaults 4 and 250 ms).
	BurstSamples int
	BurstGap     time.Duration
	// CheckInterval is how often the wall clock is compared with the
	// monotonic clock to detect steps and suspends (default 1 s).
	CheckInterval time.Duration
	// StepThreshold is the wall/monotonic divergence within one check that
	// counts as a step of the host clock (default 250 ms; chrony may slew
	// a wall clock by up to 83 ms per second).
	StepThreshold time.Duration
	// DriftPPM is the assumed frequency error of the monotonic clock, which
	// makes the uncertainty grow with the age of a sample (default 15 ppm).
	DriftPPM float64
	// SmearedHosts are the NTP hosts assumed to smear leap seconds; nil
	// means DefaultSmearedHosts.
	SmearedHosts []string
	// NotBefore is the build-time floor (zero: none): like
	// systemd-timesyncd, the clock never accepts a time earlier than the
	// binary's build. An NTP answer or an Observation whose time is before
	// it is refused, and so is one absurdly far in the future: after
	// NotBefore plus 100 years, or after the year 2200 when NotBefore is
	// zero. It does not move the host-based reading of an unsynced clock.
	NotBefore time.Time
	// MaxObservationRTT is the longest round trip (Sent to Received, on the
	// monotonic clock) of an Observation that Observe uses; slower ones are
	// dropped (default DefaultMaxObservationRTT, 2 s).
	MaxObservationRTT time.Duration
	// OnSample, when set, is called (outside any lock) with the round trip
	// of every accepted NTP answer: the hook for the NTP round-trip metric.
	OnSample func(source string, rtt time.Duration)
}

// Corrected is the corrected clock: the best estimate of true UTC from
// ordered NTP sources and passive observations, anchored to the monotonic
// clock so that a step of the host wall clock never moves it.
//
// Now is lock-free; Status, Observe and the polling in Run share a mutex.
type Corrected struct {
	cfg   Config
	wall  WallClock
	query QueryFunc
	log   *slog.Logger
	// epoch is the fixed origin of the monotonic timeline: the corrected
	// time is epoch + Mono() + anchor.off.
	epoch time.Time
	// startMono is the monotonic reading taken in New (epoch + startMono
	// is the wall reading taken with it).
	startMono time.Duration

	cur       atomic.Pointer[anchor]
	ready     chan struct{}
	readyOnce sync.Once
	running   atomic.Bool

	mu      sync.Mutex
	sources []*ntpSource           // in configured order
	passive map[string]*sample     // best observation per passive source
	history []*anchor              // recent anchors, oldest first, last is cur
	kick    chan struct{}          // closed (and replaced) on a disturbance
	resamp  atomic.Uint64          // resamples triggered by disturbances
	counts  map[string]*sourceStat // per-source counters, for tests and logs
}

var _ Clock = (*Corrected)(nil)

// anchor is one immutable mapping from the monotonic clock to true time.
type anchor struct {
	gen uint64
	// off: corrected time = epoch + mono + off.
	off time.Duration
	// from is the monotonic reading at which the anchor was installed.
	from time.Duration
	// synced is false while the anchor only follows the host clock.
	synced bool
	// s is the sample the anchor comes from; nil before any source answers.
	s *sample
	// extra widens the uncertainty after a detected disturbance, until a
	// fresh sample replaces the anchor.
	extra time.Duration
}

// sourceStat counts the outcome of queries to one source.
type sourceStat struct{ queries, accepted, rejected int }

// New returns a corrected clock that follows the host clock (shifted by
// cfg.HostOffset) until Run gets an answer from a source or Observe is fed.
func New(cfg Config) *Corrected {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinPoll <= 0 {
		cfg.MinPoll = DefaultMinPoll
	}
	if cfg.MaxPoll < cfg.MinPoll {
		cfg.MaxPoll = max(DefaultMaxPoll, cfg.MinPoll)
	}
	if cfg.BurstSamples <= 0 {
		cfg.BurstSamples = DefaultBurstSamples
	}
	if cfg.BurstGap <= 0 {
		cfg.BurstGap = DefaultBurstGap
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.StepThreshold <= 0 {
		cfg.StepThreshold = DefaultStepThreshold
	}
	if cfg.DriftPPM <= 0 {
		cfg.DriftPPM = DefaultDriftPPM
	}
	if cfg.MaxObservationRTT <= 0 {
		cfg.MaxObservationRTT = DefaultMaxObservationRTT
	}
	if cfg.SmearedHosts == nil {
		cfg.SmearedHosts = DefaultSmearedHosts
	}
	c := &Corrected{
		cfg:     cfg,
		wall:    cfg.Wall,
		query:   cfg.Query,
		log:     cfg.Logger,
		ready:   make(chan struct{}),
		passive: make(map[string]*sample),
		kick:    make(chan struct{}),
		counts:  make(map[string]*sourceStat),
	}
	if c.wall == nil {
		c.wall = newSystemWall()
	}
	if c.query == nil {
		c.query = SystemQuery
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range cfg.Sources {
		src, err := ParseSource(s)
		ns := &ntpSource{src: src, err: err, name: s}
		if err == nil {
			ns.name = src.String()
			ns.smeared = isSmeared(src.Host, cfg.SmearedHosts)
		}
		c.sources = append(c.sources, ns)
	}
	m := c.wall.Mono()
	c.epoch = c.wall.Now().Add(-m)
	c.startMono = m
	a := &anchor{off: cfg.HostOffset, from: m}
	c.cur.Store(a)
	c.history = []*anchor{a}
	return c
}

// Now returns the best estimate of true UTC: lock-free, allocation-free.
// Before any source has answered it is the host clock plus HostOffset.
func (c *Corrected) Now() time.Time {
	return c.epoch.Add(c.wall.Mono() + c.cur.Load().off)
}

// Ready is closed once an authoritative source (NTP or a passive
// observation) has answered.
func (c *Corrected) Ready() <-chan struct{} { return c.ready }

// Status describes the current estimate. Offset is the host clock (plus
// HostOffset) minus CorrectedTime; Uncertainty is zero while not synced.
func (c *Corrected) Status() Status {
	a := c.cur.Load()
	m := c.wall.Mono()
	host := c.wall.Now().Add(c.cfg.HostOffset)
	now := c.epoch.Add(m + a.off)
	st := Status{
		Synced:        a.synced,
		Source:        "host",
		CorrectedTime: now,
		Offset:        host.Sub(now),
	}
	if a.s != nil {
		st.Source = a.s.source
		st.Uncertainty = a.s.uncertaintyAt(m, c.cfg.DriftPPM) + a.extra
		st.LastSync = c.epoch.Add(a.s.mono + a.s.off)
		st.Smeared = a.s.smeared
		st.Passive = a.s.passive
		st.Precision = a.s.precision
	}
	if !a.synced {
		c.mu.Lock()
		st.Reason = c.reasonLocked()
		c.mu.Unlock()
	}
	return st
}

// reasonLocked says why the clock is not synced. c.mu must be held.
func (c *Corrected) reasonLocked() string {
	if len(c.sources) == 0 {
		return "no time source configured and no observation yet"
	}
	var parts []string
	for _, ns := range c.sources {
		switch {
		case ns.err != nil:
			parts = append(parts, ns.err.Error())
		case ns.lastErr != nil:
			parts = append(parts, ns.name+": "+ns.lastErr.Error())
		default:
			parts = append(parts, ns.name+": no answer yet")
		}
	}
	return "no time source has answered yet: " + strings.Join(parts, "; ")
}

// Run polls the sources and watches the host clock for steps until ctx is
// done; it then returns nil. Run may be called once.
func (c *Corrected) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("timesource: Run called twice")
	}
	var wg sync.WaitGroup
	for _, ns := range c.sources {
		if ns.err != nil {
			c.log.Warn("time source ignored", "error", ns.err)
			continue
		}
		wg.Go(func() { c.pollSource(ctx, ns) })
	}
	wg.Go(func() { c.watchWall(ctx) })
	wg.Wait()
	return nil
}

// Resamples reports how many times a detected disturbance (a wall-clock
// step, a suspend, a disagreeing observation) has triggered an immediate
// resample of every source.
func (c *Corrected) Resamples() uint64 { return c.resamp.Load() }

// String describes the clock for logs.
func (c *Corrected) String() string {
	st := c.Status()
	return fmt.Sprintf("corrected clock (source %s, synced %t)", st.Source, st.Synced)
}
