package signer

import (
	"net/http"
	"time"
)

// Failure is a class of AWS failure, the value of the skewproxy.failure span
// attribute.
type Failure string

// The failure classes.
const (
	FailureNone                   Failure = ""
	FailureSignatureExpired       Failure = "signature_expired"
	FailureSignatureNotYetCurrent Failure = "signature_not_yet_current"
	FailureRequestTimeTooSkewed   Failure = "request_time_too_skewed"
	FailurePresignedExpired       Failure = "presigned_expired"
	FailureExpiredToken           Failure = "expired_token"
	FailureSignatureMismatch      Failure = "signature_mismatch"
	FailureThrottled              Failure = "throttled"
	FailureQueueTimeout           Failure = "queue_timeout"
)

// IsSkew reports whether f is a clock problem that re-signing with a
// corrected time fixes.
func (f Failure) IsSkew() bool {
	return f == FailureSignatureExpired || f == FailureSignatureNotYetCurrent || f == FailureRequestTimeTooSkewed
}

// Classification is what an AWS error answer says.
type Classification struct {
	Failure Failure
	// Code is the AWS error code (e.g. "InvalidSignatureException").
	Code string
	// Message is the AWS error message.
	Message string
	// ServerTime is the server's time when the answer carries it; zero otherwise.
	ServerTime time.Time
	// SigningTime is the request's signing time as the server quoted it; zero otherwise.
	SigningTime time.Time
	// RequestID is the AWS request id (x-amzn-RequestId, x-amz-request-id), if any.
	RequestID string
}

// Classify reads an AWS answer (status, headers, and up to the first few KiB
// of the body) and says which failure it is. A successful or unrecognised
// answer gives Failure == FailureNone.
func Classify(status int, h http.Header, body []byte) Classification {
	return Classification{}
}
