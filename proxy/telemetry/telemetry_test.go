package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer/awserrors"
	"github.com/skewproxy/skewproxy/timesource"
)

// fakeClock is a corrected clock with a fixed status.
type fakeClock struct {
	mu sync.Mutex
	st timesource.Status
}

func (c *fakeClock) Now() time.Time { return c.Status().CorrectedTime }
func (c *fakeClock) Status() timesource.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}
func (c *fakeClock) Observe(timesource.Observation) {}
func (c *fakeClock) set(st timesource.Status) {
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
}

var trueNow = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// skewedHost is the status of a host clock 20 minutes behind, corrected by NTP.
var skewedHost = timesource.Status{
	Synced:        true,
	Source:        "ntp://169.254.169.123",
	CorrectedTime: trueNow,
	Offset:        -20 * time.Minute,
	Uncertainty:   1500 * time.Microsecond,
	LastSync:      trueNow.Add(-time.Minute),
	Smeared:       true,
}

// harness is a Telemetry wired to in-memory span and metric readers.
type harness struct {
	tel    *Telemetry
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	clock  *fakeClock
	logs   *bytes.Buffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		spans:  tracetest.NewSpanRecorder(),
		reader: sdkmetric.NewManualReader(),
		clock:  &fakeClock{st: skewedHost},
		logs:   &bytes.Buffer{},
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	var inflight int64 = 3
	tel, err := New(Options{
		TracerProvider: tp,
		MeterProvider:  mp,
		Clock:          h.clock,
		LambdaInflight: func() int64 { return inflight },
		Logger:         slog.New(slog.NewTextHandler(h.logs, nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tel.Close() })
	h.tel = tel
	return h
}

// onlySpan returns the one ended span.
func (h *harness) onlySpan(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	ended := h.spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(ended))
	}
	return ended[0]
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func eventNames(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	return names
}

func lambdaInvoke(t *testing.T) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost,
		"https://lambda.us-east-1.amazonaws.com:443/2015-03-31/functions/thumbnail/invocations", strings.NewReader("{}"))
	req.Host = "lambda.us-east-1.amazonaws.com:443"
	return req
}

// baseAttrs are the attributes every classified request carries under the
// skewed-host clock.
func baseAttrs(service, method, region, host, httpMethod string) map[string]any {
	m := map[string]any{
		"rpc.system":                     "aws-api",
		"rpc.service":                    service,
		"cloud.region":                   region,
		"server.address":                 host,
		"http.request.method":            httpMethod,
		"skewproxy.clock.offset_ms":      float64(-1200000),
		"skewproxy.clock.source":         "ntp://169.254.169.123",
		"skewproxy.clock.uncertainty_ms": 1.5,
	}
	if method != "" {
		m["rpc.method"] = method
	}
	return m
}

func merge(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func TestRequestSpans(t *testing.T) {
	signedAt := trueNow.Add(2 * time.Millisecond)
	lambdaAttrs := baseAttrs("Lambda", "Invoke", "us-east-1", "lambda.us-east-1.amazonaws.com", "POST")
	invokeInfo := proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke",
		Host: "lambda.us-east-1.amazonaws.com", ClientSigned: true, ClientSignatureAge: 20*time.Minute + 150*time.Millisecond}
	okHeader := http.Header{"X-Amzn-Requestid": {"0d4c2b1e-aaaa-bbbb-cccc-000000000001"}}

	tests := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		drive      func(o proxy.RequestObserver)
		wantName   string
		wantAttrs  map[string]any
		wantEvents []string
		wantError  bool
		wantWarn   bool
	}{
		{
			name: "skewed host succeeds",
			req:  lambdaInvoke,
			drive: func(o proxy.RequestObserver) {
				o.Classified(invokeInfo)
				o.Signed(signedAt)
				o.End(200, okHeader, awserrors.Classification{}, nil)
			},
			wantName: "Lambda.Invoke",
			wantAttrs: merge(lambdaAttrs, map[string]any{
				"http.response.status_code":         int64(200),
				"aws.request_id":                    "0d4c2b1e-aaaa-bbbb-cccc-000000000001",
				"skewproxy.client_signature.age_ms": float64(1200150),
				"skewproxy.retried":                 false,
			}),
			wantEvents: []string{"signed"},
			wantWarn:   true,
		},
		{
			name: "queued lambda invoke",
			req:  lambdaInvoke,
			drive: func(o proxy.RequestObserver) {
				info := invokeInfo
				info.ClientSignatureAge = 2 * time.Second
				o.Classified(info)
				o.Queued()
				o.Dequeued(90*time.Second + 250*time.Millisecond)
				o.Signed(signedAt)
				o.End(200, okHeader, awserrors.Classification{}, nil)
			},
			wantName: "Lambda.Invoke",
			wantAttrs: merge(lambdaAttrs, map[string]any{
				"http.response.status_code":         int64(200),
				"aws.request_id":                    "0d4c2b1e-aaaa-bbbb-cccc-000000000001",
				"skewproxy.client_signature.age_ms": float64(2000),
				"skewproxy.queue.age_ms":            float64(90250),
				"skewproxy.retried":                 false,
			}),
			wantEvents: []string{"queued", "dequeued", "signed"},
		},
		{
			name: "signature expired retried",
			req:  lambdaInvoke,
			drive: func(o proxy.RequestObserver) {
				o.Classified(invokeInfo)
				o.Signed(signedAt)
				o.Retried(awserrors.FailureSignatureExpired)
				o.Signed(signedAt.Add(300 * time.Millisecond))
				o.End(200, okHeader, awserrors.Classification{}, nil)
			},
			wantName: "Lambda.Invoke",
			wantAttrs: merge(lambdaAttrs, map[string]any{
				"http.response.status_code":         int64(200),
				"aws.request_id":                    "0d4c2b1e-aaaa-bbbb-cccc-000000000001",
				"skewproxy.client_signature.age_ms": float64(1200150),
				"skewproxy.failure":                 "signature_expired",
				"skewproxy.retried":                 true,
			}),
			wantEvents: []string{"signed", "retried", "signed"},
			wantWarn:   true,
		},
		{
			name: "throttled 429",
			req:  lambdaInvoke,
			drive: func(o proxy.RequestObserver) {
				info := invokeInfo
				info.ClientSignatureAge = 0
				o.Classified(info)
				o.Signed(signedAt)
				o.End(429, http.Header{"X-Amzn-Requestid": {"req-429"}}, awserrors.Classification{
					Failure: awserrors.FailureThrottled, Code: "TooManyRequestsException", Message: "Rate Exceeded.", RequestID: "req-429"}, nil)
			},
			wantName: "Lambda.Invoke",
			wantAttrs: merge(lambdaAttrs, map[string]any{
				"http.response.status_code":         int64(429),
				"aws.request_id":                    "req-429",
				"skewproxy.client_signature.age_ms": float64(0),
				"skewproxy.failure":                 "throttled",
				"skewproxy.retried":                 false,
				"error.type":                        "throttled",
			}),
			wantEvents: []string{"signed"},
			wantError:  true,
		},
		{
			name: "presigned URL expired",
			req: func(t *testing.T) *http.Request {
				req := httptest.NewRequest(http.MethodGet,
					"https://photos.s3.eu-west-1.amazonaws.com/cat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60", nil)
				return req
			},
			drive: func(o proxy.RequestObserver) {
				o.Classified(proxy.RequestInfo{Service: "s3", Region: "eu-west-1", Operation: "GetObject",
					Host: "photos.s3.eu-west-1.amazonaws.com", ClientSigned: true, ClientSignatureAge: 2 * time.Hour})
				o.Signed(signedAt)
				o.End(403, http.Header{"X-Amz-Request-Id": {"4442587FB7D0A2F9"}}, awserrors.Classification{
					Failure: awserrors.FailurePresignedExpired, Code: "AccessDenied", Message: "Request has expired"}, nil)
			},
			wantName: "S3.GetObject",
			wantAttrs: merge(baseAttrs("S3", "GetObject", "eu-west-1", "photos.s3.eu-west-1.amazonaws.com", "GET"), map[string]any{
				"http.response.status_code":         int64(403),
				"aws.request_id":                    "4442587FB7D0A2F9",
				"skewproxy.client_signature.age_ms": float64(7200000),
				"skewproxy.failure":                 "presigned_expired",
				"skewproxy.retried":                 false,
				"error.type":                        "presigned_expired",
			}),
			wantEvents: []string{"signed"},
			wantError:  true,
			wantWarn:   true,
		},
		{
			name: "presigned URL within its expiry does not warn",
			req: func(t *testing.T) *http.Request {
				return httptest.NewRequest(http.MethodGet,
					"https://photos.s3.eu-west-1.amazonaws.com/cat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=86400&X-Amz-Signature=00", nil)
			},
			drive: func(o proxy.RequestObserver) {
				o.Classified(proxy.RequestInfo{Service: "s3", Region: "eu-west-1", Operation: "GetObject",
					Host: "photos.s3.eu-west-1.amazonaws.com", ClientSigned: true, ClientSignatureAge: 2 * time.Hour})
				o.Signed(signedAt)
				o.End(200, nil, awserrors.Classification{}, nil)
			},
			wantName: "S3.GetObject",
			wantAttrs: merge(baseAttrs("S3", "GetObject", "eu-west-1", "photos.s3.eu-west-1.amazonaws.com", "GET"), map[string]any{
				"http.response.status_code":         int64(200),
				"skewproxy.client_signature.age_ms": float64(7200000),
				"skewproxy.retried":                 false,
			}),
			wantEvents: []string{"signed"},
		},
		{
			name: "client clock ahead warns",
			req:  lambdaInvoke,
			drive: func(o proxy.RequestObserver) {
				info := invokeInfo
				info.ClientSignatureAge = -10 * time.Minute
				o.Classified(info)
				o.End(200, nil, awserrors.Classification{}, nil)
			},
			wantName: "Lambda.Invoke",
			wantAttrs: merge(lambdaAttrs, map[string]any{
				"http.response.status_code":         int64(200),
				"skewproxy.client_signature.age_ms": float64(-600000),
				"skewproxy.retried":                 false,
			}),
			wantWarn: true,
		},
		{
			name: "transport error without answer",
			req: func(t *testing.T) *http.Request {
				return httptest.NewRequest(http.MethodPost, "https://sts.amazonaws.com/", nil)
			},
			drive: func(o proxy.RequestObserver) {
				o.Classified(proxy.RequestInfo{Service: "sts", Region: "us-east-1", Host: "sts.amazonaws.com"})
				o.Signed(signedAt)
				o.End(0, nil, awserrors.Classification{}, context.DeadlineExceeded)
			},
			wantName: "STS",
			wantAttrs: merge(baseAttrs("STS", "", "us-east-1", "sts.amazonaws.com", "POST"), map[string]any{
				"skewproxy.retried": false,
				"error.type":        "context.deadlineExceededError",
			}),
			wantEvents: []string{"signed"},
			wantError:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, o := h.tel.Start(context.Background(), tc.req(t))
			tc.drive(o)
			s := h.onlySpan(t)
			if s.Name() != tc.wantName {
				t.Errorf("span name = %q, want %q", s.Name(), tc.wantName)
			}
			if s.SpanKind() != trace.SpanKindClient {
				t.Errorf("span kind = %v, want client", s.SpanKind())
			}
			assertAttrs(t, attrMap(s.Attributes()), tc.wantAttrs)
			if got := strings.Join(eventNames(s), ","); got != strings.Join(tc.wantEvents, ",") {
				t.Errorf("events = %q, want %q", got, strings.Join(tc.wantEvents, ","))
			}
			wantCode := codes.Unset
			if tc.wantError {
				wantCode = codes.Error
			}
			if s.Status().Code != wantCode {
				t.Errorf("status = %v (%q), want %v", s.Status().Code, s.Status().Description, wantCode)
			}
			want := "this request would have failed without skewproxy"
			if strings.HasPrefix(tc.name, "presigned") {
				want = "skewproxy does not re-sign presigned URLs"
			}
			warned := strings.Contains(h.logs.String(), want)
			if warned != tc.wantWarn {
				t.Errorf("warning logged = %v, want %v; log: %s", warned, tc.wantWarn, h.logs.String())
			}
		})
	}
}

func assertAttrs(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("attribute %s missing, want %v", k, w)
			continue
		}
		if g != w {
			t.Errorf("attribute %s = %v (%T), want %v (%T)", k, g, g, w, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected attribute %s = %v", k, g)
		}
	}
}
