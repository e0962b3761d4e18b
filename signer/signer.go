package signer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Authorization is a parsed SigV4 Authorization header.
type Authorization struct {
	AccessKeyID   string
	Date          string // YYYYMMDD from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lower-case, as the client listed them
	Signature     string
}

// PresignedQuery is a parsed SigV4 presigned query string.
type PresignedQuery struct {
	Authorization
	Time    time.Time     // X-Amz-Date
	Expires time.Duration // X-Amz-Expires
}

// Options configures a Signer.
type Options struct {
	// MaxBufferedBody caps how much of a body is buffered to hash it
	// (default 64 MiB). Larger bodies get a 413 RequestError.
	MaxBufferedBody int64
	// Logger receives debug detail; nil means discard.
	Logger *slog.Logger
}

// Signer re-signs requests with the proxy's credentials. It is safe for
// concurrent use and holds no per-request state.
type Signer struct {
	creds aws.CredentialsProvider
	opts  Options
}

// New returns a Signer that signs with credentials from provider.
func New(provider aws.CredentialsProvider, opts Options) *Signer {
	return &Signer{creds: provider, opts: opts}
}

// Prepare inspects req (an intercepted request bound for host req.Host) and
// returns a Prepared request ready to be signed. It strips nothing from req
// itself. Errors are *RequestError.
func (s *Signer) Prepare(req *http.Request) (*Prepared, error) {
	return nil, errors.New("signer: Prepare not implemented yet")
}

// Credentials returns the proxy's current credentials, or a
// *CredentialsError naming the provider when they cannot be retrieved.
func (s *Signer) Credentials(ctx context.Context) (aws.Credentials, error) {
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, &CredentialsError{Provider: "credential chain", Err: err}
	}
	return c, nil
}
