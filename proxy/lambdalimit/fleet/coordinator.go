package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

// Coordinator keeps the Lambda invoke limits of a fleet of proxies in
// Redis. It implements lambdalimit.Coordinator; make one with New, hand it
// to lambdalimit.Config.Coordinator, and Close it when the proxy stops.
type Coordinator struct {
	cfg      resolved
	rdb      redis.UniversalClient
	display  string // the URL without credentials
	instance string // this process's id in Redis
	channel  string
	global   *semKeys // nil: no limit over all functions
	log      *slog.Logger

	seq       atomic.Uint64
	mode      atomic.Int32 // lambdalimit.Mode
	seen      atomic.Int64 // live proxies at the last heartbeat
	lastRTT   atomic.Int64 // ns
	fallbacks atomic.Int64
	beating   atomic.Bool // a heartbeat has registered this proxy

	mu      sync.Mutex
	sems    map[string]*sem // function semaphores with local waiters
	gsem    *sem            // the all-functions semaphore (nil without one)
	leases  map[*lease]struct{}
	last    map[string]semStatus // by semaphore name, for Status
	since   time.Time            // corrected time of the last mode change
	lastErr string
	stopped bool

	stop   chan struct{}
	wg     sync.WaitGroup
	pubsub *redis.PubSub
}

var _ lambdalimit.Coordinator = (*Coordinator)(nil)

// New connects to Redis (bounded by Config.Timeout) and starts the lease
// renewer and the release listener. Redis not answering is not an error:
// the coordinator then starts in its fallback mode and keeps probing. A
// malformed URL or Config is.
func New(cfg Config) (*Coordinator, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	rdb, display, err := newClient(r)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("fleet: instance id: %w", err)
	}
	c := &Coordinator{
		cfg:      r,
		rdb:      rdb,
		display:  display,
		instance: hex.EncodeToString(id),
		channel:  releasedChannel(r.ns),
		log:      r.Logger,
		sems:     map[string]*sem{},
		leases:   map[*lease]struct{}{},
		last:     map[string]semStatus{},
		since:    r.Clock(),
		stop:     make(chan struct{}),
	}
	if r.MaxInflight > 0 {
		k := keysFor(r.ns, "")
		c.global = &k
		c.gsem = newSem("", k, r.MaxInflight)
	}
	c.seen.Store(1)
	if _, err := c.heartbeat(true); err != nil {
		c.fallBack(err)
	} else {
		c.log.Info("lambda coordinator: limits are fleet-wide", "redis", c.display, "namespace", r.ns,
			"instance", c.instance, "proxies_seen", c.seen.Load())
	}
	c.pubsub = rdb.Subscribe(context.Background(), c.channel)
	msgs := c.pubsub.Channel(
		redis.WithChannelHealthCheckInterval(max(r.ProbeInterval, time.Second)),
		redis.WithChannelPingTimeout(r.Timeout),
		redis.WithChannelReconnectTimeout(r.Timeout),
		redis.WithChannelSendTimeout(10*time.Millisecond),
	)
	c.wg.Add(2)
	go c.listen(msgs)
	go c.maintain()
	return c, nil
}

// Mode reports how the limits are kept now.
func (c *Coordinator) Mode() lambdalimit.Mode { return lambdalimit.Mode(c.mode.Load()) }

// FleetSize is Config.FleetSize, or the live proxies last seen in Redis.
func (c *Coordinator) FleetSize() int {
	if c.cfg.FleetSize > 0 {
		return c.cfg.FleetSize
	}
	return int(max(c.seen.Load(), 1))
}

// fallbackMode is the mode Redis failing leads to.
func (c *Coordinator) fallbackMode() lambdalimit.Mode {
	if c.cfg.FailClosed {
		return lambdalimit.ModeClosed
	}
	return lambdalimit.ModeLocal
}

// errStopped is returned by Acquire after Close.
var errStopped = fmt.Errorf("fleet: coordinator closed: %w", lambdalimit.ErrCoordinatorUnavailable)

