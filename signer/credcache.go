package signer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// CredentialsCache caches the proxy's credentials and decides "expired" and
// "refresh now" by the corrected clock, not the host clock.
//
// aws.CredentialsCache judges expiry with the host clock (the SDK's
// internal sdk.NowTime, which cannot be replaced from outside). On a host
// whose clock is ahead, valid credentials look expired and are fetched
// again on every signature (an IMDS call or a credential_process run per
// request); on a host whose clock is behind, expired credentials keep being
// used until AWS answers ExpiredToken. This cache reads Now instead and
// invalidates the SDK's own cache, when the provider is one, before each
// refresh, so the host clock's opinion never matters.
//
// Rules:
//   - credentials are refreshed ExpiryWindow (less a random jitter) before
//     they expire, or at half their remaining life when that is later, so
//     short-lived credentials are not fetched per request;
//   - credentials that are already expired in corrected time when they
//     arrive are never used: Retrieve fails with an error saying so;
//   - a failed refresh keeps the previous credentials while they are still
//     valid in corrected time, and reports the error once they are not.
//
// It is safe for concurrent use; concurrent refreshes are coalesced.
type CredentialsCache struct {
	provider aws.CredentialsProvider
	now      func() time.Time
	window   time.Duration
	jitter   float64
	onFetch  func(error)

	cur atomic.Pointer[cachedCredentials]
	// sem serialises refreshes; a channel so that waiting honours ctx.
	sem chan struct{}
}

var _ aws.CredentialsProvider = (*CredentialsCache)(nil)

// cachedCredentials is one immutable retrieval.
type cachedCredentials struct {
	creds     aws.Credentials
	refreshAt time.Time // corrected time after which Retrieve refreshes
}

// CredentialsCacheOptions configures NewCredentialsCache.
type CredentialsCacheOptions struct {
	// Now is the corrected clock (required).
	Now func() time.Time
	// ExpiryWindow is how long before expiry credentials are refreshed.
	// Zero means DefaultCredentialsExpiryWindow; negative means none (the
	// credentials' own expiry is used as is, as presign wants).
	ExpiryWindow time.Duration
	// ExpiryWindowJitterFrac in [0,1] moves each refresh earlier by up to
	// that fraction of ExpiryWindow, so a fleet does not refresh in step.
	ExpiryWindowJitterFrac float64
	// OnFetch, when set, is called after every fetch from the provider
	// with its outcome (nil on success): the hook for refresh metrics.
	OnFetch func(err error)
}

// DefaultCredentialsExpiryWindow is how long before expiry cached
// credentials are refreshed, so a signature never carries a token about to
// die.
const DefaultCredentialsExpiryWindow = 5 * time.Minute

// credentialsRetryAfterFailure spaces refresh attempts after a failed one
// while the old credentials still live.
const credentialsRetryAfterFailure = 10 * time.Second

// NewCredentialsCache wraps provider in a cache run on opts.Now.
func NewCredentialsCache(provider aws.CredentialsProvider, opts CredentialsCacheOptions) *CredentialsCache {
	c := &CredentialsCache{
		provider: provider,
		now:      opts.Now,
		window:   opts.ExpiryWindow,
		jitter:   min(max(opts.ExpiryWindowJitterFrac, 0), 1),
		onFetch:  opts.OnFetch,
		sem:      make(chan struct{}, 1),
	}
	if c.now == nil {
		// A programming error, not an input: the cache exists to judge
		// expiry by the corrected clock.
		panic("signer: NewCredentialsCache without a clock (CredentialsCacheOptions.Now)")
	}
	switch {
	case c.window == 0:
		c.window = DefaultCredentialsExpiryWindow
	case c.window < 0:
		c.window = 0
	}
	return c
}

