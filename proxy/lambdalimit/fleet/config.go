package fleet

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

// Defaults for the zero values of Config.
const (
	// DefaultLeaseTTL is how long a slot outlives a proxy that stopped
	// renewing it (killed, or cut off from Redis).
	DefaultLeaseTTL = 15 * time.Second
	// DefaultTimeout bounds every Redis round trip; an answer slower than
	// this counts as Redis being unavailable.
	DefaultTimeout = 250 * time.Millisecond
	// DefaultPollInterval is how often a waiting proxy asks again when no
	// release message arrives (messages usually wake it first).
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultProbeInterval is how often a proxy that fell back asks Redis
	// whether it answers again.
	DefaultProbeInterval = time.Second
)

// Config configures a Coordinator. URL and Clock are required.
type Config struct {
	// URL names the Redis server: redis://[user:pass@]HOST:PORT/DB, or
	// rediss:// for TLS. With the query parameter cluster=true it names
	// one node of a Redis Cluster (more seeds with addr=HOST:PORT; DB 0).
	URL string
	// Password, when set, replaces the URL's password (read from a file,
	// say, to keep it out of the process's arguments).
	Password string
	// Namespace prefixes every key; proxies share limits when they name
	// the same Redis and namespace. Empty means DefaultNamespace.
	Namespace string
	// MaxInflight is the fleet-wide limit over all functions; 0 = none.
	MaxInflight int
	// FunctionMaxInflight are the fleet-wide per-function limits, keyed
	// as lambdalimit.Config.FunctionMaxInflight (any form FunctionKey
	// normalises). Every proxy of a fleet should configure the same
	// limits: each applies its own when it asks for a slot.
	FunctionMaxInflight map[string]int
	// FailClosed refuses held invokes while Redis is unavailable
	// (lambdalimit.ModeClosed). By default each proxy keeps
	// ceil(limit / FleetSize) locally (lambdalimit.ModeLocal).
	FailClosed bool
	// FleetSize divides the limits in the local fallback. 0 means the
	// number of live proxies last seen in Redis (at least 1).
	FleetSize int
	// LeaseTTL is how long a slot lasts without renewal (renewed every
	// third of it); 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Timeout bounds each Redis round trip; 0 means DefaultTimeout.
	Timeout time.Duration
	// PollInterval: 0 means DefaultPollInterval.
	PollInterval time.Duration
	// ProbeInterval: 0 means DefaultProbeInterval.
	ProbeInterval time.Duration
	// RetryAfterCap caps how long a Retry-After from Lambda pauses a
	// function fleet-wide (the queue timeout); 0 means no cap beyond 24 h.
	RetryAfterCap time.Duration
	// Clock is the corrected wall clock: it dates tickets, the times in
	// Status, HTTP-date Retry-After values, and judges the validity of a
	// rediss:// server certificate.
	Clock func() time.Time
	// RootCAs verifies a rediss:// server; nil means the system roots.
	RootCAs *x509.CertPool
	// Logger receives mode changes (warn/info) and debug events; nil
	// discards them. It never receives the URL's password.
	Logger *slog.Logger

	// OnRoundTrip, when set, is called after every Redis round trip with
	// its operation (acquire, release, renew, heartbeat, drop), duration
	// and error.
	OnRoundTrip func(op string, d time.Duration, err error)
	// OnWait, when set, is called when a shared Acquire ends, with how
	// long it waited for the fleet-wide slot.
	OnWait func(d time.Duration)
	// OnModeChange, when set, is called after each change of mode.
	OnModeChange func(m lambdalimit.Mode)
}

// resolved is Config with its defaults applied and derived values.
type resolved struct {
	Config
	ns                  string
	fnLimits            map[string]int
	renewEvery, waitTTL time.Duration
	keyTTL              time.Duration
}