// Acquire holds a fleet-wide slot for one invoke of fn: first fn's own
// semaphore, then the all-functions one. See lambdalimit.Coordinator.
func (c *Coordinator) Acquire(ctx context.Context, fn string, ticket time.Time) (lambdalimit.Lease, error) {
	l := &lease{c: c, id: c.instance + ":" + strconv.FormatUint(c.seq.Add(1), 36), fn: c.fnKeys(fn), fnName: fn, fnLimit: c.cfg.fnLimits[fn]}
	switch c.Mode() {
	case lambdalimit.ModeLocal:
		l.inGlobal.Store(true) // registered in both when Redis is back
		return c.hold(l), nil
	case lambdalimit.ModeClosed:
		return nil, c.unavailable()
	}
	start := time.Now() // monotonic: the coordination wait, for metrics
	defer func() {
		if c.cfg.OnWait != nil {
			c.cfg.OnWait(time.Since(start))
		}
	}()
	ct := &contender{id: l.id, ticket: ticket.UnixMicro(), done: make(chan grant, 1)}
	g := c.wait(ctx, fn, l.fnLimit, ct)
	if g.err != nil {
		return nil, g.err
	}
	l.shared, l.epoch = g.shared, g.epoch
	if g.shared && c.gsem != nil {
		// The function's slot is renewed while the invoke waits for one
		// of all functions (that wait may outlast the TTL).
		c.hold(l)
		ct = &contender{id: l.id, ticket: ct.ticket, done: make(chan grant, 1)}
		g2 := c.wait(ctx, globalSem, 0, ct)
		if g2.err != nil {
			c.unhold(l)
			c.releaseShared(l, "-", 0, false)
			return nil, g2.err
		}
		// g2 not shared: fell back meanwhile; the lease counts as local
		// and is registered in both semaphores when Redis is back.
		l.shared = g2.shared
	}
	l.inGlobal.Store(true)
	if !l.shared && c.Mode() == lambdalimit.ModeClosed {
		c.unhold(l)
		if g.shared {
			c.releaseShared(l, "-", 0, false)
		}
		return nil, c.unavailable()
	}
	return c.hold(l), nil
}

// unavailable is the error of Acquire in ModeClosed.
func (c *Coordinator) unavailable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	return fmt.Errorf("fleet: redis %s: %s: %w", c.display, c.lastErr, lambdalimit.ErrCoordinatorUnavailable)
}

// hold records l as running (renewed until released).
func (c *Coordinator) hold(l *lease) *lease {
	c.mu.Lock()
	c.leases[l] = struct{}{}
	c.mu.Unlock()
	return l
}

// unhold stops renewing l.
func (c *Coordinator) unhold(l *lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}

// fnKeys are the keys of fn's semaphore.
func (c *Coordinator) fnKeys(fn string) semKeys { return keysFor(c.cfg.ns, fn) }

// lease is one slot of a function (and of the all-functions semaphore
// when there is one). It is renewed in Redis until released, whether it
// was granted there (shared) or locally during a fallback: a local lease
// is registered when Redis answers again, so that it counts.
type lease struct {
	c       *Coordinator
	id      string
	fn      semKeys
	fnName  string
	fnLimit int
	shared  bool
	epoch   int64
	done    atomic.Bool
	// inGlobal: renewed in the all-functions semaphore too (granted
	// there, or a local lease to register there).
	inGlobal atomic.Bool
}

// Shared reports whether the slot was granted by Redis.
func (l *lease) Shared() bool { return l.shared }

// Release ends the lease. The Redis side runs in the background (bounded
// by Config.Timeout): it never delays the caller.
func (l *lease) Release(status int, h http.Header) {
	if !l.done.CompareAndSwap(false, true) {
		return
	}
	c := l.c
	c.unhold(l)
	outcome, retry := "-", time.Duration(0)
	if l.shared {
		switch {
		case lambdalimit.Throttled(status, h):
			outcome = "t"
			retry = min(lambdalimit.RetryAfter(h, c.cfg.Clock), c.cfg.RetryAfterCap)
		case status >= 200 && status < 300:
			outcome = "s"
		}
	}
	c.releaseShared(l, outcome, retry, true)
}

