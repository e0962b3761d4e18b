package awserrors

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestExplain(t *testing.T) {
	skew := func(v float64) *float64 { return &v }
	tests := []struct {
		name      string
		in        string // "@file" reads testdata/classify/file
		failure   Failure
		hostClock string
		skew      *float64
		server    string
		advice    []string // substrings the advice must hold
		text      []string // substrings Text() must hold
	}{
		{
			name:    "Lambda CLI line, host clock 10 min behind",
			in:      "An error occurred (InvalidSignatureException) when calling the Invoke operation: Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-601), server: "2023-01-18T16:27:40Z",
			advice: []string{"10m1s behind", "chrony", "skewproxy"},
			text:   []string{"Signature expired (signature_expired)", "Host clock: 10m1s behind", "-601s", "Server time: 2023-01-18T16:27:40Z", "Signing time: 2023-01-18T16:17:39Z"},
		},
		{
			name:    "Lambda CLI line just past the window: client-side queue",
			in:      "An error occurred (InvalidSignatureException) when calling the Invoke operation: Signature expired: 20230118T162210Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-330), server: "2023-01-18T16:27:40Z",
			advice: []string{"5m30s old", "queue", "50", "signs each request only when it is sent"},
		},
		{
			name:    "STS CLI line with retries, 20 min behind",
			in:      "An error occurred (SignatureDoesNotMatch) when calling the GetCallerIdentity operation (reached max retries: 2): Signature expired: 20230118T154739Z is now earlier than 20230118T160240Z (20230118T160740Z - 5 min.)",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-1201), server: "2023-01-18T16:07:40Z",
			advice: []string{"20m1s behind"},
		},
		{
			name:    "SQS CLI line, host clock ahead",
			in:      "An error occurred (SignatureDoesNotMatch) when calling the SendMessage operation: Signature not yet current: 20230118T174739Z is still later than 20230118T163240Z (20230118T161740Z + 15 min.)",
			failure: FailureSignatureNotYetCurrent, hostClock: HostClockAhead, skew: skew(5399), server: "2023-01-18T16:17:40Z",
			advice: []string{"1h29m59s ahead"},
			text:   []string{"Host clock: 1h29m59s ahead", "+5399s"},
		},
		{
			name:    "STS query XML body",
			in:      "@sts-signature-expired.xml",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-1201), server: "2023-01-18T16:07:40Z",
		},
		{
			name:    "Lambda JSON body",
			in:      "@lambda-signature-expired.json",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-601), server: "2023-01-18T16:27:40Z",
		},
		{
			name:    "aws-sdk-go-v2 error string",
			in:      "operation error Lambda: Invoke, https response error StatusCode: 403, RequestID: 0c6f6a3e-1b1b-4f1e-9a55-2d4c9b5f8e21, api error InvalidSignatureException: Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)",
			failure: FailureSignatureExpired, hostClock: HostClockBehind, skew: skew(-601), server: "2023-01-18T16:27:40Z",
		},
		{
			name:    "JavaScript SDK error string",
			in:      "InvalidSignatureException: Signature not yet current: 20230118T163000Z is still later than 20230118T162940Z (20230118T161440Z + 15 min.)",
			failure: FailureSignatureNotYetCurrent, hostClock: HostClockAhead, skew: skew(920), server: "2023-01-18T16:14:40Z",
		},
		{
			name:    "S3 RequestTimeTooSkewed XML",
			in:      "@s3-request-time-too-skewed.xml",
			failure: FailureRequestTimeTooSkewed, hostClock: HostClockBehind, skew: skew(-1203), server: "2023-01-18T16:37:42Z",
			advice: []string{"20m3s behind", "15m"},
			text:   []string{"Host clock: 20m3s behind"},
		},
		{
			name:    "S3 RequestTimeTooSkewed XML, host ahead, RFC 1123 request time",
			in:      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestTime>Wed, 18 Jan 2023 17:17:39 GMT</RequestTime><ServerTime>2023-01-18T16:37:42Z</ServerTime><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>`,
			failure: FailureRequestTimeTooSkewed, hostClock: HostClockAhead, skew: skew(2397), server: "2023-01-18T16:37:42Z",
			advice: []string{"39m57s ahead of"},
		},
		{
			name:    "S3 RequestTimeTooSkewed CLI line has no times",
			in:      "An error occurred (RequestTimeTooSkewed) when calling the PutObject operation: The difference between the request time and the current time is too large.",
			failure: FailureRequestTimeTooSkewed, hostClock: HostClockUnknown,
			advice: []string{"host clock is off"},
		},
		{
			name:    "only a signing time: skew unknown",
			in:      "Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z",
			failure: FailureSignatureExpired, hostClock: HostClockBehind,
			text: []string{"by how much is not in the message"},
		},
		{
			name:    "S3 expired presigned URL",
			in:      "@s3-presigned-expired.xml",
			failure: FailurePresignedExpired, hostClock: HostClockUnknown, server: "2023-01-18T16:27:40Z",
			advice: []string{"lifetime ran out", "2023-01-18T15:17:39Z", "1h10m1s later", "temporary credentials"},
			text:   []string{"Expired at: 2023-01-18T15:17:39Z", "Host clock: not measurable"},
		},
		{
			name:    "STS ExpiredToken CLI line",
			in:      "An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: The security token included in the request is expired",
			failure: FailureExpiredToken, hostClock: HostClockUnknown,
			advice: []string{"NOT a clock problem", "Refresh the credentials"},
			text:   []string{"Host clock: not the cause"},
		},
		{
			name:    "ExpiredTokenException JSON body",
			in:      `{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}`,
			failure: FailureExpiredToken, hostClock: HostClockUnknown,
			advice: []string{"NOT a clock problem"},
		},
		{
			name:    "S3 SignatureDoesNotMatch CLI line",
			in:      "An error occurred (SignatureDoesNotMatch) when calling the PutObject operation: The request signature we calculated does not match the signature you provided. Check your key and signing method.",
			failure: FailureSignatureMismatch, hostClock: HostClockUnknown,
			advice: []string{"NOT a clock problem", "region", "encoding"},
		},
		{
			name:    "Lambda throttle CLI line",
			in:      "An error occurred (TooManyRequestsException) when calling the Invoke operation (reached max retries: 4): Rate Exceeded.",
			failure: FailureThrottled, hostClock: HostClockUnknown,
			advice: []string{"NOT a clock problem", "--lambda-max-inflight"},
		},
		{
			name:    "unrecognised",
			in:      "An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation: The specified bucket does not exist",
			failure: FailureNone, hostClock: HostClockUnknown,
			advice: []string{"Not recognised"},
			text:   []string{"Not a recognised AWS error."},
		},
		{
			name:    "empty",
			in:      "",
			failure: FailureNone, hostClock: HostClockUnknown,
			advice: []string{"Not recognised"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if f, ok := strings.CutPrefix(in, "@"); ok {
				in = fixture(t, f)
			}
			e := Explain(in)
			if e.Failure != tc.failure || e.HostClock != tc.hostClock {
				t.Fatalf("got failure %q host_clock %q, want %q %q", e.Failure, e.HostClock, tc.failure, tc.hostClock)
			}
			switch {
			case tc.skew == nil && e.SkewSeconds != nil:
				t.Errorf("skew_seconds = %v, want null", *e.SkewSeconds)
			case tc.skew != nil && (e.SkewSeconds == nil || *e.SkewSeconds != *tc.skew):
				t.Errorf("skew_seconds = %v, want %v", fmtSkew(e.SkewSeconds), *tc.skew)
			}
			if want := mustTime(t, tc.server); (e.ServerTime == nil) != want.IsZero() || (e.ServerTime != nil && !e.ServerTime.Equal(want)) {
				t.Errorf("server_time = %v, want %v", e.ServerTime, tc.server)
			}
			for _, s := range tc.advice {
				if !strings.Contains(e.Advice, s) {
					t.Errorf("advice lacks %q:\n%s", s, e.Advice)
				}
			}
			text := e.Text()
			for _, s := range tc.text {
				if !strings.Contains(text, s) {
					t.Errorf("Text() lacks %q:\n%s", s, text)
				}
			}
		})
	}
}

func fmtSkew(p *float64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// TestExplainJSON checks the --json shape the design fixes.
func TestExplainJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			"skew",
			"An error occurred (InvalidSignatureException) when calling the Invoke operation: Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)",
			`{"failure":"signature_expired","host_clock":"behind","skew_seconds":-601,"server_time":"2023-01-18T16:27:40Z"}`,
		},
		{
			"not a clock problem",
			"An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: The security token included in the request is expired",
			`{"failure":"expired_token","host_clock":"unknown","skew_seconds":null,"server_time":null}`,
		},
		{
			"unrecognised",
			"something else",
			`{"failure":"","host_clock":"unknown","skew_seconds":null,"server_time":null}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(Explain(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if a, ok := got["advice"].(string); !ok || a == "" {
				t.Errorf("advice missing in %s", b)
			}
			delete(got, "advice")
			var want map[string]any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("JSON = %s\nwant (without advice) %s", b, tc.want)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		name string
		in   float64 // seconds
		want string
	}{
		{"zero", 0, "0s"},
		{"seconds", 59, "59s"},
		{"minutes and seconds", 1203, "20m3s"},
		{"negative", -1203, "20m3s"},
		{"whole hour", 3600, "1h"},
		{"days", 3*86400 + 4*3600, "3d4h"},
		{"rounds to the second", 61.6, "1m2s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := humanDuration(secondsDuration(tc.in)); got != tc.want {
				t.Fatalf("humanDuration(%vs) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzExplain(f *testing.F) {
	f.Add("An error occurred (InvalidSignatureException) when calling the Invoke operation: Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)")
	f.Add("api error X: Signature not yet current: 1 is still later than 2 (3 + 4 min.)")
	f.Add("<Error><Code>RequestTimeTooSkewed</Code><RequestTime>0</RequestTime><ServerTime>x</ServerTime>")
	f.Add("{\"message\":\"Request has expired")
	f.Fuzz(func(t *testing.T, s string) {
		e := Explain(s)
		if e.HostClock != HostClockBehind && e.HostClock != HostClockAhead && e.HostClock != HostClockUnknown {
			t.Fatalf("host_clock %q", e.HostClock)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("marshal: %v", err)
		}
		_ = e.Text()
	})
}

func ExampleExplain() {
	e := Explain("An error occurred (InvalidSignatureException) when calling the Invoke operation: " +
		"Signature expired: 20230118T161739Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)")
	fmt.Println(e.Failure, e.HostClock, *e.SkewSeconds, e.ServerTime.Format("2006-01-02T15:04:05Z07:00"))
	fmt.Println(strings.SplitN(e.Text(), "\n", 3)[1])
	// Output:
	// signature_expired behind -601 2023-01-18T16:27:40Z
	// Host clock: 10m1s behind (signing time minus server time: -601s)
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
