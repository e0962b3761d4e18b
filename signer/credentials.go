package signer

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// CredentialsOptions configures LoadCredentials.
type CredentialsOptions struct {
	// Cache configures the corrected-time cache in front of the chain; set
	// Cache.Now to the corrected clock.
	Cache CredentialsCacheOptions
	// HTTPClient carries the providers' own requests (STS, SSO, IMDS, the
	// ECS endpoint). Give it a transport whose tls.Config.Time is the
	// corrected clock, or a host clock years off fails every HTTPS
	// refresh. nil: the SDK's default client.
	HTTPClient aws.HTTPClient
	// LoadOptions are more options for config.LoadDefaultConfig.
	LoadOptions []func(*config.LoadOptions) error
}

// LoadCredentials resolves the proxy's own credentials through the standard
// AWS chain (environment, shared config profile, web identity, ECS, IMDS)
// with config.LoadDefaultConfig, behind a CredentialsCache that judges
// expiry by o.Cache.Now. It does not retrieve credentials: the first
// Retrieve does. The string describes the provider for logs and for
// CredentialsError.
//
// The SDK still signs its own STS calls (AssumeRole) with the host clock;
// its clock-skew retry (aws/retry, which learns the offset from the
// server's Date on a skew error and signs again) recovers those.
func LoadCredentials(ctx context.Context, o CredentialsOptions) (*CredentialsCache, string, error) {
	opts := o.LoadOptions
	if o.HTTPClient != nil {
		opts = append([]func(*config.LoadOptions) error{config.WithHTTPClient(o.HTTPClient)}, opts...)
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("signer: load AWS config: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, "", errors.New("signer: the AWS config resolved no credentials provider")
	}
	if o.Cache.ExpiryWindowJitterFrac == 0 && o.Cache.ExpiryWindow >= 0 {
		o.Cache.ExpiryWindowJitterFrac = 0.2
	}
	return NewCredentialsCache(cfg.Credentials, o.Cache), describeProvider(cfg.Credentials), nil
}

// describeProvider names the kind of credentials provider p is.
func describeProvider(p aws.CredentialsProvider) string {
	kinds := []struct {
		target aws.CredentialsProvider
		name   string
	}{
		{credentials.StaticCredentialsProvider{}, "static credentials (environment or profile)"},
		{(*stscreds.WebIdentityRoleProvider)(nil), "web identity role"},
		{(*stscreds.AssumeRoleProvider)(nil), "assumed role"},
		{(*ssocreds.Provider)(nil), "IAM Identity Center (SSO)"},
		{(*processcreds.Provider)(nil), "credential process"},
		{(*endpointcreds.Provider)(nil), "container credentials endpoint"},
		{(*ec2rolecreds.Provider)(nil), "EC2 instance profile (IMDS)"},
	}
	for _, k := range kinds {
		if aws.IsCredentialsProvider(p, k.target) {
			return k.name
		}
	}
	return fmt.Sprintf("credentials provider %T", p)
}
