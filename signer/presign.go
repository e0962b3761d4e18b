package signer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Presign returns a presigned URL for req (method, absolute URL, host and
// any headers the holder of the URL must send), signed at t with the
// proxy's credentials and valid for expires. The scope comes from the host.
// S3 URLs use S3 path escaping and UNSIGNED-PAYLOAD; other services sign
// an empty payload. The credentials used are returned so that callers can
// report when a temporary session ends.
//
// A URL never outlives the credentials that signed it: when the
// credentials expire before t+expires, Presign fails rather than hand out
// a URL that dies early.
func (s *Signer) Presign(ctx context.Context, req *http.Request, t time.Time, expires time.Duration) (signedURL string, creds aws.Credentials, err error) {
	switch {
	case req == nil || req.URL == nil:
		return "", aws.Credentials{}, errors.New("signer: presign: no request")
	case t.IsZero():
		return "", aws.Credentials{}, errors.New("signer: presign: zero signing time")
	case expires < time.Second || expires > maxPresignExpires:
		return "", aws.Credentials{}, fmt.Errorf("signer: presign: expiry %s outside 1s..7 days", expires)
	case expires%time.Second != 0:
		return "", aws.Credentials{}, fmt.Errorf("signer: presign: expiry %s is not a whole number of seconds", expires)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	sc, err := ScopeFromHost(host)
	if err != nil {
		return "", aws.Credentials{}, fmt.Errorf("signer: presign: %w", err)
	}
	payloadHash := unsignedPayload
	if !sc.S3 {
		if req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0 {
			return "", aws.Credentials{}, errors.New("signer: presign: a presigned non-S3 request cannot carry a body")
		}
		payloadHash = emptySHA256
	}
	creds, err = s.Credentials(ctx)
	if err != nil {
		return "", aws.Credentials{}, err
	}
	if creds.CanExpire && !creds.Expires.IsZero() && creds.Expires.Before(t.Add(expires)) {
		return "", creds, fmt.Errorf("signer: presign: credentials from %s expire at %s, before the URL would (%s); use a shorter expiry or longer-lived credentials",
			s.providerName(), creds.Expires.UTC().Format(time.RFC3339), t.Add(expires).UTC().Format(time.RFC3339))
	}

	r := req.Clone(ctx)
	r.Host = host
	if r.URL.Scheme == "" {
		r.URL.Scheme = "https"
	}
	if r.URL.Host == "" {
		r.URL.Host = host
	}
	q := r.URL.Query()
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	r.URL.RawQuery = canonicalQuery(q)
	optFn := signOptsOther
	if sc.S3 {
		optFn = signOptsS3
	} else if p := wirePath(r.URL); normalizePath(p) != p {
		r.URL.Opaque = "//" + host + normalizePath(p)
	}
	u, _, err := s.v4.PresignHTTP(ctx, creds, r, payloadHash, sc.Service, sc.Region, t, optFn)
	if err != nil {
		return "", creds, fmt.Errorf("signer: presign %s URL: %w", sc.Service, err)
	}
	return u, creds, nil
}
