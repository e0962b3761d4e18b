package signer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// isolatedConfig keeps LoadCredentials away from the machine's own AWS
// files and instance metadata.
func isolatedConfig(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "us-east-1")
}

func TestLoadCredentialsFromEnvironment(t *testing.T) {
	isolatedConfig(t)
	t.Setenv("AWS_ACCESS_KEY_ID", proxyAKID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", proxySecret)
	t.Setenv("AWS_SESSION_TOKEN", proxyToken)
	prov, desc, err := LoadCredentials(context.Background(), CredentialsOptions{Cache: CredentialsCacheOptions{Now: time.Now}})
	if err != nil {
		t.Fatal(err)
	}
	if desc != "static credentials (environment or profile)" {
		t.Errorf("description %q", desc)
	}
	c, err := New(prov, Options{ProviderName: desc}).Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != proxyAKID || c.SessionToken != proxyToken {
		t.Errorf("got %s / token %t", c.AccessKeyID, c.SessionToken != "")
	}
}

func TestLoadCredentialsRefreshesBeforeExpiry(t *testing.T) {
	isolatedConfig(t)
	cases := []struct {
		name      string
		life      time.Duration
		wantCalls int32
	}{
		{"inside the five-minute window: refreshed at half its life, not per call", 3 * time.Minute, 1},
		{"an hour left: cached", time.Hour, 1},
		{"already expired: fetched twice on every call, never used", -time.Minute, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			inner := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				calls.Add(1)
				return aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S", CanExpire: true, Expires: time.Now().Add(tc.life)}, nil
			})
			prov, _, err := LoadCredentials(context.Background(), CredentialsOptions{
				Cache:       CredentialsCacheOptions{Now: time.Now},
				LoadOptions: []func(*config.LoadOptions) error{config.WithCredentialsProvider(inner)},
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				_, err := prov.Retrieve(context.Background())
				if expired := tc.life < 0; expired != IsExpiredCredentials(err) {
					t.Fatalf("Retrieve: %v (want expired error: %t)", err, expired)
				}
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("inner provider called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

// steppedClock is a corrected clock a test moves by hand.
type steppedClock struct{ t atomic.Pointer[time.Time] }

func newSteppedClock(t time.Time) *steppedClock {
	c := &steppedClock{}
	c.Set(t)
	return c
}

func (c *steppedClock) Now() time.Time      { return *c.t.Load() }
func (c *steppedClock) Set(t time.Time)     { c.t.Store(&t) }
func (c *steppedClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// TestCredentialsCacheJudgesExpiryByCorrectedTime: the SDK's own cache in
// front of the provider judges by the host clock; the corrected-time cache
// must override it in both directions. The host clock here is the real
// one; true time is the stepped clock.
func TestCredentialsCacheJudgesExpiryByCorrectedTime(t *testing.T) {
	host := time.Now()
	cases := []struct {
		name string
		// trueOffset is true time minus host time.
		trueOffset time.Duration
		// life is the credentials' lifetime in true time.
		life time.Duration
		// steps advance true time between calls.
		steps     []time.Duration
		wantCalls int32
		wantErr   bool
	}{
		// Host 2 h ahead: the SDK cache sees credentials valid for 1 h as
		// expired an hour ago and would fetch per call.
		{"host ahead 2h, 1h credentials: one fetch for many calls", -2 * time.Hour, time.Hour, []time.Duration{0, time.Second, time.Minute, 30 * time.Minute}, 1, false},
		// Host 2 h behind: past their true expiry the SDK cache would keep
		// them for two more hours.
		{"host behind 2h, credentials refreshed at true expiry", 2 * time.Hour, time.Hour, []time.Duration{0, 50 * time.Minute, 56 * time.Minute}, 2, false},
		{"host right, refreshed in the window", 0, time.Hour, []time.Duration{0, 54 * time.Minute, 56 * time.Minute}, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newSteppedClock(host.Add(tc.trueOffset))
			var calls atomic.Int32
			raw := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				calls.Add(1)
				return aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S", CanExpire: true, Expires: clk.Now().Add(tc.life)}, nil
			})
			// The SDK wraps every chain provider in its host-clock cache.
			c := NewCredentialsCache(aws.NewCredentialsCache(raw), CredentialsCacheOptions{Now: clk.Now})
			for _, d := range tc.steps {
				clk.Add(d)
				creds, err := c.Retrieve(context.Background())
				if err != nil {
					t.Fatalf("Retrieve: %v", err)
				}
				if !clk.Now().Before(creds.Expires) {
					t.Fatalf("got credentials expired at %v in true time %v", creds.Expires, clk.Now())
				}
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("provider fetched %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestCredentialsCacheRefusesExpiredOnArrival: credentials that expire an
// hour after host now but are already expired in true time (host 2 h
// behind) are refreshed at once and never used; a provider that keeps
// handing out dead credentials gets an error that says so.
func TestCredentialsCacheRefusesExpiredOnArrival(t *testing.T) {
	cases := []struct {
		name      string
		deadRuns  int32 // how many fetches return credentials dead in true time
		wantKey   string
		wantCalls int32
	}{
		{"first dead, second fresh: the fresh ones are used", 1, "A2", 2},
		{"always dead: an error naming the expiry", 100, "", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newSteppedClock(time.Now().Add(2 * time.Hour))
			var calls atomic.Int32
			raw := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				n := calls.Add(1)
				exp := time.Now().Add(time.Hour) // the provider's own (host) clock
				if n > tc.deadRuns {
					exp = clk.Now().Add(time.Hour) // valid in true time
				}
				return aws.Credentials{AccessKeyID: fmt.Sprintf("A%d", n), SecretAccessKey: "S", CanExpire: true, Expires: exp, Source: "test"}, nil
			})
			var expiredSeen atomic.Int32
			c := NewCredentialsCache(aws.NewCredentialsCache(raw), CredentialsCacheOptions{Now: clk.Now, OnFetch: func(err error) {
				if IsExpiredCredentials(err) {
					expiredSeen.Add(1)
				}
			}})
			creds, err := c.Retrieve(context.Background())
			if tc.wantKey == "" {
				var ee *ExpiredCredentialsError
				if !errors.As(err, &ee) || !strings.Contains(err.Error(), "credentials from test expired at") {
					t.Fatalf("Retrieve: %v, want an *ExpiredCredentialsError saying what expired", err)
				}
			} else if err != nil || creds.AccessKeyID != tc.wantKey {
				t.Fatalf("Retrieve: %v %q, want %s", err, creds.AccessKeyID, tc.wantKey)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("provider called %d times, want %d", got, tc.wantCalls)
			}
			if got := expiredSeen.Load(); got != min(tc.deadRuns, 2) {
				t.Errorf("OnFetch saw %d expired fetches, want %d", got, min(tc.deadRuns, 2))
			}
		})
	}
}

// TestCredentialsCacheKeepsOldOnFailedRefresh: a failed refresh keeps the
// previous credentials while they live (retrying at most every few
// seconds), and reports the error once they have expired.
func TestCredentialsCacheKeepsOldOnFailedRefresh(t *testing.T) {
	clk := newSteppedClock(time.Now())
	var calls atomic.Int32
	var failing atomic.Bool
	raw := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		calls.Add(1)
		if failing.Load() {
			return aws.Credentials{}, errors.New("IMDS unreachable")
		}
		return aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S", CanExpire: true, Expires: clk.Now().Add(time.Hour)}, nil
	})
	var fetchErrs atomic.Int32
	c := NewCredentialsCache(raw, CredentialsCacheOptions{Now: clk.Now, OnFetch: func(err error) {
		if err != nil {
			fetchErrs.Add(1)
		}
	}})
	if _, err := c.Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	clk.Add(58 * time.Minute) // inside the window: refresh due
	for i := 0; i < 5; i++ {
		if creds, err := c.Retrieve(context.Background()); err != nil || creds.AccessKeyID != "A" {
			t.Fatalf("Retrieve %d during a failed refresh: %v", i, err)
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("provider called %d times, want 2 (one failed refresh, then a pause)", got)
	}
	clk.Add(3 * time.Minute) // past expiry
	if _, err := c.Retrieve(context.Background()); err == nil || !strings.Contains(err.Error(), "IMDS unreachable") {
		t.Errorf("Retrieve after expiry: %v, want the refresh error", err)
	}
	if got := fetchErrs.Load(); got != 2 {
		t.Errorf("OnFetch saw %d failures, want 2", got)
	}
}

// TestCredentialsCacheHonoursContext: a caller waiting behind a slow
// refresh gives up when its context ends.
func TestCredentialsCacheHonoursContext(t *testing.T) {
	release := make(chan struct{})
	raw := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		<-release
		return aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S"}, nil
	})
	c := NewCredentialsCache(raw, CredentialsCacheOptions{Now: time.Now})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Retrieve(context.Background())
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Retrieve(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting Retrieve: %v, want deadline exceeded", err)
	}
	close(release)
	<-done
}

// TestCredentialsNoAllocation: reading cached credentials, as every Sign
// does, allocates nothing (the provider's Source is stored only when it
// changes).
func TestCredentialsNoAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	cases := []struct {
		name string
		prov aws.CredentialsProvider
	}{
		{"static", credentials.NewStaticCredentialsProvider("AKID", "SECRET", "TOKEN")},
		{"credentials cache", aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKID", "SECRET", "TOKEN"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.prov, Options{})
			ctx := context.Background()
			if _, err := s.Credentials(ctx); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := s.Credentials(ctx); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%.0f allocations per Credentials call, want 0", allocs)
			}
			if got := s.providerName(); got != "StaticCredentials" {
				t.Errorf("provider name %q, want the credentials' Source", got)
			}
		})
	}
}