// releaseShared removes l from Redis in the background: from the
// all-functions semaphore first (withGlobal), so that a proxy woken by the
// function's release message finds both slots free. Nothing is sent while
// Redis is out of reach; the entries lapse within one TTL.
func (c *Coordinator) releaseShared(l *lease, outcome string, retry time.Duration, withGlobal bool) {
	c.mu.Lock()
	if c.stopped || c.Mode() != lambdalimit.ModeShared {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		if withGlobal && c.global != nil {
			if err := c.run(releaseScript, "release", []string{c.global.leases, c.global.aimd},
				l.id, "-", 0, 0, 0, c.cfg.keyTTL.Milliseconds(), "", ""); err != nil {
				c.fallBack(err)
				return
			}
		}
		if err := c.run(releaseScript, "release", []string{l.fn.leases, l.fn.aimd},
			l.id, outcome, l.epoch, l.fnLimit, retry.Milliseconds(), c.cfg.keyTTL.Milliseconds(), c.channel, l.fnName); err != nil {
			c.fallBack(err)
		}
	}()
}

// run runs one script with a bounded context and reports the round trip.
func (c *Coordinator) run(s *redis.Script, op string, keys []string, args ...any) error {
	_, err := c.call(s, op, keys, args...)
	return err
}

// call is run returning the script's answer.
func (c *Coordinator) call(s *redis.Script, op string, keys []string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	start := time.Now() // monotonic: round-trip time
	v, err := s.Run(ctx, c.rdb, keys, args...).Result()
	d := time.Since(start)
	if err == nil {
		c.lastRTT.Store(int64(d))
	}
	if c.cfg.OnRoundTrip != nil {
		c.cfg.OnRoundTrip(op, d, err)
	}
	if err != nil {
		return nil, fmt.Errorf("redis %s %s: %w", c.display, op, err)
	}
	return v, nil
}

// fallBack leaves the shared mode after err (Redis unreachable or slow):
// waiters get local leases (or are refused), and the renewer probes.
// The change is logged once.
func (c *Coordinator) fallBack(err error) {
	c.mu.Lock()
	if c.stopped || c.Mode() != lambdalimit.ModeShared {
		c.mu.Unlock()
		return
	}
	m := c.fallbackMode()
	c.mode.Store(int32(m))
	c.since = c.cfg.Clock()
	c.lastErr = err.Error()
	c.fallbacks.Add(1)
	for _, s := range c.sems {
		s.poke()
	}
	if c.gsem != nil {
		c.gsem.poke()
	}
	c.mu.Unlock()
	if m == lambdalimit.ModeLocal {
		c.log.Warn("lambda coordinator unavailable: each proxy keeps its share of the limits locally until Redis answers",
			"redis", c.display, "fleet_size", c.FleetSize(), "err", err)
	} else {
		c.log.Warn("lambda coordinator unavailable: held invokes are refused until Redis answers (fallback closed)",
			"redis", c.display, "err", err)
	}
	if c.cfg.OnModeChange != nil {
		c.cfg.OnModeChange(m)
	}
}

// recovered returns to the shared mode.
func (c *Coordinator) recovered() {
	c.mu.Lock()
	if c.stopped || c.Mode() == lambdalimit.ModeShared {
		c.mu.Unlock()
		return
	}
	c.mode.Store(int32(lambdalimit.ModeShared))
	down := c.cfg.Clock().Sub(c.since)
	c.since = c.cfg.Clock()
	c.mu.Unlock()
	c.log.Info("lambda coordinator answers again: limits are fleet-wide", "redis", c.display,
		"after", down.Round(time.Millisecond), "proxies_seen", c.seen.Load())
	if c.cfg.OnModeChange != nil {
		c.cfg.OnModeChange(lambdalimit.ModeShared)
	}
}

// maintain renews the leases and the heartbeat every third of the TTL
// while Redis answers, and probes it every ProbeInterval while not; a
// successful probe registers every running lease again before the limits
// are shared again.
func (c *Coordinator) maintain() {
	defer c.wg.Done()
	t := time.NewTimer(c.next())
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if err := c.renew(c.Mode() != lambdalimit.ModeShared); err != nil {
			c.fallBack(err)
		} else {
			c.recovered()
		}
		t.Reset(c.next())
	}
}

