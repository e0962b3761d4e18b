package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer/awserrors"
	"github.com/skewproxy/skewproxy/timesource"
)

func TestEventAttributes(t *testing.T) {
	h := newHarness(t)
	_, o := h.tel.Start(context.Background(), lambdaInvoke(t))
	o.Classified(proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke"})
	o.Queued()
	o.Dequeued(1500 * time.Millisecond)
	signedAt := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 3600))
	o.Signed(signedAt)
	o.Retried(awserrors.FailureRequestTimeTooSkewed)
	o.End(200, nil, awserrors.Classification{}, nil)

	events := h.onlySpan(t).Events()
	want := []struct {
		name  string
		attrs map[string]any
	}{
		{"queued", map[string]any{}},
		{"dequeued", map[string]any{"skewproxy.queue.age_ms": float64(1500)}},
		{"signed", map[string]any{"skewproxy.signing_time": "2026-03-14T14:09:26.535897932Z"}},
		{"retried", map[string]any{"skewproxy.failure": "request_time_too_skewed"}},
	}
	if len(events) != len(want) {
		t.Fatalf("events = %v, want %d", eventNames(h.onlySpan(t)), len(want))
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) {
			if events[i].Name != w.name {
				t.Fatalf("event %d = %q, want %q", i, events[i].Name, w.name)
			}
			assertAttrs(t, attrMap(events[i].Attributes), w.attrs)
		})
	}
}

// TestClockAttributesFollowRetry: a skew failure feeds the server's time to
// the clock, and the retry is signed under the corrected status; the span
// reports the status the final attempt was signed under.
func TestClockAttributesFollowRetry(t *testing.T) {
	h := newHarness(t)
	h.clock.set(timesource.Status{Source: "host", Offset: 0})
	_, o := h.tel.Start(context.Background(), lambdaInvoke(t))
	o.Signed(trueNow)
	h.clock.set(timesource.Status{Synced: true, Source: "http-date:lambda.us-east-1.amazonaws.com",
		Offset: 3 * time.Hour, Uncertainty: time.Second})
	o.Retried(awserrors.FailureSignatureNotYetCurrent)
	o.Signed(trueNow)
	o.End(200, nil, awserrors.Classification{}, nil)

	got := attrMap(h.onlySpan(t).Attributes())
	for k, w := range map[string]any{
		"skewproxy.clock.offset_ms":      float64(3 * 3600 * 1000),
		"skewproxy.clock.source":         "http-date:lambda.us-east-1.amazonaws.com",
		"skewproxy.clock.uncertainty_ms": float64(1000),
		"skewproxy.failure":              "signature_not_yet_current",
		"skewproxy.retried":              true,
	} {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
}

func TestTraceparentContinued(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
	)
	tests := []struct {
		name        string
		traceparent string
		wantTrace   string // "" = a new trace
		wantParent  string
	}{
		{"valid traceparent", "00-" + traceID + "-" + parent + "-01", traceID, parent},
		{"no traceparent", "", "", ""},
		{"malformed traceparent", "00-xyz-" + parent + "-01", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			req := lambdaInvoke(t)
			if tc.traceparent != "" {
				req.Header.Set("Traceparent", tc.traceparent)
			}
			ctx, o := h.tel.Start(context.Background(), req)
			if !trace.SpanContextFromContext(ctx).IsValid() {
				t.Error("returned context carries no span")
			}
			o.End(200, nil, awserrors.Classification{}, nil)
			s := h.onlySpan(t)
			gotTrace := s.SpanContext().TraceID().String()
			if tc.wantTrace != "" && gotTrace != tc.wantTrace {
				t.Errorf("trace id = %s, want %s", gotTrace, tc.wantTrace)
			}
			if tc.wantTrace == "" && gotTrace == traceID {
				t.Errorf("trace id %s continued from an invalid traceparent", gotTrace)
			}
			gotParent := s.Parent().SpanID()
			if tc.wantParent != "" && (gotParent.String() != tc.wantParent || !s.Parent().IsRemote()) {
				t.Errorf("parent = %s (remote %v), want remote %s", gotParent, s.Parent().IsRemote(), tc.wantParent)
			}
			if tc.wantParent == "" && s.Parent().IsValid() {
				t.Errorf("span has parent %s, want a root span", gotParent)
			}
		})
	}
}

