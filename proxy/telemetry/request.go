package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// APIGatewayObserver is an optional interface of the RequestObserver that
// Telemetry.Start returns. For an execute-api request the proxy should call
// APIGatewayFailure, before End, with the API Gateway failure mode of the
// answer (awserrors.ClassifyAPIGateway(status, body): "explicit_deny",
// "implicit_deny", "unauthorized", "authorizer_or_config_error",
// "integration_error", "integration_timeout"); "" means none.
type APIGatewayObserver interface {
	APIGatewayFailure(mode string)
}

var (
	_ proxy.RequestObserver = (*requestObserver)(nil)
	_ APIGatewayObserver    = (*requestObserver)(nil)
)

// Outcomes of skewproxy_requests_total other than a failure class.
const (
	OutcomeOK          = "ok"
	OutcomeClientError = "client_error"
	OutcomeServerError = "server_error"
	OutcomeError       = "error" // no answer at all (transport error)
)

// requestObserver follows one request. The proxy calls its methods in
// order, but the mutex keeps a misbehaving caller from racing.
type requestObserver struct {
	t    *Telemetry
	ctx  context.Context
	span trace.Span

	// maxAge is the client-signature age past which the request would have
	// failed without skewproxy: SignatureAgeWarning, or X-Amz-Expires for a
	// presigned URL (0: unknown, never warn).
	maxAge time.Duration
	// presigned is true for a presigned URL (X-Amz-Signature in the query).
	presigned bool

	mu         sync.Mutex
	service    string // SDK service id
	signing    string // signing name, e.g. "execute-api"
	retryCause awserrors.Failure
	apigw      string
	ended      bool
}

// Classified names the span after the service and operation and records
// where the request goes and how old the client's own signature was.
func (r *requestObserver) Classified(info proxy.RequestInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.service = ServiceID(info.Service)
	r.signing = info.Service
	name := r.service
	attrs := []attribute.KeyValue{KeyRPCService.String(r.service)}
	if info.Operation != "" {
		name += "." + info.Operation
		attrs = append(attrs, KeyRPCMethod.String(info.Operation))
	}
	if info.Region != "" {
		attrs = append(attrs, KeyCloudRegion.String(info.Region))
	}
	if v := info.ClientSignatureVersion; v != "" {
		attrs = append(attrs, KeyClientSignatureVersion.String(v))
		r.t.upgrades.Add(r.ctx, 1, metric.WithAttributes(attribute.String("signature_version", v)))
	}
	if info.ClientSigned {
		attrs = append(attrs, KeyClientSignatureAgeMS.Float64(ms(info.ClientSignatureAge)))
		if age := info.ClientSignatureAge; r.maxAge > 0 && (age > r.maxAge || age < -SignatureAgeWarning) {
			msg := "this request would have failed without skewproxy"
			if r.presigned {
				// Presigned URLs pass through unchanged: nothing rescues them.
				msg = "presigned URL is past its X-Amz-Expires (or signed ahead): AWS will refuse it; skewproxy does not re-sign presigned URLs"
			}
			r.t.logger.WarnContext(r.ctx, msg,
				slog.String("service", r.service),
				slog.String("operation", info.Operation),
				slog.String("host", info.Host),
				slog.Duration("client_signature_age", age.Round(time.Millisecond)),
				slog.String("client_clock", clientClock(age)))
		}
	}
	r.span.SetName(name)
	r.span.SetAttributes(attrs...)
}

