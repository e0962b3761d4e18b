package signer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// credentialsExpiryWindow is how long before expiry cached credentials are
// refreshed, so a signature never carries a token about to die.
const credentialsExpiryWindow = 5 * time.Minute

// LoadCredentials resolves the proxy's own credentials through the standard
// AWS chain (environment, shared config profile, web identity, ECS, IMDS)
// with config.LoadDefaultConfig, wrapped in an aws.CredentialsCache that
// refreshes five minutes before expiry. It does not retrieve credentials:
// the first Retrieve does. The string describes the provider for logs and
// for CredentialsError.
func LoadCredentials(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.CredentialsProvider, string, error) {
	opts := append([]func(*config.LoadOptions) error{
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = credentialsExpiryWindow
			o.ExpiryWindowJitterFrac = 0.2
		}),
	}, optFns...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("signer: load AWS config: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, "", errors.New("signer: the AWS config resolved no credentials provider")
	}
	provider := cfg.Credentials
	if _, ok := provider.(*aws.CredentialsCache); !ok {
		provider = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = credentialsExpiryWindow
			o.ExpiryWindowJitterFrac = 0.2
		})
	}
	return provider, describeProvider(provider), nil
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
