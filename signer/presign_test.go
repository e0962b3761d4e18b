package signer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// verifyPresigned recomputes a presigned URL's signature independently.
func verifyPresigned(t *testing.T, signed, secret string, s3 bool) url.Values {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	pq, err := ParsePresignedQuery(q)
	if err != nil {
		t.Fatalf("presigned URL does not parse: %v", err)
	}
	var kept []string
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if !strings.HasPrefix(kv, "X-Amz-Signature=") {
			kept = append(kept, kv)
		}
	}
	payload := "UNSIGNED-PAYLOAD"
	if !s3 {
		sum := sha256.Sum256(nil)
		payload = hex.EncodeToString(sum[:])
	}
	canon := checkCanonicalRequest(checkInput{
		Method: http.MethodGet, Path: u.EscapedPath(), RawQuery: strings.Join(kept, "&"), Host: u.Host,
		Signed: pq.SignedHeaders, Payload: payload, S3: s3, Normalize: !s3,
	})
	sts := checkStringToSign(pq.Time, pq.Region, pq.Service, canon)
	if want := checkSig(secret, pq.Time, pq.Region, pq.Service, sts); pq.Signature != want {
		t.Fatalf("presigned signature does not verify:\n%s", canon)
	}
	return q
}

func TestPresign(t *testing.T) {
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		url     string
		creds   aws.Credentials
		expires time.Duration
		s3      bool
		wantErr bool
	}{
		{name: "s3 object with odd key", url: "https://bucket.s3.us-west-2.amazonaws.com/a%20b/c%2Bd%3De/%C3%BC//x", creds: aws.Credentials{AccessKeyID: proxyAKID, SecretAccessKey: proxySecret}, expires: 7 * 24 * time.Hour, s3: true},
		{name: "sts with session token", url: "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", creds: aws.Credentials{AccessKeyID: proxyAKID, SecretAccessKey: proxySecret, SessionToken: proxyToken, CanExpire: true, Expires: at.Add(time.Hour)}, expires: 15 * time.Minute},
		{name: "url would outlive the session", url: "https://bucket.s3.us-west-2.amazonaws.com/k", creds: aws.Credentials{AccessKeyID: proxyAKID, SecretAccessKey: proxySecret, SessionToken: proxyToken, CanExpire: true, Expires: at.Add(time.Hour)}, expires: 2 * time.Hour, s3: true, wantErr: true},
		{name: "over seven days", url: "https://bucket.s3.us-west-2.amazonaws.com/k", creds: aws.Credentials{AccessKeyID: proxyAKID, SecretAccessKey: proxySecret}, expires: 7*24*time.Hour + time.Second, s3: true, wantErr: true},
		{name: "not an AWS host", url: "https://example.com/k", creds: aws.Credentials{AccessKeyID: proxyAKID, SecretAccessKey: proxySecret}, expires: time.Minute, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := New(credentials.StaticCredentialsProvider{Value: tc.creds}, Options{})
			signed, creds, err := s.Presign(context.Background(), req, at, tc.expires)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("presigned %s", signed)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if creds.AccessKeyID != proxyAKID {
				t.Errorf("creds %s", creds.AccessKeyID)
			}
			q := verifyPresigned(t, signed, proxySecret, tc.s3)
			if got, want := q.Get("X-Amz-Expires"), strconv.FormatInt(int64(tc.expires/time.Second), 10); got != want {
				t.Errorf("X-Amz-Expires %s, want %s", got, want)
			}
			if q.Get("X-Amz-Security-Token") != tc.creds.SessionToken {
				t.Errorf("X-Amz-Security-Token %q", q.Get("X-Amz-Security-Token"))
			}
			if u, _ := url.Parse(signed); u.EscapedPath() != req.URL.EscapedPath() {
				t.Errorf("path changed: %s -> %s", req.URL.EscapedPath(), u.EscapedPath())
			}
		})
	}
}
