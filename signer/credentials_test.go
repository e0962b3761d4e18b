package signer

import (
	"context"
	"path/filepath"
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
	prov, desc, err := LoadCredentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := prov.(*aws.CredentialsCache); !ok {
		t.Errorf("provider %T is not cached", prov)
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
		{"inside the five-minute window: refreshed every time", 3 * time.Minute, 2},
		{"an hour left: cached", time.Hour, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			inner := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				calls.Add(1)
				return aws.Credentials{AccessKeyID: "A", SecretAccessKey: "S", CanExpire: true, Expires: time.Now().Add(tc.life)}, nil
			})
			prov, _, err := LoadCredentials(context.Background(), config.WithCredentialsProvider(inner))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if _, err := prov.Retrieve(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("inner provider called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
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