// maxSignatureAge is how old the client's signature of req may be before AWS
// refuses it: X-Amz-Expires for a presigned URL (0 if unreadable), else
// SignatureAgeWarning. presigned is isPresigned(req).
func maxSignatureAge(req *http.Request, presigned bool) time.Duration {
	if !presigned {
		return SignatureAgeWarning
	}
	q := req.URL.Query()
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// clientClock says which way a client's signature age points.
func clientClock(age time.Duration) string {
	if age < 0 {
		return "ahead"
	}
	return "behind or queued"
}

// Queued marks the start of a wait in the Lambda admission queue.
func (r *requestObserver) Queued() {
	r.span.AddEvent(EventQueued, r.t.timestamp())
}

// Dequeued marks the end of the wait and records its length.
func (r *requestObserver) Dequeued(waited time.Duration) {
	r.t.queueWait.Record(r.ctx, waited.Seconds())
	if !r.span.IsRecording() {
		return
	}
	age := KeyQueueAgeMS.Float64(ms(waited))
	r.span.AddEvent(EventDequeued, trace.WithAttributes(age), r.t.timestamp())
	r.span.SetAttributes(age)
}

// Signed records the signing time of an attempt and the clock status it was
// read under (a retry may sign under a newly corrected clock).
func (r *requestObserver) Signed(at time.Time) {
	if !r.span.IsRecording() {
		return
	}
	r.span.AddEvent(EventSigned, trace.WithAttributes(
		KeySigningTime.String(at.UTC().Format(time.RFC3339Nano))), trace.WithTimestamp(at))
	r.span.SetAttributes(r.t.clockAttrs()...)
}

// Retried records a re-sign and resend after a skew failure.
func (r *requestObserver) Retried(failure awserrors.Failure) {
	r.mu.Lock()
	r.retryCause = failure
	r.mu.Unlock()
	r.span.AddEvent(EventRetried, trace.WithAttributes(KeyFailure.String(string(failure))), r.t.timestamp())
	if failure != awserrors.FailureNone {
		r.t.failures.Add(r.ctx, 1, metric.WithAttributes(attribute.String("failure", string(failure))))
	}
}

// APIGatewayFailure records the API Gateway failure mode of the answer.
func (r *requestObserver) APIGatewayFailure(mode string) {
	r.mu.Lock()
	r.apigw = mode
	r.mu.Unlock()
	if mode != "" {
		r.span.SetAttributes(KeyAPIGatewayFailure.String(mode))
	}
}

// End records the final answer, counts the request and ends the span. Calls
// after the first are ignored.
func (r *requestObserver) End(status int, h http.Header, c awserrors.Classification, err error) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	service, retryCause, apigw := r.service, r.retryCause, r.apigw
	r.mu.Unlock()

	attrs := []attribute.KeyValue{KeyRetried.Bool(retryCause != awserrors.FailureNone)}
	if status > 0 {
		attrs = append(attrs, KeyHTTPResponseStatus.Int(status))
	}
	if id := requestID(c, h); id != "" {
		attrs = append(attrs, KeyAWSRequestID.String(id))
	}
	failure := c.Failure
	if failure == awserrors.FailureNone {
		failure = retryCause
	}
	if failure != awserrors.FailureNone {
		attrs = append(attrs, KeyFailure.String(string(failure)))
	}
	if c.Failure != awserrors.FailureNone {
		r.t.failures.Add(r.ctx, 1, metric.WithAttributes(attribute.String("failure", string(c.Failure))))
	}
	if err != nil || status >= 400 || c.Failure != awserrors.FailureNone {
		errType := errorType(status, c.Failure, apigw, err)
		attrs = append(attrs, KeyErrorType.String(errType))
		r.span.SetStatus(codes.Error, statusDescription(c, err, errType))
	}
	r.span.SetAttributes(attrs...)
	r.t.requests.Add(r.ctx, 1, metric.WithAttributes(
		attribute.String("service", service),
		attribute.String("outcome", outcome(status, c.Failure, err))))
	r.span.End(r.t.timestamp())
}

// requestID is the AWS request id of the answer: from the classifier, else
// the headers AWS services use.
func requestID(c awserrors.Classification, h http.Header) string {
	if c.RequestID != "" {
		return c.RequestID
	}
	for _, k := range []string{"X-Amzn-Requestid", "X-Amz-Request-Id", "X-Amzn-Request-Id"} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// errorType is the low-cardinality error.type of a failed request: the
// failure class, else the API Gateway failure mode, else the status code
// (4xx, 5xx), else the Go type of the error.
func errorType(status int, f awserrors.Failure, apigw string, err error) string {
	switch {
	case f != awserrors.FailureNone:
		return string(f)
	case apigw != "":
		return apigw
	case status >= 400:
		return strconv.Itoa(status)
	case err != nil:
		if t := fmt.Sprintf("%T", meaningfulError(err)); t != "*errors.errorString" {
			return t
		}
	}
	return errorTypeOther
}

// errorTypeOther is the semantic conventions' error.type for an error with
// no better name.
const errorTypeOther = "_OTHER"

// statusDescription says why the span failed without quoting anything that
// could carry a secret: AWS error codes only, and transport errors stripped
// of the request URL (which may hold a presigned query).
func statusDescription(c awserrors.Classification, err error, errType string) string {
	if c.Code != "" {
		return c.Code
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Op + ": " + ue.Err.Error()
		}
		return err.Error()
	}
	return errType
}

// meaningfulError skips the wrappers that say nothing about the kind of
// failure (fmt.Errorf's %w wrapper, *url.Error) and returns the first error
// of the chain that does: *net.OpError, context.deadlineExceededError, ...
func meaningfulError(err error) error {
	for {
		var next error
		switch e := err.(type) {
		case *url.Error:
			next = e.Err
		case interface{ Unwrap() error }:
			if fmt.Sprintf("%T", err) == "*fmt.wrapError" {
				next = e.Unwrap()
			}
		}
		if next == nil {
			return err
		}
		err = next
	}
}

// outcome is the outcome label of skewproxy_requests_total.
func outcome(status int, f awserrors.Failure, err error) string {
	switch {
	case f != awserrors.FailureNone:
		return string(f)
	case status == 0 && err != nil:
		return OutcomeError
	case status >= 500:
		return OutcomeServerError
	case status >= 400:
		return OutcomeClientError
	default:
		return OutcomeOK
	}
}

// isPresigned reports whether req carries a presigned query.
func isPresigned(req *http.Request) bool {
	if req.URL == nil {
		return false
	}
	q := req.URL.Query()
	return q.Get("X-Amz-Signature") != "" || q.Get("X-Amz-Algorithm") != ""
}
