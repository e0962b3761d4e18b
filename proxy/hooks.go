package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// Admitter holds an intercepted request until it may be sent upstream (the
// Lambda invoke limiter implements it). Admit blocks until the request is
// admitted, ctx is done, or the admitter refuses it.
//
// On success it returns a release function that the proxy calls exactly once
// when the upstream exchange is over (with the upstream status code, 0 when
// the request never got an answer, and the answer's headers), and how long
// the request waited. On refusal it returns an error; a Refusal renders
// its own answer to the client.
type Admitter interface {
	Admit(ctx context.Context, req *http.Request) (release func(status int, h http.Header), waited time.Duration, err error)
}

// Refusal is an Admitter error that knows how to answer the client (for
// example Lambda's 429 TooManyRequestsException).
type Refusal interface {
	error
	// Answer is the complete answer to the client: its status, headers
	// (with Content-Length) and body.
	Answer() (status int, header http.Header, body []byte)
	// Failure is the skewproxy.failure class of the refusal.
	Failure() awserrors.Failure
}

// TimeBootstrapper learns the time from the upstream server itself while no
// time source has answered (timesource.Bootstrapper implements it): with a
// host clock years off, upstream TLS cannot be verified and the signature
// cannot be dated until something says what time it is.
type TimeBootstrapper interface {
	// Needed reports whether the clock still waits for its first source;
	// the proxy asks on every intercepted request, so it must be cheap.
	Needed() bool
	// Bootstrap learns the time from serverName at addr (host:port, the
	// address the request itself will be sent to), sending nothing signed.
	// It returns when done or when ctx ends; failures are its to log.
	Bootstrap(ctx context.Context, serverName, addr string)
}

// Observer follows one proxied request for telemetry. The proxy calls
// Start once per intercepted request; the returned RequestObserver's methods
// are called in order as the request moves through the pipeline.
type Observer interface {
	Start(ctx context.Context, req *http.Request) (context.Context, RequestObserver)
}

// RequestObserver receives the events of one request. Implementations must
// tolerate any method being skipped (a request refused early never signs).
type RequestObserver interface {
	// Classified reports the request's service, region and operation.
	Classified(info RequestInfo)
	// Queued and Dequeued bracket a wait in the Admitter.
	Queued()
	Dequeued(waited time.Duration)
	// Signed reports the signing time (corrected clock) of an attempt.
	Signed(at time.Time)
	// Retried reports a re-sign and resend after a skew failure.
	Retried(failure awserrors.Failure)
	// End reports the final answer (status 0 and err set when there was none).
	End(status int, h http.Header, c awserrors.Classification, err error)
}

// RequestInfo describes an intercepted request.
type RequestInfo struct {
	Service   string // signing name, e.g. "lambda", "s3"
	Region    string
	Operation string // e.g. "Invoke" where derivable
	Host      string
	// ClientSignatureAge is true now minus the client's X-Amz-Date (0 if unsigned).
	ClientSignatureAge time.Duration
	ClientSigned       bool
	// ClientSignatureVersion names the pre-SigV4 signature the request
	// arrived with and the proxy upgraded to SigV4 ("s3v2", "s3v2-query",
	// "2", "1", "0"; see signer.Prepared); "" for SigV4 or unsigned.
	ClientSignatureVersion string
}

// APIGatewayObserver is an optional interface of a RequestObserver: for
// execute-api answers the proxy reports API Gateway's own failure mode
// (awserrors.ClassifyAPIGateway: explicit_deny, implicit_deny, ...).
type APIGatewayObserver interface {
	APIGatewayFailure(mode string)
}
