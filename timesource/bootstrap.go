package timesource

import (
	"context"
	"log/slog"
	"time"
)

// DefaultBootstrapRetry is how long a Bootstrapper waits after a failed
// probe before it probes again.
const DefaultBootstrapRetry = 10 * time.Second

// Bootstrapper learns the time from an HTTPS server's Date header while no
// time source has answered: on a gateway that boots at 1970 with UDP 123
// blocked, the first AWS host the application calls sets the clock (see
// DateProbe for what is verified). Once the clock is synced, by the probe,
// NTP or any observation, it does nothing.
//
// Probes are serialised: requests arriving during a probe wait for it (or
// for their context), so the first request is signed with the learned time.
// A failed probe is not repeated for Retry.
type Bootstrapper struct {
	clock *Corrected
	probe DateProbe
	retry time.Duration
	log   *slog.Logger

	sem chan struct{}
	// lastFail is the monotonic reading of the last failed probe (0: none);
	// guarded by sem.
	lastFail time.Duration
}

// NewBootstrapper returns a Bootstrapper feeding clock with probe. retry
// <= 0 means DefaultBootstrapRetry; a nil log discards.
func NewBootstrapper(clock *Corrected, probe DateProbe, retry time.Duration, log *slog.Logger) *Bootstrapper {
	if retry <= 0 {
		retry = DefaultBootstrapRetry
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if probe.NotBefore.IsZero() {
		probe.NotBefore = clock.cfg.NotBefore
	}
	return &Bootstrapper{clock: clock, probe: probe, retry: retry, log: log, sem: make(chan struct{}, 1)}
}

// Needed reports whether no source has answered yet. It is cheap (one
// non-blocking channel receive), so callers may ask on every request.
func (b *Bootstrapper) Needed() bool {
	select {
	case <-b.clock.Ready():
		return false
	default:
		return true
	}
}

// Bootstrap probes serverName at addr ("host:port") unless the clock is
// synced or a probe failed less than Retry ago. It returns when the probe
// is over or ctx is done; failures are logged, not returned: the caller
// goes on with the clock as it is.
func (b *Bootstrapper) Bootstrap(ctx context.Context, serverName, addr string) {
	if !b.Needed() {
		return
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-b.sem }()
	if !b.Needed() {
		return
	}
	now := b.clock.wall.Mono()
	if b.lastFail != 0 && now-b.lastFail < b.retry {
		return
	}
	obs, err := b.probe.Probe(ctx, b.clock, serverName, addr)
	if err != nil {
		b.lastFail = max(b.clock.wall.Mono(), 1)
		b.log.Warn("no time source has answered and the HTTPS Date bootstrap failed",
			"server", serverName, "addr", addr, "err", err, "retry_in", b.retry)
		return
	}
	before := b.clock.Now()
	b.clock.Observe(obs)
	st := b.clock.Status()
	b.log.Info("time learned from an HTTPS Date header (bootstrap until NTP answers)",
		"server", serverName, "server_time", obs.ServerTime.UTC().Format(time.RFC3339),
		"step", st.CorrectedTime.Sub(before).Round(time.Millisecond).String(),
		"offset", st.Offset.Round(time.Millisecond).String(), "synced", st.Synced)
}