// TestQueueTimeoutRefusal: a request the limiter refuses never signs; the
// span still ends with the failure class and the 429 it was answered with.
func TestQueueTimeoutRefusal(t *testing.T) {
	h := newHarness(t)
	_, o := h.tel.Start(context.Background(), lambdaInvoke(t))
	o.Classified(proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke"})
	o.Queued()
	o.Dequeued(4 * time.Minute)
	o.End(http.StatusTooManyRequests, nil, awserrors.Classification{Failure: awserrors.FailureQueueTimeout, Code: "TooManyRequestsException"}, nil)
	o.End(200, nil, awserrors.Classification{}, nil) // ignored: already ended

	s := h.onlySpan(t)
	got := attrMap(s.Attributes())
	if got["skewproxy.failure"] != "queue_timeout" || got["error.type"] != "queue_timeout" ||
		got["http.response.status_code"] != int64(429) || got["skewproxy.queue.age_ms"] != float64(240000) {
		t.Errorf("attributes = %v", got)
	}
	if s.Status().Code != codes.Error || s.Status().Description != "TooManyRequestsException" {
		t.Errorf("status = %v %q", s.Status().Code, s.Status().Description)
	}
}

// apiGatewayModes are API Gateway's default answers with a Lambda
// authorizer and a proxy integration, as a local endpoint serves them.
var apiGatewayModes = []struct {
	mode   string
	status int
	body   string
}{
	{"explicit_deny", 403, `{"Message":"User is not authorized to access this resource with an explicit deny"}`},
	{"implicit_deny", 403, `{"Message":"User is not authorized to access this resource"}`},
	{"unauthorized", 401, `{"message":"Unauthorized"}`},
	{"authorizer_or_config_error", 500, `{"message": null}`},
	{"integration_error", 502, `{"message": "Internal server error"}`},
	{"integration_timeout", 504, `{"message": "Endpoint request timed out"}`},
}

func TestAPIGatewayFailureModes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range apiGatewayModes {
			if r.URL.Path == "/prod/"+m.mode {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Amzn-Requestid", "apigw-"+m.mode)
				w.Header().Set("X-Amzn-Errortype", "AccessDeniedException")
				w.WriteHeader(m.status)
				_, _ = io.WriteString(w, m.body)
				return
			}
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()

	for _, m := range apiGatewayModes {
		t.Run(m.mode, func(t *testing.T) {
			h := newHarness(t)
			req := httptest.NewRequest(http.MethodGet, "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/"+m.mode, nil)
			ctx, o := h.tel.Start(context.Background(), req)
			o.Classified(proxy.RequestInfo{Service: "execute-api", Region: "us-east-1", Host: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"})
			o.Signed(trueNow)

			up, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/prod/"+m.mode, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(up)
			if err != nil {
				t.Fatalf("upstream: %v", err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			o.(APIGatewayObserver).APIGatewayFailure(awserrors.ClassifyAPIGateway(resp.StatusCode, body))
			o.End(resp.StatusCode, resp.Header, awserrors.Classification{}, nil)

			s := h.onlySpan(t)
			if s.Name() != "execute-api" {
				t.Errorf("span name = %q", s.Name())
			}
			want := merge(baseAttrs("execute-api", "", "us-east-1", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "GET"), map[string]any{
				"http.response.status_code": int64(m.status),
				"aws.request_id":            "apigw-" + m.mode,
				"skewproxy.apigw.failure":   m.mode,
				"skewproxy.retried":         false,
				"error.type":                m.mode,
			})
			assertAttrs(t, attrMap(s.Attributes()), want)
			if s.Status().Code != codes.Error {
				t.Errorf("status = %v, want error", s.Status().Code)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		name    string
		status  int
		failure awserrors.Failure
		apigw   string
		err     error
		want    string
	}{
		{"failure class wins", 403, awserrors.FailureSignatureMismatch, "", nil, "signature_mismatch"},
		{"api gateway mode", 504, "", "integration_timeout", nil, "integration_timeout"},
		{"plain status", 404, "", "", nil, "404"},
		{"status wins over a local-answer error", 502, "", "", errors.New("502 Bad Gateway"), "502"},
		{"anonymous error", 200, "", "", errors.New("client went away"), "_OTHER"},
		{"deadline", 0, "", "", context.DeadlineExceeded, "context.deadlineExceededError"},
		{"wrapped url error around dial error", 0, "", "", fmt.Errorf("upstream: %w",
			&url.Error{Op: "Post", URL: "https://s3.amazonaws.com/b/k?X-Amz-Signature=abc", Err: dialErr}), "*net.OpError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorType(tc.status, tc.failure, tc.apigw, tc.err); got != tc.want {
				t.Errorf("errorType = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestErrorDescriptionHidesURL: a transport error's URL may carry a
// presigned query (signature, credential, session token); the span status
// must not quote it.
func TestErrorDescriptionHidesURL(t *testing.T) {
	h := newHarness(t)
	_, o := h.tel.Start(context.Background(), lambdaInvoke(t))
	secretURL := "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDEXAMPLE%2F20260314&X-Amz-Signature=deadbeef&X-Amz-Security-Token=FQoGZXIvYXdzE"
	o.End(0, nil, awserrors.Classification{}, fmt.Errorf("upstream: %w", &url.Error{Op: "Get", URL: secretURL, Err: io.ErrUnexpectedEOF}))
	s := h.onlySpan(t)
	desc := s.Status().Description
	for _, secret := range []string{"AKIDEXAMPLE", "deadbeef", "FQoGZXIvYXdzE", "X-Amz"} {
		if strings.Contains(desc, secret) {
			t.Errorf("status description %q leaks %q", desc, secret)
		}
	}
	if desc != "Get: unexpected EOF" {
		t.Errorf("status description = %q", desc)
	}
}
