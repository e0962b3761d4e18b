package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

func TestPresignBuild(t *testing.T) {
	tests := []struct {
		name    string
		in      presignInput
		wantURL string // expected URL (before signing); "" when an error is expected
		wantErr string // substring of the error
		custom  bool
		region  string
		expires time.Duration
		method  string
	}{
		{name: "defaults", in: presignInput{Target: "s3://bucket/key"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/key", region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "method lower case", in: presignInput{Method: "put", Target: "s3://bucket/k"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: time.Hour, method: "PUT"},
		{name: "method HEAD", in: presignInput{Method: "HEAD", Target: "s3://bucket/k"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: time.Hour, method: "HEAD"},
		{name: "method DELETE", in: presignInput{Method: "DELETE", Target: "s3://bucket/k"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: time.Hour, method: "DELETE"},
		{name: "method POST refused", in: presignInput{Method: "POST", Target: "s3://bucket/k"}, wantErr: "want GET, PUT, HEAD or DELETE"},
		{name: "method PATCH refused", in: presignInput{Method: "patch", Target: "s3://bucket/k"}, wantErr: "want GET, PUT, HEAD or DELETE"},

		{name: "expires 1s", in: presignInput{Target: "s3://bucket/k", Expires: "1s"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: time.Second, method: "GET"},
		{name: "expires 7 days", in: presignInput{Target: "s3://bucket/k", Expires: "168h"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: 7 * 24 * time.Hour, method: "GET"},
		{name: "expires seconds", in: presignInput{Target: "s3://bucket/k", Expires: "604800"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: 7 * 24 * time.Hour, method: "GET"},
		{name: "expires 0", in: presignInput{Target: "s3://bucket/k", Expires: "0s"}, wantErr: "want 1s to 7 days"},
		{name: "expires 0 seconds", in: presignInput{Target: "s3://bucket/k", Expires: "0"}, wantErr: "want 1 second to 7 days"},
		{name: "expires too long", in: presignInput{Target: "s3://bucket/k", Expires: "168h1s"}, wantErr: "want 1s to 7 days"},
		{name: "expires too many seconds", in: presignInput{Target: "s3://bucket/k", Expires: "604801"}, wantErr: "want 1 second to 7 days"},
		{name: "expires negative", in: presignInput{Target: "s3://bucket/k", Expires: "-5m"}, wantErr: "want 1s to 7 days"},
		{name: "expires fraction", in: presignInput{Target: "s3://bucket/k", Expires: "1500ms"}, wantErr: "whole number of seconds"},
		{name: "expires garbage", in: presignInput{Target: "s3://bucket/k", Expires: "soon"}, wantErr: "want a duration"},

		{name: "bucket with dots is path-style", in: presignInput{Target: "s3://my.bucket/a/b.txt"}, wantURL: "https://s3.us-east-1.amazonaws.com/my.bucket/a/b.txt", region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "region", in: presignInput{Target: "s3://bucket/k", Region: "eu-west-1"}, wantURL: "https://bucket.s3.eu-west-1.amazonaws.com/k", region: "eu-west-1", expires: time.Hour, method: "GET"},
		{name: "china region", in: presignInput{Target: "s3://bucket/k", Region: "cn-north-1"}, wantURL: "https://bucket.s3.cn-north-1.amazonaws.com.cn/k", region: "cn-north-1", expires: time.Hour, method: "GET"},
		{name: "key escaped as S3 signs it", in: presignInput{Target: "s3://bucket/dir/a b+c=ü~x.txt"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/dir/a%20b%2Bc%3D%C3%BC~x.txt", region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "bucket and key fields", in: presignInput{Bucket: "bucket", Key: "k 1"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k%201", region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL is path-style", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://127.0.0.1:9000"}, wantURL: "http://127.0.0.1:9000/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL with slash", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://127.0.0.1:9000/", Region: "eu-west-2"}, wantURL: "http://127.0.0.1:9000/bucket/k", custom: true, region: "eu-west-2", expires: time.Hour, method: "GET"},
		{name: "endpoint URL on AWS", in: presignInput{Target: "s3://bucket/k", EndpointURL: "https://s3.eu-west-1.amazonaws.com", Region: "eu-west-1"}, wantURL: "https://s3.eu-west-1.amazonaws.com/bucket/k", region: "eu-west-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL with empty port", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://127.0.0.1:"}, wantURL: "http://127.0.0.1/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL IPv6 with empty port", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://[::1]:"}, wantURL: "http://[::1]/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL IPv6 with port", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://[::1]:9000"}, wantURL: "http://[::1]:9000/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL with default port", in: presignInput{Target: "s3://bucket/k", EndpointURL: "https://127.0.0.1:443"}, wantURL: "https://127.0.0.1/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL with other scheme's default port", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://127.0.0.1:443"}, wantURL: "http://127.0.0.1:443/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL path escaped as S3 signs it", in: presignInput{Target: "s3://bucket/k", EndpointURL: "http://127.0.0.1:9000/s3!api/a%20b/"}, wantURL: "http://127.0.0.1:9000/s3%21api/a%20b/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "endpoint URL not a URL", in: presignInput{Target: "s3://bucket/k", EndpointURL: "127.0.0.1:9000"}, wantErr: "want http(s)://HOST[:PORT]"},
		{name: "s3 without key", in: presignInput{Target: "s3://bucket"}, wantErr: "the key is missing"},
		{name: "s3 with empty key", in: presignInput{Target: "s3://bucket/"}, wantErr: "the key is missing"},
		{name: "bad bucket", in: presignInput{Target: "s3://b/k"}, wantErr: "not a valid S3 bucket name"},
		{name: "bad region", in: presignInput{Target: "s3://bucket/k", Region: "EU West"}, wantErr: "want a region name"},

		{name: "https URL on AWS", in: presignInput{Target: "https://bucket.s3.eu-west-1.amazonaws.com/k?versionId=3"}, wantURL: "https://bucket.s3.eu-west-1.amazonaws.com/k?versionId=3", region: "eu-west-1", expires: time.Hour, method: "GET"},
		{name: "https URL region mismatch", in: presignInput{Target: "https://bucket.s3.eu-west-1.amazonaws.com/k", Region: "us-east-2"}, wantErr: "the host is in eu-west-1"},
		{name: "http URL outside AWS", in: presignInput{Target: "http://127.0.0.1:9000/bucket/k"}, wantURL: "http://127.0.0.1:9000/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "http URL with empty port", in: presignInput{Target: "http://127.0.0.1:/bucket/k"}, wantURL: "http://127.0.0.1/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "https URL on AWS with empty port", in: presignInput{Target: "https://bucket.s3.eu-west-1.amazonaws.com:/k"}, wantURL: "https://bucket.s3.eu-west-1.amazonaws.com/k", region: "eu-west-1", expires: time.Hour, method: "GET"},
		{name: "https URL on AWS with default port", in: presignInput{Target: "https://bucket.s3.eu-west-1.amazonaws.com:443/k"}, wantURL: "https://bucket.s3.eu-west-1.amazonaws.com/k", region: "eu-west-1", expires: time.Hour, method: "GET"},
		{name: "HTTP URL with default port", in: presignInput{Target: "HTTP://127.0.0.1:80/bucket/k"}, wantURL: "http://127.0.0.1/bucket/k", custom: true, region: "us-east-1", expires: time.Hour, method: "GET"},
		{name: "URL already presigned", in: presignInput{Target: "https://bucket.s3.us-east-1.amazonaws.com/k?X-Amz-Signature=abc"}, wantErr: "already carries X-Amz-Signature"},
		{name: "ftp URL", in: presignInput{Target: "ftp://example.com/k"}, wantErr: "want s3://BUCKET/KEY or an http(s):// URL"},
		{name: "URL with user", in: presignInput{Target: "https://u:p@bucket.s3.us-east-1.amazonaws.com/k"}, wantErr: "user information"},
		{name: "endpoint with https URL", in: presignInput{Target: "https://bucket.s3.us-east-1.amazonaws.com/k", EndpointURL: "http://127.0.0.1:9000"}, wantErr: "--endpoint-url applies to s3://"},
		{name: "URL and bucket", in: presignInput{Target: "s3://bucket/k", Bucket: "other"}, wantErr: "not both"},
		{name: "nothing", in: presignInput{}, wantErr: "nothing to presign"},

		{name: "content type on PUT", in: presignInput{Method: "PUT", Target: "s3://bucket/k", ContentType: "text/plain"}, wantURL: "https://bucket.s3.us-east-1.amazonaws.com/k", region: "us-east-1", expires: time.Hour, method: "PUT"},
		{name: "content type on GET", in: presignInput{Target: "s3://bucket/k", ContentType: "text/plain"}, wantErr: "PUT URLs only"},
		{name: "header Authorization refused", in: presignInput{Target: "s3://bucket/k", Header: http.Header{"Authorization": {"x"}}}, wantErr: "set by the signer"},
		{name: "header X-Amz-Date refused", in: presignInput{Target: "s3://bucket/k", Header: http.Header{"X-Amz-Date": {"x"}}}, wantErr: "set by the signer"},
		{name: "header bad name", in: presignInput{Target: "s3://bucket/k", Header: http.Header{"Bad Name": {"x"}}}, wantErr: "not a valid header name"},
		{name: "header value with newline", in: presignInput{Target: "s3://bucket/k", Header: http.Header{"X-Amz-Meta-A": {"x\r\ny"}}}, wantErr: "line break"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := buildPresign(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if !isInputError(err) {
					t.Errorf("err %T is not an input error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("buildPresign: %v", err)
			}
			if got := r.URL.String(); got != tc.wantURL {
				t.Errorf("URL = %s, want %s", got, tc.wantURL)
			}
			if r.Custom != tc.custom || r.Region != tc.region || r.Expires != tc.expires || r.Method != tc.method {
				t.Errorf("custom %t region %s expires %s method %s; want %t %s %s %s", r.Custom, r.Region, r.Expires, r.Method, tc.custom, tc.region, tc.expires, tc.method)
			}
		})
	}
}

func TestPresignParseHeaderFlags(t *testing.T) {
	h, err := parseHeaderFlags([]string{"X-Amz-Meta-Owner: alice", "x-amz-acl:private", "Cache-Control: max-age=60, public"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("X-Amz-Meta-Owner") != " alice" || h.Get("X-Amz-Acl") != "private" || h.Get("Cache-Control") != " max-age=60, public" {
		t.Errorf("headers = %v", h)
	}
	for _, bad := range []string{"no-colon", ":value", " : v"} {
		if _, err := parseHeaderFlags([]string{bad}); err == nil {
			t.Errorf("--header %q accepted", bad)
		}
	}
}

// presignTestProvider hands out fixed credentials.
type presignTestProvider struct{ creds aws.Credentials }

func (p presignTestProvider) Retrieve(context.Context) (aws.Credentials, error) { return p.creds, nil }

// presignVerify checks a presigned URL with the independent verifier in
// proxytest, as a client holding it would send it.
func presignVerify(t *testing.T, res presignResult, method string, creds aws.Credentials, now time.Time) *proxytest.Verified {
	t.Helper()
	req, err := http.NewRequest(method, res.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range res.Headers {
		req.Header.Set(k, v)
	}
	v, err := proxytest.Verify(req, nil, proxytest.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, now, time.Second)
	if err != nil {
		t.Fatalf("presigned URL does not verify: %v", err)
	}
	return v
}

func TestPresignCredentialLife(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 400e6, time.UTC)
	iamUser := aws.Credentials{AccessKeyID: "AKIDUSER", SecretAccessKey: "user-secret", Source: "EnvConfigCredentials"}
	session := aws.Credentials{AccessKeyID: "ASIASESSION", SecretAccessKey: "session-secret", SessionToken: "token",
		Source: "ProcessProvider", CanExpire: true, Expires: now.Add(10*time.Minute - 700*time.Millisecond)} // 12:09:59.7
	tokenNoExpiry := aws.Credentials{AccessKeyID: "ASIAENV", SecretAccessKey: "s", SessionToken: "token", Source: "EnvConfigCredentials"}
	dying := session
	dying.Expires = now.Add(500 * time.Millisecond)

	tests := []struct {
		name        string
		creds       aws.Credentials
		target      string
		expires     string
		clamp       bool
		wantErr     []string // substrings, in a *credentialLifeError
		wantExpires time.Duration
		wantClamped bool
		wantCredExp bool
		wantWarning string
	}{
		{name: "IAM user keys, 7 days", creds: iamUser, expires: "168h", wantExpires: 168 * time.Hour},
		{name: "session within its life", creds: session, expires: "5m", wantExpires: 5 * time.Minute, wantCredExp: true},
		{name: "session exactly its life", creds: session, expires: "9m59s", wantExpires: 9*time.Minute + 59*time.Second, wantCredExp: true},
		{name: "session a second too short", creds: session, expires: "10m", wantCredExp: true, wantErr: []string{"9m59s or less"}},
		{name: "session past its life refused", creds: session, expires: "1h", wantCredExp: true,
			wantErr: []string{"ProcessProvider (credential process)", "2026-03-01T12:09:59Z", "IAM-user access keys", "--clamp", "9m59s or less"}},
		{name: "session past its life clamped", creds: session, expires: "1h", clamp: true, wantExpires: 9*time.Minute + 59*time.Second, wantClamped: true, wantCredExp: true,
			wantWarning: "expiry clamped from 1h0m0s to 9m59s"},
		{name: "clamped on a custom endpoint", creds: session, target: "http://127.0.0.1:9000/bucket/k", expires: "1h", clamp: true, wantExpires: 9*time.Minute + 59*time.Second, wantClamped: true, wantCredExp: true, wantWarning: "expiry clamped"},
		{name: "dying session not clamped", creds: dying, expires: "1h", clamp: true, wantCredExp: true, wantErr: []string{"refresh the credentials"}},
		{name: "token without expiry warns", creds: tokenNoExpiry, expires: "2h", wantExpires: 2 * time.Hour, wantWarning: "no expiry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "s3://bucket/dir/a b.txt"
			}
			r, err := buildPresign(presignInput{Target: target, Expires: tc.expires, Clamp: tc.clamp})
			if err != nil {
				t.Fatal(err)
			}
			sgn := signer.New(presignTestProvider{tc.creds}, signer.Options{})
			res, err := presign(context.Background(), sgn, "credential process", now, r, "--clamp")
			if (res.CredentialExpiresAt != nil) != tc.wantCredExp {
				t.Errorf("credential_expires_at = %v, want set %t", res.CredentialExpiresAt, tc.wantCredExp)
			}
			if tc.wantErr != nil {
				var le *credentialLifeError
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want a credential life refusal", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("presign: %v", err)
			}
			v := presignVerify(t, res, http.MethodGet, tc.creds, now)
			if v.Expires != tc.wantExpires || res.Clamped != tc.wantClamped {
				t.Errorf("X-Amz-Expires %s clamped %t; want %s %t", v.Expires, res.Clamped, tc.wantExpires, tc.wantClamped)
			}
			if want := now.Truncate(time.Second); !v.SigningTime.Equal(want) || !res.SignedAt.Equal(want) {
				t.Errorf("signed at %s (result %s), want %s", v.SigningTime, res.SignedAt, want)
			}
			if want := now.Truncate(time.Second).Add(tc.wantExpires); !res.ExpiresAt.Equal(want) {
				t.Errorf("expires_at = %s, want %s", res.ExpiresAt, want)
			}
			if res.CredentialExpiresAt != nil && res.ExpiresAt.After(*res.CredentialExpiresAt) {
				t.Errorf("URL expires at %s, after its credentials (%s)", res.ExpiresAt, res.CredentialExpiresAt)
			}
			if v.SessionToken != (tc.creds.SessionToken != "") {
				t.Errorf("session token signed %t", v.SessionToken)
			}
			if w := strings.Join(res.Warnings, "\n"); (tc.wantWarning == "") != (w == "") || !strings.Contains(w, tc.wantWarning) {
				t.Errorf("warnings %q, want %q", w, tc.wantWarning)
			}
		})
	}
}

func TestPresignSignedHeaders(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "AKIDUSER", SecretAccessKey: "user-secret"}
	tests := []struct {
		name   string
		target string
	}{
		{name: "AWS host", target: "s3://bucket/up load.txt"},
		{name: "custom endpoint", target: "http://127.0.0.1:9000/bucket/up%20load.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := buildPresign(presignInput{Method: "PUT", Target: tc.target, ContentType: "text/plain",
				Header: http.Header{"X-Amz-Meta-Owner": {"alice"}, "Cache-Control": {"no-cache"}}, Expires: "900"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := presign(context.Background(), signer.New(presignTestProvider{creds}, signer.Options{}), "", now, r, "--clamp")
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Headers) != 3 || res.Headers["Content-Type"] != "text/plain" || res.Headers["Cache-Control"] != "no-cache" || res.Headers["X-Amz-Meta-Owner"] != "alice" {
				t.Errorf("headers to send = %v", res.Headers)
			}
			v := presignVerify(t, res, http.MethodPut, creds, now)
			if strings.Join(v.SignedHeaders, ";") != "cache-control;content-type;host;x-amz-meta-owner" {
				t.Errorf("signed headers = %v", v.SignedHeaders)
			}
			// Without the signed Content-Type the signature does not hold.
			req, _ := http.NewRequest(http.MethodPut, res.URL, nil)
			req.Header.Set("Cache-Control", "no-cache")
			if _, err := proxytest.Verify(req, nil, proxytest.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey}, now, time.Second); err == nil {
				t.Error("URL verified without its signed Content-Type")
			}
		})
	}
}

func TestPresignHandler(t *testing.T) {
	now := time.Now()
	creds := aws.Credentials{AccessKeyID: "ASIAHANDLER", SecretAccessKey: "handler-secret", SessionToken: "tok",
		Source: "ProcessProvider", CanExpire: true, Expires: now.Add(20 * time.Minute)}
	h := presignHandler(signer.New(presignTestProvider{creds}, signer.Options{}), timesource.NewHostClock(0), nil)
	tests := []struct {
		name        string
		method      string
		body        string
		wantStatus  int
		wantMessage string // substring of "message" for errors
		wantExpires time.Duration
		wantClamped bool
	}{
		{name: "bucket and key", method: "POST", body: `{"method":"GET","bucket":"bucket","key":"k","expires":"5m"}`, wantStatus: 200, wantExpires: 5 * time.Minute},
		{name: "url and seconds", method: "POST", body: `{"method":"PUT","url":"https://bucket.s3.us-east-1.amazonaws.com/k","expires":900}`, wantStatus: 200, wantExpires: 15 * time.Minute},
		{name: "default expiry clamped", method: "POST", body: `{"bucket":"bucket","key":"k","clamp":true}`, wantStatus: 200, wantClamped: true},
		{name: "past the session", method: "POST", body: `{"bucket":"bucket","key":"k","expires":"1h"}`, wantStatus: 400, wantMessage: `"clamp": true`},
		{name: "expires too long", method: "POST", body: `{"bucket":"bucket","key":"k","expires":"200h"}`, wantStatus: 400, wantMessage: "7 days"},
		{name: "expires fractional seconds", method: "POST", body: `{"bucket":"bucket","key":"k","expires":1.5}`, wantStatus: 400, wantMessage: "whole seconds"},
		{name: "expires an object", method: "POST", body: `{"bucket":"bucket","key":"k","expires":{}}`, wantStatus: 400, wantMessage: "duration string"},
		{name: "bad method", method: "POST", body: `{"method":"POST","bucket":"bucket","key":"k"}`, wantStatus: 400, wantMessage: "want GET, PUT"},
		{name: "unknown field", method: "POST", body: `{"bucket":"bucket","key":"k","expiry":"5m"}`, wantStatus: 400, wantMessage: "unknown field"},
		{name: "not JSON", method: "POST", body: `bucket=b`, wantStatus: 400, wantMessage: "want a JSON object"},
		{name: "no target", method: "POST", body: `{}`, wantStatus: 400, wantMessage: "nothing to presign"},
		{name: "GET refused", method: "GET", wantStatus: 405, wantMessage: "use POST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/presign", strings.NewReader(tc.body)))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.wantStatus == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q", rec.Header().Get("Allow"))
			}
			if tc.wantStatus != 200 {
				var e struct{ Message string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Message, tc.wantMessage) {
					t.Errorf("message %q (%v), want one containing %q", e.Message, err, tc.wantMessage)
				}
				return
			}
			var res presignResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(res.URL)
			if err != nil || u.Host != "bucket.s3.us-east-1.amazonaws.com" {
				t.Fatalf("url %q (%v)", res.URL, err)
			}
			if res.Clamped != tc.wantClamped || res.CredentialExpiresAt == nil || !res.CredentialExpiresAt.Equal(creds.Expires.UTC().Truncate(0)) {
				t.Errorf("clamped %t credential_expires_at %v", res.Clamped, res.CredentialExpiresAt)
			}
			if res.ExpiresAt.After(creds.Expires) {
				t.Errorf("expires_at %s after the credentials' %s", res.ExpiresAt, creds.Expires)
			}
			if tc.wantExpires != 0 {
				if got, want := u.Query().Get("X-Amz-Expires"), strconv.FormatInt(int64(tc.wantExpires/time.Second), 10); got != want {
					t.Errorf("X-Amz-Expires = %s, want %s", got, want)
				}
			}
			if !strings.Contains(rec.Body.String(), `"credential_expires_at"`) || !strings.Contains(rec.Body.String(), `"expires_at"`) {
				t.Errorf("body lacks the documented fields: %s", rec.Body)
			}
		})
	}
}

// TestPresignCommandErrors: bad flags and arguments are refused with exit
// code 2 and a clear message, before any credentials or time source.
func TestPresignCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no target", args: nil, want: "give exactly one s3://BUCKET/KEY"},
		{name: "two targets", args: []string{"s3://bucket/a", "s3://bucket/b"}, want: "give exactly one"},
		{name: "flags after the URL", args: []string{"s3://bucket/k", "--expires", "5m"}, want: "flags go before the URL"},
		{name: "method", args: []string{"--method", "POST", "s3://bucket/k"}, want: "want GET, PUT, HEAD or DELETE"},
		{name: "expires zero", args: []string{"--expires", "0s", "s3://bucket/k"}, want: "want 1s to 7 days"},
		{name: "expires eight days", args: []string{"--expires", "192h", "s3://bucket/k"}, want: "want 1s to 7 days"},
		{name: "expires in days", args: []string{"--expires", "8d", "s3://bucket/k"}, want: "1s to 168h"},
		{name: "header without colon", args: []string{"--header", "X-Amz-Meta-A", "s3://bucket/k"}, want: "want NAME:VALUE"},
		{name: "content type on GET", args: []string{"--content-type", "text/plain", "s3://bucket/k"}, want: "PUT URLs only"},
		{name: "endpoint with a full URL", args: []string{"--endpoint-url", "http://127.0.0.1:9000", "https://bucket.s3.us-east-1.amazonaws.com/k"}, want: "--endpoint-url applies to s3://"},
		{name: "bad time source", args: []string{"--time-source", "udp://127.0.0.1", "s3://bucket/k"}, want: "--time-source"},
		{name: "bad clock offset", args: []string{"--clock-offset", "sideways", "s3://bucket/k"}, want: "clock-offset"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			err := run(context.Background(), append([]string{"skewproxy", "presign"}, tc.args...), &out, &errb)
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != 2 {
				t.Fatalf("err = %v, want exit code 2", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q", out.String())
			}
		})
	}
}

// FuzzPresignBuild: whatever the input, buildPresign never panics, and an
// accepted order yields a URL the independent verifier accepts.
func FuzzPresignBuild(f *testing.F) {
	f.Add("GET", "s3://bucket/key", "", "", "1h")
	f.Add("PUT", "s3://my.bucket/a b/ü?x#y", "", "eu-west-1", "900")
	f.Add("HEAD", "https://bucket.s3.us-east-1.amazonaws.com/k?versionId=1&a=%20", "", "", "1s")
	f.Add("delete", "s3://bucket/k%2F..//./x", "http://127.0.0.1:9000/base", "", "168h")
	f.Add("GET", "http://127.0.0.1:9000/b/k;x=1", "", "us-west-2", "604800")
	f.Add("GET", "https://bucket.s3.us-east-1.amazonaws.com:443/k", "", "", "1h")
	f.Add("PUT", "s3://bucket/k", "https://[::1]:443", "", "1h")
	creds := aws.Credentials{AccessKeyID: "AKIDFUZZ", SecretAccessKey: "fuzz-secret"}
	sgn := signer.New(presignTestProvider{creds}, signer.Options{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, method, target, endpoint, region, expires string) {
		r, err := buildPresign(presignInput{Method: method, Target: target, EndpointURL: endpoint, Region: region, Expires: expires})
		if err != nil {
			if !isInputError(err) {
				t.Fatalf("error %v is not an input error", err)
			}
			return
		}
		res, err := presign(context.Background(), sgn, "", now, r, "--clamp")
		if err != nil {
			if r.Custom || isAWSHost(r.URL.Host) {
				t.Fatalf("accepted order %+v failed to sign: %v", r, err)
			}
			return
		}
		req, err := http.NewRequest(r.Method, res.URL, nil)
		if err != nil {
			t.Fatalf("signed URL %q does not parse: %v", res.URL, err)
		}
		if _, err := proxytest.Verify(req, nil, proxytest.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey}, now, time.Second); err != nil {
			t.Fatalf("signed URL %q does not verify: %v", res.URL, err)
		}
	})
}