func (c *Coordinator) next() time.Duration {
	if c.Mode() == lambdalimit.ModeShared {
		return c.cfg.renewEvery
	}
	return min(c.cfg.ProbeInterval, c.cfg.renewEvery)
}

// renew sends the heartbeat, then extends every running lease. Routine
// renewals only extend what Redis holds (a lease released meanwhile must
// not come back); with adopt, or when the heartbeat shows that Redis lost
// this proxy's entry (restarted, failed over), leases Redis does not hold
// are registered again: their invokes still run, so they count.
func (c *Coordinator) renew(adopt bool) error {
	lost, err := c.heartbeat(true)
	if err != nil {
		return err
	}
	adopt = adopt || lost
	c.mu.Lock()
	byKey := map[string][]any{}
	for l := range c.leases {
		byKey[l.fn.leases] = append(byKey[l.fn.leases], l.id)
		if c.global != nil && l.inGlobal.Load() {
			byKey[c.global.leases] = append(byKey[c.global.leases], l.id)
		}
	}
	c.mu.Unlock()
	mode := "XX"
	if adopt {
		mode = "ADD"
	}
	for key, ids := range byKey {
		for len(ids) > 0 {
			n := min(len(ids), 500)
			args := append([]any{c.cfg.LeaseTTL.Milliseconds(), c.cfg.keyTTL.Milliseconds(), mode}, ids[:n]...)
			v, err := c.call(renewScript, "renew", []string{key}, args...)
			if err != nil {
				return err
			}
			if added, _ := v.(int64); added > 0 {
				c.log.Info("lambda coordinator registered leases Redis did not hold", "key", key, "leases", added)
			}
			ids = ids[n:]
		}
	}
	return nil
}

// heartbeat records this proxy as live (or, alive false, gone) and reads
// how many are. lost reports that Redis did not hold this proxy's entry
// although the last heartbeat, less than a TTL ago, put it there.
func (c *Coordinator) heartbeat(alive bool) (lost bool, err error) {
	flag := "1"
	if !alive {
		flag = "0"
	}
	ttl := c.cfg.LeaseTTL.Milliseconds()
	v, err := c.call(heartbeatScript, "heartbeat", []string{instancesKey(c.cfg.ns)}, c.instance, ttl, flag)
	if err != nil {
		return false, err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 || !alive {
		return false, nil
	}
	if n, ok := a[0].(int64); ok {
		c.seen.Store(n)
	}
	added, _ := a[1].(int64)
	was := c.beating.Swap(true)
	return added == 1 && was, nil
}

// listen wakes the local waiters of a function (and of the all-functions
// semaphore) when any proxy releases one of its slots.
func (c *Coordinator) listen(msgs <-chan *redis.Message) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			c.mu.Lock()
			if s := c.sems[m.Payload]; s != nil {
				s.poke()
			}
			if c.gsem != nil {
				c.gsem.poke()
			}
			c.mu.Unlock()
		}
	}
}

// Close stops the coordinator: waiters are refused, the renewer and the
// listener stop, releases in progress finish (each bounded by
// Config.Timeout), the proxy leaves the live set, and the client closes.
// Leases still held lapse in Redis within one TTL. ctx bounds the wait.
func (c *Coordinator) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	close(c.stop)
	for _, s := range c.sems {
		s.poke()
	}
	if c.gsem != nil {
		c.gsem.poke()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("fleet: close: %w", ctx.Err()))
	}
	if c.Mode() == lambdalimit.ModeShared {
		if _, err := c.heartbeat(false); err != nil {
			c.log.Debug("lambda coordinator: leaving the live set", "err", err)
		}
	}
	if err := c.pubsub.Close(); err != nil {
		errs = append(errs, fmt.Errorf("fleet: close subscription: %w", err))
	}
	if err := c.rdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("fleet: close client: %w", err))
	}
	<-done // every goroutine's Redis call is bounded by Config.Timeout
	return errors.Join(errs...)
}
