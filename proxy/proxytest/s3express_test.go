package proxytest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const testExpressBucket = "data--use1-az4--x-s3"

func expressSDK(fake *S3Express, creds Credentials) *s3.Client {
	return s3.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		HTTPClient:  fake.Client(),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	})
}

// TestS3ExpressFakeWithSDK: the real S3 client does CreateSession itself
// and then signs with the session; the fake serves it and refuses base
// keys it does not know.
func TestS3ExpressFakeWithSDK(t *testing.T) {
	fake := NewS3Express(t, S3ExpressOptions{Credentials: proxyCreds})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := expressSDK(fake, proxyCreds)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testExpressBucket), Key: aws.String("dir/a b.txt"),
		Body: strings.NewReader("hello express")}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testExpressBucket), Key: aws.String("dir/a b.txt")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(body) != "hello express" {
		t.Errorf("GetObject = %q", body)
	}
	var ops []string
	for _, r := range fake.Requests() {
		ops = append(ops, r.Operation)
		if r.Verified == nil || r.Code != "" {
			t.Errorf("%s refused: %s", r.Operation, r.Code)
		}
		t.Logf("%s %s: payload %s", r.Method, r.Operation, r.Header.Get("X-Amz-Content-Sha256"))
		if (r.Operation == "CreateSession") == r.Session {
			t.Errorf("%s: Session = %v", r.Operation, r.Session)
		}
	}
	if got := strings.Join(ops, ","); got != "CreateSession,PutObject,GetObject" {
		t.Errorf("operations %s", got)
	}
	if n := len(fake.Sessions()); n != 1 {
		t.Errorf("%d sessions issued, want 1", n)
	}

	other := expressSDK(fake, Credentials{AccessKeyID: "AKIDOTHER", SecretAccessKey: "other"})
	_, err = other.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testExpressBucket), Key: aws.String("dir/a b.txt")})
	// The SDK wraps the CreateSession failure as text (get identity).
	if err == nil || !strings.Contains(err.Error(), "InvalidAccessKeyId") {
		t.Errorf("GetObject with unknown base keys: %v, want InvalidAccessKeyId", err)
	}
}

// TestS3ExpressFakeSessionRules: data requests signed by hand, judged by
// the fake's session rules.
func TestS3ExpressFakeSessionRules(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)}
	fake := NewS3Express(t, S3ExpressOptions{Credentials: proxyCreds, Now: clock.Now})
	sess := fake.NewSession(testExpressBucket)
	host := testExpressBucket + ".s3express-use1-az4.us-east-1.amazonaws.com"
	type req struct {
		host, token, securityToken string
		creds                      Credentials
		service                    string
		unsignedToken              bool
		at                         time.Duration // after the session began
	}
	good := req{host: host, token: sess.Token, creds: Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.SecretAccessKey}, service: "s3express"}
	with := func(f func(*req)) req { r := good; f(&r); return r }
	otherBucket := "other--use1-az4--x-s3"
	cases := []struct {
		name     string
		r        req
		wantCode string
	}{
		{"session request", good, "NoSuchKey"},
		{"unknown token", with(func(r *req) { r.token = "not-a-token" }), "InvalidToken"},
		{"no token", with(func(r *req) { r.token = "" }), "AccessDenied"},
		{"expired session", with(func(r *req) { r.at = 5 * time.Minute }), "ExpiredToken"},
		{"other bucket", with(func(r *req) { r.host = otherBucket + ".s3express-use1-az4.us-east-1.amazonaws.com" }), "AccessDenied"},
		{"token not signed", with(func(r *req) { r.unsignedToken = true }), "AccessDenied"},
		{"x-amz-security-token too", with(func(r *req) { r.securityToken = sess.Token }), "InvalidToken"},
		{"signed as s3", with(func(r *req) { r.service = "s3" }), "AuthorizationHeaderMalformed"},
		{"base keys", with(func(r *req) { r.creds = proxyCreds }), "InvalidAccessKeyId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(sess.Expires.Add(-5 * time.Minute).Add(tc.r.at))
			hreq, _ := http.NewRequest(http.MethodGet, "https://"+tc.r.host+"/missing", nil)
			hreq.Header.Set("X-Amz-Content-Sha256", emptySHA256)
			if tc.r.token != "" && !tc.r.unsignedToken {
				hreq.Header.Set("X-Amz-S3session-Token", tc.r.token)
			}
			if tc.r.securityToken != "" {
				hreq.Header.Set("X-Amz-Security-Token", tc.r.securityToken)
			}
			c := aws.Credentials{AccessKeyID: tc.r.creds.AccessKeyID, SecretAccessKey: tc.r.creds.SecretAccessKey}
			if err := v4.NewSigner().SignHTTP(context.Background(), c, hreq, emptySHA256, tc.r.service, "us-east-1", clock.Now(),
				func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
				t.Fatal(err)
			}
			if tc.r.unsignedToken {
				hreq.Header.Set("X-Amz-S3session-Token", tc.r.token)
			}
			resp, err := fake.Client().Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "<Code>"+tc.wantCode+"</Code>") {
				t.Errorf("answer %d %s, want %s", resp.StatusCode, body, tc.wantCode)
			}
		})
	}
}

func TestS3ExpressFakeUnsignedChunked(t *testing.T) {
	body := "5\r\nhello\r\n8\r\n express\r\n0\r\nx-amz-checksum-crc32:" + crc32Base64([]byte("hello express")) + "\r\n\r\n"
	data, tr, err := decodeUnsignedChunked([]byte(body))
	if err != nil || string(data) != "hello express" || tr.Get("X-Amz-Checksum-Crc32") != crc32Base64(data) {
		t.Fatalf("decoded %q %v %v", data, tr, err)
	}
	for _, bad := range []string{"5\r\nhell\r\n0\r\n\r\n", "x\r\n", "0\r\n", "0\r\n\r\nextra", "0\r\nnocolon\r\n\r\n"} {
		if _, _, err := decodeUnsignedChunked([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
