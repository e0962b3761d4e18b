package proxytest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

var proxyCreds = Credentials{AccessKeyID: "AKIDPROXYTEST", SecretAccessKey: "proxy/secret+key"}

// fakeClock is a settable clock for AWSOptions.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// sdkConfig is an SDK config that signs with creds and sends every request
// to the fake, whatever the endpoint host, with retries off.
func sdkConfig(fake *AWS, creds Credentials) aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		HTTPClient:  fake.Client(),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	}
}

func stsClient(fake *AWS, creds Credentials) *sts.Client {
	return sts.NewFromConfig(sdkConfig(fake, creds), func(o *sts.Options) {
		o.BaseEndpoint = aws.String("https://sts.us-east-1.amazonaws.com")
	})
}

func lambdaClient(fake *AWS, creds Credentials) *lambda.Client {
	return lambda.NewFromConfig(sdkConfig(fake, creds), func(o *lambda.Options) {
		o.BaseEndpoint = aws.String("https://lambda.us-east-1.amazonaws.com")
	})
}

func apiCode(t *testing.T, err error) (code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an AWS API error", err, err)
	}
	return ae.ErrorCode(), ae.ErrorMessage()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAWSSTSGetCallerIdentity(t *testing.T) {
	cases := []struct {
		name     string
		creds    Credentials
		wantCode string
		wantMsg  string
	}{
		{"right keys", proxyCreds, "", ""},
		{"wrong secret", Credentials{AccessKeyID: proxyCreds.AccessKeyID, SecretAccessKey: "nope"}, "SignatureDoesNotMatch", msgMismatch},
		{"unknown key", Credentials{AccessKeyID: "AKIDCLIENT", SecretAccessKey: "x"}, "InvalidClientTokenId", msgInvalidToken},
		{"unexpected session token", Credentials{AccessKeyID: proxyCreds.AccessKeyID, SecretAccessKey: proxyCreds.SecretAccessKey, SessionToken: "client-token"}, "InvalidClientTokenId", msgInvalidToken},
	}
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := stsClient(fake, tc.creds).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{})
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("GetCallerIdentity: %v", err)
				}
				if aws.ToString(out.Account) != AccountID || aws.ToString(out.Arn) != CallerARN {
					t.Fatalf("identity = %s %s", aws.ToString(out.Account), aws.ToString(out.Arn))
				}
				return
			}
			code, msg := apiCode(t, err)
			if code != tc.wantCode || msg != tc.wantMsg {
				t.Fatalf("error = %s %q, want %s %q", code, msg, tc.wantCode, tc.wantMsg)
			}
		})
	}
	st := fake.Stats()
	if st.Operations["STS.GetCallerIdentity"] != 1 || st.Failures[FailMismatch] != 1 || st.Failures[FailUnknownKey] != 1 || st.Failures[FailBadToken] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// expiredRE parses AWS's "Signature expired" text the way a client would.
var expiredRE = regexp.MustCompile(`^Signature expired: (\d{8}T\d{6}Z) is now earlier than (\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) - (\d+) min\.\)$`)
var notYetRE = regexp.MustCompile(`^Signature not yet current: (\d{8}T\d{6}Z) is still later than (\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) \+ (\d+) min\.\)$`)

func TestSignatureMessagesExactText(t *testing.T) {
	signed := time.Date(2023, 1, 18, 16, 17, 39, 0, time.UTC)
	now := time.Date(2023, 1, 18, 16, 27, 40, 0, time.UTC)
	got := SignatureExpiredMessage(signed, now, 5*time.Minute)
	want := "Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)"
	if got != want {
		t.Fatalf("expired:\n got %q\nwant %q", got, want)
	}
	got = SignatureNotYetCurrentMessage(now.Add(20*time.Minute), now, 15*time.Minute)
	want = "Signature not yet current: 20230118T164740Z is still later than 20230118T164240Z (20230118T162740Z + 15 min.)"
	if got != want {
		t.Fatalf("not yet current:\n got %q\nwant %q", got, want)
	}
}

func TestAWSClockSkewAnswers(t *testing.T) {
	cases := []struct {
		name       string
		serverSkew time.Duration // server time minus the client's (real) time
		future     time.Duration
		client     string
		wantCode   string
		re         *regexp.Regexp
		window     string
	}{
		{"lambda, client 20m behind", 20 * time.Minute, 0, "lambda", "InvalidSignatureException", expiredRE, "5"},
		{"lambda, client 20m ahead", -20 * time.Minute, 15 * time.Minute, "lambda", "InvalidSignatureException", notYetRE, "15"},
		{"sts, client 20m behind", 20 * time.Minute, 0, "sts", "SignatureDoesNotMatch", expiredRE, "5"},
		{"sts, client 6m ahead", -6 * time.Minute, 0, "sts", "SignatureDoesNotMatch", notYetRE, "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{}
			fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, FutureWindow: tc.future, Now: clock.Now})
			serverNow := time.Now().Add(tc.serverSkew).Truncate(time.Second)
			clock.Set(serverNow)
			var err error
			if tc.client == "lambda" {
				_, err = lambdaClient(fake, proxyCreds).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)})
			} else {
				_, err = stsClient(fake, proxyCreds).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{})
			}
			code, msg := apiCode(t, err)
			if code != tc.wantCode {
				t.Fatalf("code = %s (%q), want %s", code, msg, tc.wantCode)
			}
			m := tc.re.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("message %q does not parse", msg)
			}
			if m[3] != FormatAMZDate(serverNow) || m[4] != tc.window {
				t.Fatalf("message %q: server time %s window %s, want %s %s", msg, m[3], m[4], FormatAMZDate(serverNow), tc.window)
			}
			last := fake.Requests()[0]
			if m[1] != last.Header.Get("X-Amz-Date") {
				t.Fatalf("message quotes %s, request was signed at %s", m[1], last.Header.Get("X-Amz-Date"))
			}
			if st := last.Status; st != http.StatusForbidden {
				t.Fatalf("status = %d, want 403", st)
			}
		})
	}
}

func TestAWSDateHeader(t *testing.T) {
	clock := &fakeClock{}
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, Window: 100 * 365 * 24 * time.Hour, Now: clock.Now})
	serverNow := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	clock.Set(serverNow)
	resp, err := fake.Client().Get(fake.URL() + "/anything")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_ = resp.Body.Close()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err != nil || !d.Equal(serverNow) {
		t.Fatalf("Date = %q, want %v", resp.Header.Get("Date"), serverNow)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Fatalf("unsigned request: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
}

func TestAWSLambdaInvoke(t *testing.T) {
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, Functions: map[string]FunctionBehavior{
		"fixed":  {Response: []byte(`{"fixed":true}`)},
		"broken": {FunctionError: "Unhandled", Response: []byte(`{"errorMessage":"boom"}`)},
	}})
	cases := []struct {
		name, fn, payload, want, funcErr string
	}{
		{"echo by name", "echo", `{"a":1}`, `{"a":1}`, ""},
		{"echo by ARN with qualifier", "arn:aws:lambda:us-east-1:123456789012:function:echo:prod", `{"b":2}`, `{"b":2}`, ""},
		{"fixed answer", "fixed", `{}`, `{"fixed":true}`, ""},
		{"function error", "broken", `{}`, `{"errorMessage":"boom"}`, "Unhandled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := lambdaClient(fake, proxyCreds).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String(tc.fn), Payload: []byte(tc.payload)})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if string(out.Payload) != tc.want || aws.ToString(out.FunctionError) != tc.funcErr || out.StatusCode != 200 {
				t.Fatalf("Invoke = %d %q %q", out.StatusCode, out.Payload, aws.ToString(out.FunctionError))
			}
		})
	}
	t.Run("wrong keys", func(t *testing.T) {
		_, err := lambdaClient(fake, Credentials{AccessKeyID: "AKIDCLIENT", SecretAccessKey: "x"}).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String("echo")})
		if code, _ := apiCode(t, err); code != "UnrecognizedClientException" {
			t.Fatalf("code = %s", code)
		}
		_, err = lambdaClient(fake, Credentials{AccessKeyID: proxyCreds.AccessKeyID, SecretAccessKey: "x"}).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String("echo")})
		if code, msg := apiCode(t, err); code != "InvalidSignatureException" || msg != msgMismatch {
			t.Fatalf("error = %s %q", code, msg)
		}
	})
	if got := fake.Stats().Operations["Lambda.Invoke"]; got != len(cases) {
		t.Fatalf("Lambda.Invoke count = %d, want %d", got, len(cases))
	}
}

