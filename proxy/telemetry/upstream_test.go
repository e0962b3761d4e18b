package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// awsAnswer is one canned AWS answer.
type awsAnswer struct {
	status int
	header map[string]string
	body   string
}

var (
	lambdaSignatureExpired = awsAnswer{403, map[string]string{
		"X-Amzn-Errortype": "InvalidSignatureException", "X-Amzn-Requestid": "req-expired"},
		`{"message":"Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)"}`}
	lambdaOK        = awsAnswer{200, map[string]string{"X-Amzn-Requestid": "req-ok"}, `{"statusCode":200}`}
	lambdaThrottled = awsAnswer{429, map[string]string{
		"X-Amzn-Errortype": "TooManyRequestsException", "X-Amzn-Requestid": "req-429"},
		`{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}`}
	s3PresignedExpired = awsAnswer{403, map[string]string{"X-Amz-Request-Id": "4442587FB7D0A2F9"},
		`<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>60</X-Amz-Expires><Expires>2026-03-14T15:00:00Z</Expires><ServerTime>2026-03-14T15:09:26Z</ServerTime><RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>`}
	stsExpiredToken = awsAnswer{403, map[string]string{"X-Amzn-Requestid": "req-token"},
		`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error><RequestId>req-token</RequestId></ErrorResponse>`}
)

// TestUpstreamAnswers serves real AWS error answers on loopback, classifies
// them with the signer's classifier and drives the observer the way the
// proxy's pipeline does (retry once on a skew failure).
func TestUpstreamAnswers(t *testing.T) {
	tests := []struct {
		name       string
		service    string
		operation  string
		answers    []awsAnswer // one per attempt
		wantFields map[string]any
		wantEvents string
		wantError  bool
	}{
		{
			name: "signature expired then retried", service: "lambda", operation: "Invoke",
			answers: []awsAnswer{lambdaSignatureExpired, lambdaOK},
			wantFields: map[string]any{"skewproxy.failure": "signature_expired", "skewproxy.retried": true,
				"http.response.status_code": int64(200), "aws.request_id": "req-ok"},
			wantEvents: "signed,retried,signed",
		},
		{
			name: "throttled", service: "lambda", operation: "Invoke",
			answers: []awsAnswer{lambdaThrottled},
			wantFields: map[string]any{"skewproxy.failure": "throttled", "skewproxy.retried": false,
				"http.response.status_code": int64(429), "aws.request_id": "req-429", "error.type": "throttled"},
			wantEvents: "signed",
			wantError:  true,
		},
		{
			name: "presigned URL expired is not retried", service: "s3", operation: "GetObject",
			answers: []awsAnswer{s3PresignedExpired},
			wantFields: map[string]any{"skewproxy.failure": "presigned_expired", "skewproxy.retried": false,
				"http.response.status_code": int64(403), "aws.request_id": "4442587FB7D0A2F9", "error.type": "presigned_expired"},
			wantEvents: "signed",
			wantError:  true,
		},
		{
			name: "expired token is not a clock problem", service: "sts", operation: "GetCallerIdentity",
			answers: []awsAnswer{stsExpiredToken},
			wantFields: map[string]any{"skewproxy.failure": "expired_token", "skewproxy.retried": false,
				"http.response.status_code": int64(403), "aws.request_id": "req-token", "error.type": "expired_token"},
			wantEvents: "signed",
			wantError:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var attempt atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(attempt.Add(1)) - 1
				if n >= len(tc.answers) {
					n = len(tc.answers) - 1
				}
				a := tc.answers[n]
				for k, v := range a.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(a.status)
				_, _ = io.WriteString(w, a.body)
			}))
			defer srv.Close()

			h := newHarness(t)
			ctx, o := h.tel.Start(context.Background(), lambdaInvoke(t))
			o.Classified(proxy.RequestInfo{Service: tc.service, Region: "us-east-1", Operation: tc.operation})
			var (
				status int
				header http.Header
				class  awserrors.Classification
			)
			for try := 0; ; try++ {
				o.Signed(trueNow)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatalf("upstream: %v", err)
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				status, header = resp.StatusCode, resp.Header
				class = awserrors.Classification{}
				if status >= 400 {
					class = awserrors.Classify(status, header, body)
				}
				if try == 0 && class.Failure.IsSkew() {
					o.Retried(class.Failure)
					continue
				}
				break
			}
			o.End(status, header, class, nil)

			s := h.onlySpan(t)
			got := attrMap(s.Attributes())
			for k, want := range tc.wantFields {
				if got[k] != want {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
			if _, ok := got["error.type"]; ok != tc.wantError {
				t.Errorf("error.type present = %v, want %v", ok, tc.wantError)
			}
			if ev := strings.Join(eventNames(s), ","); ev != tc.wantEvents {
				t.Errorf("events = %q, want %q", ev, tc.wantEvents)
			}
			if (s.Status().Code == codes.Error) != tc.wantError {
				t.Errorf("status = %v, want error %v", s.Status().Code, tc.wantError)
			}
		})
	}
}
