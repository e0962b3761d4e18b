package proxytest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary Authorization values, paths, queries and
// bodies to Verify: it must never panic and every failure must be typed.
func FuzzVerify(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", "/", "", []byte(nil))
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00", "/bucket/a%20b/../c", "x=1&x=0&=&%zz", []byte("body"))
	f.Add("", "/", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=e93c", []byte(nil))
	f.Add("AWS4-HMAC-SHA256 ,,,=", "//./../", "a=%", []byte{0})
	creds := Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, auth, path, query string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		r, err := http.NewRequest("POST", "https://example.amazonaws.com"+path+"?"+query, nil)
		if err != nil {
			return
		}
		r.Header.Set("X-Amz-Date", "20150830T123600Z")
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		v, err := Verify(r, body, creds, now, 5*time.Minute)
		if err != nil && KindOf(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
		if err == nil && v == nil {
			t.Fatal("nil Verified without error")
		}
	})
}

// FuzzVerifyChunked feeds arbitrary aws-chunked bodies to VerifyChunked.
func FuzzVerifyChunked(f *testing.F) {
	f.Add([]byte("400;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\naaaa\r\n0;chunk-signature=00\r\n\r\n"))
	f.Add([]byte("0;chunk-signature=\r\n\r\n"))
	f.Add([]byte("ffffffff;chunk-signature=x\r\n"))
	v := &Verified{SigningTime: time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC), Region: "us-east-1", Service: "s3",
		PayloadHash: StreamingPayload, Signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"}
	creds := Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := VerifyChunked(body, v, creds)
		if err != nil && KindOf(err) != FailChunkSignature {
			t.Fatalf("error kind %q", KindOf(err))
		}
		if len(out) > len(body) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(body))
		}
	})
}
