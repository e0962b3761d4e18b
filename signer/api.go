package signer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// Prepared is a request that has been inspected and is ready to be signed,
// possibly several times (a retry after a skew error signs again).
// Fields are read-only after Prepare returns.
type Prepared struct {
	// Service and Region form the signing scope (e.g. "lambda", "us-east-1").
	Service, Region string
	// ClientAuth is the client's parsed Authorization header, nil if the
	// request arrived unsigned or presigned.
	ClientAuth *Authorization
	// ClientPresign is the client's parsed presigned query, nil otherwise.
	ClientPresign *PresignedQuery
	// ClientTime is the client's own X-Amz-Date, zero if it sent none.
	ClientTime time.Time
	// PayloadHash is the value of X-Amz-Content-Sha256 that will be signed.
	PayloadHash string
	// Streaming is the aws-chunked mode of the body ("" when not streaming).
	Streaming StreamingMode
	// Replayable is true when Sign can be called again after the body was
	// sent (the body is buffered or the request has GetBody).
	Replayable bool
	// ClientSignatureVersion names the pre-SigV4 signature the request
	// arrived with, which Prepare removed: SigV2S3Header ("s3v2"),
	// SigV2S3Query ("s3v2-query"), SigV2Query ("2"), SigV1Query ("1") or
	// SigV0Query ("0"); "" when the client signed with SigV4 or not at all.
	// Such a request is signed like an unsigned one (ClientAuth and
	// ClientPresign are nil; the scope comes from the host); ClientTime is
	// its Date, x-amz-date or Timestamp when it had one.
	ClientSignatureVersion string

	// createSession marks an S3 Express CreateSession call the proxy
	// signs: ObserveAnswer keeps the session of its answer.
	createSession bool

	// legacyExpires is the Expires of S3 query string authentication
	// (SigV2S3Query): Sign refuses to sign after it. Zero otherwise.
	legacyExpires time.Time

	// sign signs a presigned (passed-through) request; st a re-signed one.
	sign func(ctx context.Context, t time.Time) (*http.Request, error)
	st   prepState
}

// Sign returns the outgoing request signed at t with the proxy's
// credentials (or, for an S3 Express request carrying a session token the
// signer kept, with that session's credentials while the session is
// valid at t; once it is not, the client's request is sent as it came).
// The returned request has a fresh body reader; the caller
// sends it as is and must not change any signed header afterwards. A
// presigned V2 URL whose Expires is before t gets a 403 *RequestError
// (AccessDenied, "Request has expired").
func (p *Prepared) Sign(ctx context.Context, t time.Time) (*http.Request, error) {
	if !p.legacyExpires.IsZero() && t.After(p.legacyExpires) {
		return nil, legacyExpired(p.legacyExpires, t)
	}
	switch {
	case p.sign != nil:
		return p.sign(ctx, t)
	case p.st.s != nil:
		return p.st.sign(ctx, t)
	}
	return nil, errors.New("signer: Prepared was not built by Signer.Prepare")
}

// StreamingMode names the aws-chunked payload modes of
// X-Amz-Content-Sha256.
type StreamingMode string

// The X-Amz-Content-Sha256 streaming markers.
const (
	StreamingUnsignedTrailer StreamingMode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	StreamingSigned          StreamingMode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingSignedTrailer   StreamingMode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	StreamingECDSA           StreamingMode = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
	StreamingECDSATrailer    StreamingMode = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
)

// RequestError is a problem with the client's request that the proxy
// answers itself. Status is the HTTP status to send (400, 403, 413, 501, 503);
// Message is safe to show to the client; Err carries the detail for logs.
// Failure classifies the refusal when it is one of the failures the proxy
// counts (FailurePresignedExpired for an expired presigned V2 URL), else "".
type RequestError struct {
	Status  int
	Code    string
	Message string
	Err     error
	Failure awserrors.Failure
}

func (e *RequestError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *RequestError) Unwrap() error { return e.Err }

// CredentialsError reports that the proxy's own credentials could not be
// retrieved or refreshed. Provider names the credential source.
type CredentialsError struct {
	Provider string
	Err      error
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("credentials from %s unavailable: %v", e.Provider, e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }
