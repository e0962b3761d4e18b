package awserrors

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "classify", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    http.Header
		body      string // "@file" reads testdata/classify/file
		failure   Failure
		code      string
		signing   string
		server    string
		expires   string
		window    time.Duration
		requestID string
		hostID    string
	}{
		{
			name: "lambda signature expired (JSON, coral __type)", status: 403,
			header:  http.Header{"X-Amzn-Requestid": {"8d1a-lambda"}, "X-Amzn-Errortype": {"InvalidSignatureException"}},
			body:    "@lambda-signature-expired.json",
			failure: FailureSignatureExpired, code: "InvalidSignatureException",
			signing: "2023-01-18T16:17:39Z", server: "2023-01-18T16:27:40Z", window: 5 * time.Minute, requestID: "8d1a-lambda",
		},
		{
			name: "STS query XML: SignatureDoesNotMatch carrying Signature expired", status: 403,
			body:    "@sts-signature-expired.xml",
			failure: FailureSignatureExpired, code: "SignatureDoesNotMatch",
			signing: "2023-01-18T15:47:39Z", server: "2023-01-18T16:07:40Z", window: 5 * time.Minute,
			requestID: "c6104cbe-af31-11e0-8154-cbc7ccf896c7",
		},
		{
			name: "signature not yet current, header-only code", status: 403,
			header:  http.Header{"X-Amzn-Errortype": {"InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"}},
			body:    `{"message":"Signature not yet current: 20230118T174739Z is still later than 20230118T163240Z (20230118T161740Z + 15 min.)"}`,
			failure: FailureSignatureNotYetCurrent, code: "InvalidSignatureException",
			signing: "2023-01-18T17:47:39Z", server: "2023-01-18T16:17:40Z", window: 15 * time.Minute,
		},
		{
			name: "S3 RequestTimeTooSkewed", status: 403,
			header:  http.Header{"X-Amz-Request-Id": {"4442587FB7D0A2F9"}, "X-Amz-Id-2": {"hostid2"}},
			body:    "@s3-request-time-too-skewed.xml",
			failure: FailureRequestTimeTooSkewed, code: "RequestTimeTooSkewed",
			signing: "2023-01-18T16:17:39Z", server: "2023-01-18T16:37:42Z", window: 15 * time.Minute,
			requestID: "4442587FB7D0A2F9", hostID: "hostid2",
		},
		{
			name: "S3 RequestTimeTooSkewed with RFC 1123 request time", status: 403,
			body:    `<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestTime>Wed, 18 Jan 2023 17:17:39 GMT</RequestTime><ServerTime>2023-01-18T16:37:42.123Z</ServerTime><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>`,
			failure: FailureRequestTimeTooSkewed, code: "RequestTimeTooSkewed",
			signing: "2023-01-18T17:17:39Z", server: "2023-01-18T16:37:42.123Z", window: 15 * time.Minute,
		},
		{
			name: "skew message of a JSON service", status: 400,
			body:    `{"__type":"InvalidSignatureException","message":"The difference between the request time and the current time is too large."}`,
			failure: FailureRequestTimeTooSkewed, code: "InvalidSignatureException",
		},
		{
			name: "S3 presigned URL expired", status: 403,
			body:    "@s3-presigned-expired.xml",
			failure: FailurePresignedExpired, code: "AccessDenied",
			server: "2023-01-18T16:27:40Z", expires: "2023-01-18T15:17:39Z",
			requestID: "TX6QPEBGKJN1Q4ZX", hostID: "Wf0CyHfXyJ7vUo4N0d6ZOn0uH8hM6W2V0f3w0b1q2c3d4e5f6g7h8i9j0k=",
		},
		{
			name: "presigned expired, plain text 403", status: 403,
			body:    "Request has expired",
			failure: FailurePresignedExpired,
		},
		{
			name: "EC2 RequestExpired (400) is a stale signature", status: 400,
			body:    `<Response><Errors><Error><Code>RequestExpired</Code><Message>Request has expired.</Message></Error></Errors><RequestID>5e3a</RequestID></Response>`,
			failure: FailureSignatureExpired, code: "RequestExpired", requestID: "5e3a",
		},
		{
			name: "STS ExpiredToken", status: 403,
			body:    `<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error><RequestId>r1</RequestId></ErrorResponse>`,
			failure: FailureExpiredToken, code: "ExpiredToken", requestID: "r1",
		},
		{
			name: "ExpiredTokenException JSON", status: 403,
			body:    `{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}`,
			failure: FailureExpiredToken, code: "ExpiredTokenException",
		},
		{
			name: "expired token by message only", status: 400,
			body:    `{"Message":"The security token included in the request is expired"}`,
			failure: FailureExpiredToken,
		},
		{
			name: "S3 SignatureDoesNotMatch", status: 403,
			body:    "@s3-signature-mismatch.xml",
			failure: FailureSignatureMismatch, code: "SignatureDoesNotMatch", requestID: "8E2A6E1C4B7D9F01", hostID: "abc=",
		},
		{
			name: "InvalidSignatureException mismatch", status: 403,
			body:    `{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}`,
			failure: FailureSignatureMismatch, code: "InvalidSignatureException",
		},
		{
			name: "Lambda 429 TooManyRequestsException", status: 429,
			body:    `{"Reason":"ConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}`,
			failure: FailureThrottled,
		},
		{
			name: "ThrottlingException", status: 400,
			body:    `{"__type":"ThrottlingException","message":"Rate exceeded"}`,
			failure: FailureThrottled, code: "ThrottlingException",
		},
		{
			name: "query Throttling", status: 400,
			body:    `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>`,
			failure: FailureThrottled, code: "Throttling",
		},
		{
			name: "S3 SlowDown 503", status: 503,
			body:    `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>S1</RequestId></Error>`,
			failure: FailureThrottled, code: "SlowDown", requestID: "S1",
		},
		{
			name: "EC2 RequestLimitExceeded", status: 503,
			body:    `<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors></Response>`,
			failure: FailureThrottled, code: "RequestLimitExceeded",
		},
		{
			name: "DynamoDB ProvisionedThroughputExceeded", status: 400,
			body:    "@dynamodb-throughput.json",
			failure: FailureThrottled, code: "ProvisionedThroughputExceededException",
		},
		{
			name: "429 with empty body", status: 429,
			failure: FailureThrottled,
		},
		{
			name: "truncated JSON still classified", status: 403,
			body:    `{"__type":"InvalidSignatureException","message":"Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T1627`,
			failure: FailureSignatureExpired, code: "InvalidSignatureException", signing: "2023-01-18T16:17:39Z",
		},
		{
			name: "truncated XML message", status: 403,
			body:    `<Error><Code>SignatureDoesNotMatch</Code><Message>Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)`,
			failure: FailureSignatureExpired, code: "SignatureDoesNotMatch",
			signing: "2023-01-18T16:17:39Z", server: "2023-01-18T16:27:40Z", window: 5 * time.Minute,
		},
		{
			name: "escaped JSON message", status: 403,
			body:    `{"code":"ExpiredToken","message":"The provided token has expired \u0028session\u0029 \/"}`,
			failure: FailureExpiredToken, code: "ExpiredToken",
		},
		{
			name: "success is never a failure", status: 200,
			body:    `{"message":"Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)"}`,
			failure: FailureNone,
		},
		{
			name: "unrelated error", status: 404,
			body:    `<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`,
			failure: FailureNone, code: "NoSuchKey",
		},
		{
			name: "AccessDenied is not expiry", status: 403,
			body:    `<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`,
			failure: FailureNone, code: "AccessDenied",
		},
		{name: "empty", status: 500, failure: FailureNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if f, ok := strings.CutPrefix(body, "@"); ok {
				body = fixture(t, f)
			}
			c := Classify(tc.status, tc.header, []byte(body))
			if c.Failure != tc.failure {
				t.Errorf("Failure = %q, want %q (code %q, message %q)", c.Failure, tc.failure, c.Code, c.Message)
			}
			if c.Code != tc.code {
				t.Errorf("Code = %q, want %q", c.Code, tc.code)
			}
			if want := mustTime(t, tc.signing); !c.SigningTime.Equal(want) {
				t.Errorf("SigningTime = %v, want %v", c.SigningTime, want)
			}
			if want := mustTime(t, tc.server); !c.ServerTime.Equal(want) {
				t.Errorf("ServerTime = %v, want %v", c.ServerTime, want)
			}
			if want := mustTime(t, tc.expires); !c.Expires.Equal(want) {
				t.Errorf("Expires = %v, want %v", c.Expires, want)
			}
			if c.Window != tc.window {
				t.Errorf("Window = %v, want %v", c.Window, tc.window)
			}
			if c.RequestID != tc.requestID {
				t.Errorf("RequestID = %q, want %q", c.RequestID, tc.requestID)
			}
			if c.HostID != tc.hostID {
				t.Errorf("HostID = %q, want %q", c.HostID, tc.hostID)
			}
		})
	}
}

func TestParseAWSTime(t *testing.T) {
	want := time.Date(2023, 1, 18, 16, 27, 40, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Time
	}{
		{"ISO 8601 basic", "20230118T162740Z", want},
		{"RFC 3339", "2023-01-18T16:27:40Z", want},
		{"RFC 3339 with millis", "2023-01-18T16:27:40.000Z", want},
		{"RFC 3339 with offset", "2023-01-18T17:27:40+01:00", want},
		{"RFC 1123", "Wed, 18 Jan 2023 16:27:40 GMT", want},
		{"RFC 1123 numeric zone", "Wed, 18 Jan 2023 16:27:40 +0000", want},
		{"surrounding spaces", "  20230118T162740Z\n", want},
		{"garbage", "yesterday", time.Time{}},
		{"empty", "", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseAWSTime(tc.in); !got.Equal(tc.want) {
				t.Fatalf("parseAWSTime(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestClassifyAPIGateway(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"explicit deny", 403, `{"Message":"User: arn:aws:sts::123456789012:assumed-role/app/i-0abc is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items with an explicit deny"}`, APIGatewayExplicitDeny},
		{"implicit deny", 403, `{"message":"User is not authorized to access this resource"}`, APIGatewayImplicitDeny},
		{"implicit deny by resource policy", 403, `{"Message":"User: anonymous is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/items"}`, APIGatewayImplicitDeny},
		{"unauthorized", 401, `{"message":"Unauthorized"}`, APIGatewayUnauthorized},
		{"authorizer or config error", 500, `{"message": null}`, APIGatewayAuthorizerOrConfig},
		{"authorizer or config error, spaced", 500, "{ \"message\" : null }\n", APIGatewayAuthorizerOrConfig},
		{"integration error", 502, `{"message": "Internal server error"}`, APIGatewayIntegrationError},
		{"integration timeout", 504, `{"message": "Endpoint request timed out"}`, APIGatewayIntegrationTimeout},
		{"500 with a message is the backend's", 500, `{"message":"boom"}`, ""},
		{"403 forbidden (API key)", 403, `{"message":"Forbidden"}`, ""},
		{"200", 200, `{"message":"Unauthorized"}`, ""},
		{"garbage", 502, "\x00\xff{", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyAPIGateway(tc.status, []byte(tc.body)); got != tc.want {
				t.Fatalf("ClassifyAPIGateway(%d, %q) = %q, want %q", tc.status, tc.body, got, tc.want)
			}
		})
	}
}

var knownFailures = map[Failure]bool{
	FailureNone: true, FailureSignatureExpired: true, FailureSignatureNotYetCurrent: true,
	FailureRequestTimeTooSkewed: true, FailurePresignedExpired: true, FailureExpiredToken: true,
	FailureSignatureMismatch: true, FailureThrottled: true, FailureQueueTimeout: true,
}

func FuzzClassify(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "classify"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "classify", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(403, b)
		f.Add(403, b[:len(b)/2])
	}
	for _, s := range []string{
		`{"__type":"ThrottlingException","message":"Rate exceeded"}`,
		`{"message":"Signature not yet current: 20230118T174739Z is still later than 20230118T163240Z (20230118T161740Z + 15 min.)"}`,
		`{"message": null}`,
		`{"message":"\`,
		`<Error><Code>`,
		`<Message>Signature expired: a is now earlier than b (c - 99999999999999999999 min.)</Message>`,
		"Request has expired",
	} {
		f.Add(400, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		h := http.Header{"X-Amzn-Errortype": {string(body[:min(len(body), 40)])}}
		c := Classify(status, h, body)
		if !knownFailures[c.Failure] {
			t.Fatalf("unknown failure %q", c.Failure)
		}
		if len(c.Message) > classifyMaxMessage {
			t.Fatalf("message of %d bytes", len(c.Message))
		}
		_ = ClassifyAPIGateway(status, body)
		e := Explain(string(body))
		if !knownFailures[e.Failure] || e.Advice == "" || e.Text() == "" {
			t.Fatalf("bad explanation %+v", e)
		}
		if e.SkewSeconds != nil && !e.Failure.IsSkew() {
			t.Fatalf("skew %v for non-skew failure %q", *e.SkewSeconds, e.Failure)
		}
	})
}
