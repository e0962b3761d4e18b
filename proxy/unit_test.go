package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/timesource"
)

func TestRedaction(t *testing.T) {
	cases := []struct{ name, in, secret string }{
		{"sigv4 header", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=f00dfeed", "f00dfeed"},
		{"credential", "Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request", "AKIDEXAMPLE"},
		{"query", "GET /k?X-Amz-Signature=f00dfeed&x=1", "f00dfeed"},
		{"token", "x-amz-security-token: FwoGZXIvYXdz", "FwoGZXIvYXdz"},
		{"basic", "Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"},
	}
	for _, tc := range cases {
		t.Run("text "+tc.name, func(t *testing.T) {
			if got := redactText(tc.in); strings.Contains(got, tc.secret) || !strings.Contains(got, redacted) {
				t.Errorf("redactText(%q) = %q", tc.in, got)
			}
		})
	}
	t.Run("goproxy logger", func(t *testing.T) {
		var buf bytes.Buffer
		l := goproxyLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		l.Printf("WARN: req %v", "Authorization: AWS4-HMAC-SHA256 Signature=f00dfeed")
		if strings.Contains(buf.String(), "f00dfeed") || !strings.Contains(buf.String(), "goproxy") {
			t.Errorf("log = %q", buf.String())
		}
	})
	t.Run("net/http error log", func(t *testing.T) {
		var buf bytes.Buffer
		l := slog.NewLogLogger(redactingHandler{slog.NewTextHandler(&buf, nil)}, slog.LevelWarn)
		l.Printf("bad request with Signature=f00dfeed")
		if strings.Contains(buf.String(), "f00dfeed") {
			t.Errorf("log = %q", buf.String())
		}
	})
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":        {"keep-alive, X-Foo"},
		"X-Foo":             {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Te":                {"trailers, deflate"},
		"Upgrade":           {"h2c"},
		"Accept-Encoding":   {"gzip"},
		"X-Amz-Date":        {"20260101T000000Z"},
		"Transfer-Encoding": {"chunked"},
	}
	removeHopHeaders(h, true)
	for _, k := range []string{"Connection", "X-Foo", "Keep-Alive", "Proxy-Connection", "Upgrade", "Transfer-Encoding"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s kept", k)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("Accept-Encoding") != "gzip" || h.Get("X-Amz-Date") == "" {
		t.Errorf("end-to-end headers changed: %v", h)
	}
}

func TestOperation(t *testing.T) {
	cases := []struct {
		name, service, method, host, target, want string
		header                                    http.Header
	}{
		{"lambda invoke", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/my-fn/invocations", "Invoke", nil},
		{"lambda stream", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2021-11-15/functions/f/response-streaming-invocations", "InvokeWithResponseStream", nil},
		{"lambda other", "lambda", "GET", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/", "", nil},
		{"lambda invoke async", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2014-11-13/functions/f/invoke-async/", "InvokeAsync", nil},
		{"lambda invoke ARN", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f:3/invocations", "Invoke", nil},
		{"lambda no function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/invocations", "", nil},
		{"lambda stream no function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2021-11-15/functions/response-streaming-invocations", "", nil},
		{"lambda empty function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions//invocations", "", nil},
		{"lambda slash in function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/a%2Fb/invocations", "", nil},
		{"json target", "dynamodb", "POST", "dynamodb.us-east-1.amazonaws.com", "/", "PutItem", http.Header{"X-Amz-Target": {"DynamoDB_20120810.PutItem"}}},
		{"query action", "sts", "GET", "sts.amazonaws.com", "/?Action=GetCallerIdentity&Version=2011-06-15", "GetCallerIdentity", nil},
		{"s3 get object vhost", "s3", "GET", "bucket.s3.us-east-1.amazonaws.com", "/a/key", "GetObject", nil},
		{"s3 get object path", "s3", "GET", "s3.us-east-1.amazonaws.com", "/bucket/key", "GetObject", nil},
		{"s3 list v2", "s3", "GET", "s3.us-east-1.amazonaws.com", "/bucket?list-type=2", "ListObjectsV2", nil},
		{"s3 list buckets", "s3", "GET", "s3.amazonaws.com", "/", "ListBuckets", nil},
		{"s3 put object", "s3", "PUT", "bucket.s3.amazonaws.com", "/k%20ey", "PutObject", nil},
		{"s3 create bucket", "s3", "PUT", "s3.amazonaws.com", "/bucket", "CreateBucket", nil},
		{"s3 copy", "s3", "PUT", "s3.amazonaws.com", "/bucket/k", "CopyObject", http.Header{"X-Amz-Copy-Source": {"/b/o"}}},
		{"s3 upload part", "s3", "PUT", "s3.amazonaws.com", "/bucket/k?partNumber=1&uploadId=x", "UploadPart", nil},
		{"s3 delete object", "s3", "DELETE", "s3.amazonaws.com", "/bucket/k", "DeleteObject", nil},
		{"s3 head bucket", "s3", "HEAD", "s3.amazonaws.com", "/bucket", "HeadBucket", nil},
		{"s3 multipart", "s3", "POST", "s3.amazonaws.com", "/bucket/k?uploads", "CreateMultipartUpload", nil},
		{"s3 sdk x-id", "s3", "PUT", "b.s3.amazonaws.com", "/k?x-id=PutObject", "PutObject", nil},
		{"s3 delete objects", "s3", "POST", "s3.amazonaws.com", "/bucket?delete", "DeleteObjects", nil},
		{"form action given", "sts", "POST", "sts.amazonaws.com", "/", "AssumeRole", nil},
		{"lambda function URL", "lambda", "GET", "abc123.lambda-url.us-east-1.on.aws", "/orders", "InvokeFunctionUrl", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "https://"+tc.host+tc.target, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			formAct := ""
			if tc.name == "form action given" {
				formAct = "AssumeRole"
			}
			if got := operation(req, tc.service, formAct); got != tc.want {
				t.Errorf("operation = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("form action keeps body", func(t *testing.T) {
		body := "Action=GetCallerIdentity&Version=2011-06-15"
		req := httptest.NewRequest("POST", "https://sts.amazonaws.com/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if got := formAction(req); got != "GetCallerIdentity" {
			t.Fatalf("formAction = %q", got)
		}
		var b bytes.Buffer
		b.ReadFrom(req.Body)
		rc, _ := req.GetBody()
		var b2 bytes.Buffer
		b2.ReadFrom(rc)
		if b.String() != body || b2.String() != body {
			t.Fatalf("body after peek %q / GetBody %q", b.String(), b2.String())
		}
	})
}

type fixedClock struct{ st timesource.Status }

func (c fixedClock) Now() time.Time                 { return c.st.CorrectedTime }
func (c fixedClock) Status() timesource.Status      { return c.st }
func (c fixedClock) Observe(timesource.Observation) {}

func TestAdminHandler(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	synced := timesource.Status{Synced: true, Source: "ntp://169.254.169.123", CorrectedTime: now,
		Offset: -1500 * time.Millisecond, Uncertainty: 2 * time.Millisecond, LastSync: now.Add(-time.Minute)}
	unsynced := timesource.Status{Source: "host", CorrectedTime: now, Reason: "no NTP answer yet"}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("skewproxy_clock_offset_seconds 0\n")) })

	cases := []struct {
		name       string
		opts       AdminOptions
		path       string
		wantStatus int
		check      func(t *testing.T, body string)
	}{
		{"healthz", AdminOptions{Clock: fixedClock{unsynced}}, "/healthz", 200, func(t *testing.T, b string) {
			if strings.TrimSpace(b) != "ok" {
				t.Errorf("body %q", b)
			}
		}},
		{"readyz unsynced", AdminOptions{Clock: fixedClock{unsynced}}, "/readyz", 503, func(t *testing.T, b string) {
			var v map[string]any
			if json.Unmarshal([]byte(b), &v) != nil || v["ready"] != false || v["reason"] != "no NTP answer yet" {
				t.Errorf("body %s", b)
			}
		}},
		{"readyz synced", AdminOptions{Clock: fixedClock{synced}}, "/readyz", 200, nil},
		{"readyz without sync allowed", AdminOptions{Clock: fixedClock{unsynced}, ReadyWithoutSync: true}, "/readyz", 200, nil},
		{"status", AdminOptions{Clock: fixedClock{synced}, Lambda: func() any { return map[string]int{"inflight": 3, "queued": 2} }}, "/status", 200, func(t *testing.T, b string) {
			var v struct {
				Clock struct {
					Synced             bool     `json:"synced"`
					Source             string   `json:"source"`
					CorrectedTime      string   `json:"corrected_time"`
					OffsetSeconds      *float64 `json:"offset_seconds"`
					UncertaintySeconds *float64 `json:"uncertainty_seconds"`
					LastSync           string   `json:"last_sync"`
				} `json:"clock"`
				Lambda struct{ Inflight, Queued *int } `json:"lambda"`
			}
			if err := json.Unmarshal([]byte(b), &v); err != nil {
				t.Fatal(err)
			}
			c := v.Clock
			if !c.Synced || c.Source != "ntp://169.254.169.123" || c.CorrectedTime != "2026-05-01T12:00:00.123456789Z" ||
				c.OffsetSeconds == nil || *c.OffsetSeconds != -1.5 || c.UncertaintySeconds == nil || *c.UncertaintySeconds != 0.002 ||
				c.LastSync != "2026-05-01T11:59:00.123456789Z" {
				t.Errorf("clock %+v from %s", c, b)
			}
			if v.Lambda.Inflight == nil || *v.Lambda.Inflight != 3 || *v.Lambda.Queued != 2 {
				t.Errorf("lambda from %s", b)
			}
		}},
		{"status default lambda", AdminOptions{Clock: fixedClock{unsynced}}, "/status", 200, func(t *testing.T, b string) {
			if !strings.Contains(b, `"lambda":{"inflight":0,"queued":0}`) || !strings.Contains(b, `"last_sync":null`) {
				t.Errorf("body %s", b)
			}
		}},
		{"metrics", AdminOptions{Clock: fixedClock{synced}, Metrics: metrics}, "/metrics", 200, func(t *testing.T, b string) {
			if !strings.Contains(b, "skewproxy_clock_offset_seconds") {
				t.Errorf("body %q", b)
			}
		}},
		{"metrics absent", AdminOptions{Clock: fixedClock{synced}}, "/metrics", 404, nil},
		{"extra", AdminOptions{Clock: fixedClock{synced}, Extra: map[string]http.Handler{"/presign": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("presigned")) })}}, "/presign", 200, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(NewAdminHandler(tc.opts))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

func TestDescribeUpstreamError(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"dns", &netDNSError, 502, "DNS lookup"},
		{"tls", &tlsError{host: "x", err: errors.New("boom")}, 502, "TLS handshake"},
		{"other", errors.New("weird"), 502, "failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := describeUpstreamError("sts.amazonaws.com", tc.err)
			if status != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "boom") {
				t.Errorf("got %d %q", status, msg)
			}
		})
	}
}

var netDNSError = net.DNSError{Err: "no such host", Name: "sts.amazonaws.com", IsNotFound: true}