func (c Config) resolve() (resolved, error) {
	if c.Clock == nil {
		return resolved{}, errors.New("fleet: Config.Clock is required")
	}
	if c.URL == "" {
		return resolved{}, errors.New("fleet: Config.URL is required")
	}
	r := resolved{Config: c, ns: c.Namespace, fnLimits: map[string]int{}}
	if r.ns == "" {
		r.ns = DefaultNamespace
	}
	if r.LeaseTTL <= 0 {
		r.LeaseTTL = DefaultLeaseTTL
	}
	if r.LeaseTTL < 100*time.Millisecond {
		return resolved{}, fmt.Errorf("fleet: lease TTL %v is too short (minimum 100ms)", r.LeaseTTL)
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultTimeout
	}
	if r.PollInterval <= 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.ProbeInterval <= 0 {
		r.ProbeInterval = DefaultProbeInterval
	}
	if r.RetryAfterCap <= 0 {
		r.RetryAfterCap = 24 * time.Hour
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	for ident, n := range c.FunctionMaxInflight {
		if n <= 0 {
			continue
		}
		k := lambdalimit.FunctionKey(ident)
		if old, ok := r.fnLimits[k]; !ok || n < old {
			r.fnLimits[k] = n
		}
	}
	r.renewEvery = r.LeaseTTL / 3
	// A waiter re-registers on every poll; it lapses when its proxy stops.
	r.waitTTL = max(r.LeaseTTL, 4*r.PollInterval)
	// Idle semaphores (and their adaptive state) vanish after this.
	r.keyTTL = max(10*time.Minute, 4*r.LeaseTTL)
	return r, nil
}

// newClient builds the Redis client for r.URL with every timeout bounded by
// r.Timeout and no hidden retries: the coordinator decides what a failure
// means. display is the URL without credentials, for logs and /status.
func newClient(r resolved) (client redis.UniversalClient, display string, err error) {
	single, cluster, display, err := parseURL(r.URL)
	if err != nil {
		return nil, "", err
	}
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if cluster != nil {
		if r.Password != "" {
			cluster.Password = r.Password
		}
		cluster.DialTimeout, cluster.ReadTimeout, cluster.WriteTimeout, cluster.PoolTimeout = r.Timeout, r.Timeout, r.Timeout, r.Timeout
		cluster.MaxRetries = -1 // no retries inside the client
		cluster.DialerRetries, cluster.DialerRetryTimeout = 1, 10*time.Millisecond
		cluster.ContextTimeoutEnabled = true
		cluster.DisableIdentity = true
		cluster.Protocol = 2
		cluster.MaintNotificationsConfig = noMaint
		if cluster.TLSConfig != nil {
			// Certificate validity is judged by the corrected clock.
			cluster.TLSConfig.Time = r.Clock
			cluster.TLSConfig.RootCAs = r.RootCAs
		}
		return redis.NewClusterClient(cluster), display, nil
	}
	if r.Password != "" {
		single.Password = r.Password
	}
	single.DialTimeout, single.ReadTimeout, single.WriteTimeout, single.PoolTimeout = r.Timeout, r.Timeout, r.Timeout, r.Timeout
	single.MaxRetries = -1
	// A refused connection is an answer: fall back now, not after the
	// client's five dial attempts.
	single.DialerRetries, single.DialerRetryTimeout = 1, 10*time.Millisecond
	single.ContextTimeoutEnabled = true
	single.DisableIdentity = true
	single.Protocol = 2
	single.MaintNotificationsConfig = noMaint
	if single.TLSConfig != nil {
		single.TLSConfig.Time = r.Clock
		single.TLSConfig.RootCAs = r.RootCAs
	}
	return redis.NewClient(single), display, nil
}

// parseURL reads a coordinator URL with go-redis's own parsers: single
// options, or cluster options when the query says cluster=true. Errors
// never quote the URL (it may hold a password).
func parseURL(s string) (single *redis.Options, cluster *redis.ClusterOptions, display string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, nil, "", fmt.Errorf("not a URL: %w", redactURLError(err))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, nil, "", fmt.Errorf("scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.Host == "" {
		return nil, nil, "", errors.New("no HOST:PORT")
	}
	display = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	q := u.Query()
	isCluster := q.Get("cluster") == "true" || q.Get("cluster") == "1"
	q.Del("cluster")
	u.RawQuery = q.Encode()
	if isCluster {
		cluster, err = redis.ParseClusterURL(u.String())
	} else {
		single, err = redis.ParseURL(u.String())
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", display, redactURLError(err))
	}
	return single, cluster, display, nil
}

// redactURLError drops the URL (and so any password) from a *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ValidateURL checks a coordinator URL without connecting: redis:// or
// rediss://, a host, and options go-redis accepts. The error never quotes
// the URL's password.
func ValidateURL(s string) error {
	_, _, _, err := parseURL(s)
	return err
}