// Retrieve returns cached credentials, refreshing them when the corrected
// clock says they are due. It allocates nothing on the cached path.
func (c *CredentialsCache) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if cc := c.cur.Load(); cc != nil && c.fresh(cc) {
		return cc.creds, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("waiting for a credentials refresh: %w", ctx.Err())
	}
	defer func() { <-c.sem }()
	// Another caller may have refreshed while this one waited.
	old := c.cur.Load()
	if old != nil && c.fresh(old) {
		return old.creds, nil
	}
	creds, err := c.fetch(ctx)
	if c.onFetch != nil && !IsExpiredCredentials(err) { // fetch reported those
		c.onFetch(err)
	}
	if err != nil {
		if old != nil && c.usable(old.creds) {
			// Keep the old credentials while they live, and try again
			// soon, not on every signature.
			retry := c.now().Add(min(credentialsRetryAfterFailure, old.creds.Expires.Sub(c.now())/2))
			c.cur.Store(&cachedCredentials{creds: old.creds, refreshAt: retry})
			return old.creds, nil
		}
		return aws.Credentials{}, err
	}
	c.cur.Store(&cachedCredentials{creds: creds, refreshAt: c.refreshTime(creds)})
	return creds, nil
}

// Invalidate drops the cached credentials: the next Retrieve fetches.
func (c *CredentialsCache) Invalidate() { c.cur.Store(nil) }

// fetch asks the provider for new credentials, bypassing the SDK's own
// host-clock cache, and refuses credentials already expired in corrected
// time. Expired credentials are asked for again once at once: a provider
// that cached them by a wrong clock (a credential_process keeping its own
// cache, IMDS serving the old role credentials for a moment) usually has
// fresh ones on the second call.
func (c *CredentialsCache) fetch(ctx context.Context) (aws.Credentials, error) {
	var err error
	for range 2 {
		if inner, ok := c.provider.(*aws.CredentialsCache); ok {
			inner.Invalidate()
		}
		var creds aws.Credentials
		if creds, err = c.provider.Retrieve(ctx); err != nil {
			return aws.Credentials{}, err
		}
		if c.usable(creds) {
			return creds, nil
		}
		err = &ExpiredCredentialsError{Source: creds.Source, Expires: creds.Expires, Now: c.now()}
		if c.onFetch != nil {
			c.onFetch(err)
		}
	}
	return aws.Credentials{}, err
}

// fresh reports whether cc needs no refresh now.
func (c *CredentialsCache) fresh(cc *cachedCredentials) bool {
	return !cc.creds.CanExpire || c.now().Before(cc.refreshAt)
}

// usable reports whether creds have not expired in corrected time.
func (c *CredentialsCache) usable(creds aws.Credentials) bool {
	return !creds.CanExpire || creds.Expires.IsZero() || c.now().Before(creds.Expires)
}

// refreshTime is when creds should next be refreshed, in corrected time.
func (c *CredentialsCache) refreshTime(creds aws.Credentials) time.Time {
	if !creds.CanExpire || creds.Expires.IsZero() {
		return time.Time{}
	}
	now := c.now()
	window := c.window
	if c.jitter > 0 && window > 0 {
		window -= time.Duration(rand.Float64() * c.jitter * float64(window))
	}
	at := creds.Expires.Add(-window)
	// Short-lived credentials (life under the window) would otherwise be
	// refreshed on every signature: refresh them at half their remaining
	// life instead.
	if half := now.Add(creds.Expires.Sub(now) / 2); at.Before(half) && window > 0 {
		at = half
	}
	return at
}

// ExpiredCredentialsError says the credential provider handed out
// credentials that had already expired by the corrected clock: the
// provider's own clock (or the host's) is wrong, or its cache is stale. The
// proxy refuses to sign with them.
type ExpiredCredentialsError struct {
	Source  string    // the provider's name, when it gave one
	Expires time.Time // the credentials' expiry
	Now     time.Time // corrected time when they arrived
}

// ClientMessage is the cause in words safe to send to the proxy's client.
func (e *ExpiredCredentialsError) ClientMessage() string {
	return "the provider handed out credentials that had already expired (true time)"
}

func (e *ExpiredCredentialsError) Error() string {
	src := e.Source
	if src == "" {
		src = "the provider"
	}
	return fmt.Sprintf("credentials from %s expired at %s, before they arrived (true time %s); not using them",
		src, e.Expires.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
}

// IsExpiredCredentials reports whether err is an *ExpiredCredentialsError.
func IsExpiredCredentials(err error) bool {
	var e *ExpiredCredentialsError
	return errors.As(err, &e)
}
