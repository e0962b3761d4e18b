package lambdalimit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	ltypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func TestThrottleAnswer(t *testing.T) {
	tests := []struct {
		name      string
		th        Throttle
		wantRetry string
	}{
		{name: "queue timeout", th: Throttle{Reason: ReasonQueueTimeout, Function: "f", Waited: 4 * time.Minute, RetryAfter: time.Second}, wantRetry: "1"},
		{name: "queue full rounds up", th: Throttle{Reason: ReasonQueueFull, Function: "f", RetryAfter: 2500 * time.Millisecond}, wantRetry: "3"},
		{name: "zero retry-after is one second", th: Throttle{Reason: ReasonQueueFull, Function: "f"}, wantRetry: "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, h, raw := tc.th.Answer()
			if code != http.StatusTooManyRequests {
				t.Errorf("status %d, want 429", code)
			}
			if h.Get("x-amzn-ErrorType") != "TooManyRequestsException" || h.Get("Content-Type") != "application/json" ||
				h.Get("Retry-After") != tc.wantRetry {
				t.Errorf("headers %v (want Retry-After %s)", h, tc.wantRetry)
			}
			var body map[string]string
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			if body["Type"] != "User" || body["Reason"] != string(tc.th.Reason) || body["message"] == "" {
				t.Errorf("body %v", body)
			}
			if tc.th.Failure() != "queue_timeout" {
				t.Errorf("Failure() = %q", tc.th.Failure())
			}
		})
	}
}

// newLambdaClient is a real SDK client aimed at url with placeholder keys.
func newLambdaClient(url string, attempts int) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDPLACEHOLDER", "placeholder-secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
	})
}

// TestThrottleDecodedBySDK: the refusal is the SDK's own
// TooManyRequestsException, a throttle its retryer retries.
func TestThrottleDecodedBySDK(t *testing.T) {
	tests := []struct {
		name   string
		reason Reason
	}{
		{name: "queue timeout", reason: ReasonQueueTimeout},
		{name: "queue full", reason: ReasonQueueFull},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if inv, ok := Recognize(r); !ok || inv.Function != "my-fn" || inv.Qualifier != "live" {
					t.Errorf("SDK request %s %s not recognised as an invoke of my-fn:live (%+v)", r.Method, r.URL, inv)
				}
				th := &Throttle{Reason: tc.reason, Function: "my-fn", Waited: 4 * time.Minute, RetryAfter: 2 * time.Second}
				code, h, body := th.Answer()
				for k, v := range h {
					w.Header()[k] = v
				}
				w.WriteHeader(code)
				w.Write(body)
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := newLambdaClient(srv.URL, 1).Invoke(ctx, &lambda.InvokeInput{
				FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:my-fn"),
				Qualifier:    aws.String("live"),
				Payload:      []byte(`{}`),
			})
			var tm *ltypes.TooManyRequestsException
			if !errors.As(err, &tm) {
				t.Fatalf("Invoke error %T %v, want *types.TooManyRequestsException", err, err)
			}
			if tm.Reason != ltypes.ThrottleReason(tc.reason) || aws.ToString(tm.Type) != "User" ||
				aws.ToString(tm.RetryAfterSeconds) != "2" || !strings.Contains(tm.ErrorMessage(), "skewproxy") {
				t.Errorf("decoded %+v (reason %q, type %q, retry-after %q, message %q)", tm, tm.Reason,
					aws.ToString(tm.Type), aws.ToString(tm.RetryAfterSeconds), tm.ErrorMessage())
			}
			if got := retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err); got != aws.TrueTernary {
				t.Errorf("SDK IsErrorThrottle = %v, want true", got)
			}
			if got := retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err); got != aws.TrueTernary {
				t.Errorf("SDK IsErrorRetryable = %v, want true", got)
			}

			// With attempts left, the standard retryer sends it again.
			hits.Store(0)
			_, err = newLambdaClient(srv.URL, 3).Invoke(ctx, &lambda.InvokeInput{
				FunctionName: aws.String("my-fn:live"), Payload: []byte(`{}`),
			})
			if !errors.As(err, &tm) || hits.Load() != 3 {
				t.Errorf("with 3 attempts: %d requests (err %v), want 3", hits.Load(), err)
			}
		})
	}
}