func TestAWSLambdaReservedConcurrency(t *testing.T) {
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, Functions: map[string]FunctionBehavior{
		"slow": {Delay: 400 * time.Millisecond, ReservedConcurrency: 2},
	}})
	client := lambdaClient(fake, proxyCreds)
	const n = 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = client.Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{}`)})
		})
	}
	wg.Wait()
	ok, throttled := 0, 0
	for _, err := range errs {
		var tmr *lambdatypes.TooManyRequestsException
		switch {
		case err == nil:
			ok++
		case errors.As(err, &tmr) && tmr.Reason == lambdatypes.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded:
			throttled++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	st := fake.Stats()
	if ok != 2 || throttled != n-2 || st.MaxInFlight["slow"] != 2 || st.Throttled != n-2 {
		t.Fatalf("ok=%d throttled=%d stats=%+v", ok, throttled, st)
	}
}

func TestAWSLambdaResponseStream(t *testing.T) {
	const delay = 600 * time.Millisecond
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, Functions: map[string]FunctionBehavior{
		"streamer": {Delay: delay, Stream: true},
	}})
	start := time.Now()
	out, err := lambdaClient(fake, proxyCreds).InvokeWithResponseStream(testCtx(t), &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("streamer"), Payload: []byte(`{"hello":"streaming world"}`),
	})
	if err != nil {
		t.Fatalf("InvokeWithResponseStream: %v", err)
	}
	stream := out.GetStream()
	defer stream.Close()
	var got []byte
	var firstAt time.Duration
	complete := false
	for ev := range stream.Events() {
		switch v := ev.(type) {
		case *lambdatypes.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			if got == nil {
				firstAt = time.Since(start)
			}
			got = append(got, v.Value.Payload...)
		case *lambdatypes.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			complete = true
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	total := time.Since(start)
	if string(got) != `{"hello":"streaming world"}` || !complete {
		t.Fatalf("payload %q complete=%v", got, complete)
	}
	if firstAt >= delay || total < delay {
		t.Fatalf("first chunk after %v, all after %v; want first < %v <= all", firstAt, total, delay)
	}
}

// signedRequest builds a request signed by the AWS SDK's own signer, to
// cross-check the verifier on paths and bodies the vectors do not cover.
func signedRequest(t *testing.T, method, rawURL string, body []byte, creds Credentials, service string, at time.Time, s3 bool) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hash := hexSHA256(body)
	if s3 {
		r.Header.Set("X-Amz-Content-Sha256", hash)
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = s3 })
	err = signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken},
		r, hash, service, "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAWSAPIGatewayModes(t *testing.T) {
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds})
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{APIGWExplicitDeny, 403, `{"Message":"User is not authorized to access this resource with an explicit deny"}`},
		{APIGWImplicitDeny, 403, `{"message":"User is not authorized to access this resource"}`},
		{APIGWUnauthorized, 401, `{"message":"Unauthorized"}`},
		{APIGWAuthorizerError, 500, `{"message": null}`},
		{APIGWIntegrationError, 502, `{"message": "Internal server error"}`},
		{APIGWIntegrationTimeout, 504, `{"message": "Endpoint request timed out"}`},
		{"/prod/items", 200, `{"body":"","method":"GET","path":"/prod/items"}`},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			r := signedRequest(t, "GET", "https://abc123.execute-api.us-east-1.amazonaws.com"+tc.path, nil, proxyCreds, "execute-api", time.Now(), false)
			resp, err := fake.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(b) != tc.body {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.body)
			}
		})
	}
	t.Run("expired signature", func(t *testing.T) {
		r := signedRequest(t, "GET", "https://abc123.execute-api.us-east-1.amazonaws.com/prod/items", nil, proxyCreds, "execute-api", time.Now().Add(-10*time.Minute), false)
		resp, err := fake.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != "InvalidSignatureException" || !strings.Contains(string(b), `"message":"Signature expired: `) {
			t.Fatalf("got %d %s %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b)
		}
	})
}

func TestVerifySDKSignedPaths(t *testing.T) {
	cases := []struct {
		name, url, service string
		s3                 bool
	}{
		{"lambda ARN path", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations?Qualifier=%24LATEST", "lambda", false},
		{"apigw path with space", "https://abc.execute-api.us-east-1.amazonaws.com/prod/a%20b/c", "execute-api", false},
		{"s3 odd key", "https://bucket.s3.us-east-1.amazonaws.com/dir//a%20b%2Bc%3Dd/../e.txt?versionId=x%2By", "s3", true},
		{"s3 query list", "https://s3.us-east-1.amazonaws.com/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F", "s3", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte("payload")
			now := time.Now()
			r := signedRequest(t, "POST", tc.url, body, proxyCreds, tc.service, now, tc.s3)
			v, err := Verify(r, body, proxyCreds, now, 5*time.Minute)
			if err != nil {
				t.Fatalf("Verify SDK-signed request: %v", err)
			}
			if v.Service != tc.service {
				t.Fatalf("service = %s", v.Service)
			}
		})
	}
}

func TestVerifySDKPresigned(t *testing.T) {
	now := time.Now()
	r, err := http.NewRequest("GET", "https://bucket.s3.us-east-1.amazonaws.com/key%20one?X-Amz-Expires=600", nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := Credentials{AccessKeyID: proxyCreds.AccessKeyID, SecretAccessKey: proxyCreds.SecretAccessKey, SessionToken: "session/token+1"}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	u, _, err := signer.PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken},
		r, "UNSIGNED-PAYLOAD", "s3", "us-east-1", now)
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := http.NewRequest("GET", u, nil)
	for _, tc := range []struct {
		name string
		at   time.Time
		want FailureKind
	}{
		{"in time", now.Add(9 * time.Minute), ""},
		{"after expiry", now.Add(11 * time.Minute), FailPresignedExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify(pr, nil, creds, tc.at, 5*time.Minute)
			if KindOf(err) != tc.want || (tc.want == "" && (err != nil || !v.Presigned || !v.SessionToken)) {
				t.Fatalf("Verify = %+v, %v; want %q", v, err, tc.want)
			}
		})
	}
}

func TestAWSFailNext(t *testing.T) {
	fake := NewAWS(t, AWSOptions{Credentials: proxyCreds})
	fake.FailNext(1, FailModeSignatureExpired)
	fake.FailNext(1, FailModeExpiredToken)
	fake.FailNext(1, FailModeThrottle)
	client := lambdaClient(fake, proxyCreds)
	want := []struct {
		code string
		re   *regexp.Regexp
	}{
		{"InvalidSignatureException", expiredRE},
		{"ExpiredTokenException", regexp.MustCompile(`^The security token included in the request is expired$`)},
		{"TooManyRequestsException", regexp.MustCompile(`^Rate exceeded$`)},
		{"", nil},
	}
	for i, w := range want {
		_, err := client.Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)})
		if w.code == "" {
			if err != nil {
				t.Fatalf("request %d after the injected failures: %v", i, err)
			}
			continue
		}
		code, msg := apiCode(t, err)
		if code != w.code || !w.re.MatchString(msg) {
			t.Fatalf("request %d: %s %q, want %s", i, code, msg, w.code)
		}
	}
	st := fake.Stats()
	if st.Injected[FailModeSignatureExpired] != 1 || st.Injected[FailModeThrottle] != 1 || st.Verified != 1 || st.Requests != 4 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestAWSRecordsHeaders(t *testing.T) {
	fake := NewAWS(t, AWSOptions{Credentials: Credentials{AccessKeyID: "AKIDTOKEN", SecretAccessKey: "s", SessionToken: "proxy-session"}})
	creds := Credentials{AccessKeyID: "AKIDTOKEN", SecretAccessKey: "s", SessionToken: "proxy-session"}
	if _, err := stsClient(fake, creds).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("GetCallerIdentity with session token: %v", err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Amz-Security-Token") != "proxy-session" || reqs[0].Verified == nil || !reqs[0].Verified.SessionToken {
		t.Fatalf("recorded = %+v", reqs)
	}
	if reqs[0].Operation != "GetCallerIdentity" || reqs[0].Service != "sts" || reqs[0].Host != "sts.us-east-1.amazonaws.com" {
		t.Fatalf("recorded = %+v", reqs[0])
	}
	if !strings.Contains(string(reqs[0].Body), "Action=GetCallerIdentity") {
		t.Fatalf("body = %q", reqs[0].Body)
	}
	if h := fake.Stats().LastHeader.Get("X-Amz-Security-Token"); h != "proxy-session" {
		t.Fatalf("LastHeader token = %q", h)
	}
}

func TestAWSLambdaInvokeStreamFirstBytesEarly(t *testing.T) {
	const delay = 500 * time.Millisecond
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "http2"}[h2], func(t *testing.T) {
			fake := NewAWS(t, AWSOptions{Credentials: proxyCreds, HTTP2: h2, Functions: map[string]FunctionBehavior{
				"chunky": {Delay: delay, Stream: true},
			}})
			payload := []byte(`{"part":"one","and":"two"}`)
			r := signedRequest(t, "POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/chunky/invocations", payload, proxyCreds, "lambda", time.Now(), false)
			start := time.Now()
			resp, err := fake.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := resp.ProtoMajor; (got == 2) != h2 {
				t.Fatalf("protocol HTTP/%d", got)
			}
			buf := make([]byte, 64)
			n, err := resp.Body.Read(buf)
			firstAt := time.Since(start)
			if n == 0 || err != nil || firstAt >= delay {
				t.Fatalf("first read: %d bytes, err %v, after %v (delay %v)", n, err, firstAt, delay)
			}
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]) + string(rest); got != string(payload) || time.Since(start) < delay {
				t.Fatalf("body %q after %v", got, time.Since(start))
			}
		})
	}
}
