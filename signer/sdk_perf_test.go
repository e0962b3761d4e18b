package signer

import (
	"context"
	"net/http"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// s3GetObjectRequest is the signed S3 GetObject of BenchmarkResignS3GetObject
// before the client signed it: an escaped key and the empty-body hash.
func s3GetObjectRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "https://mybucket.s3.us-east-1.amazonaws.com/dir/with%20space/key%2Bplus.txt?x-id=GetObject", nil)
	r.Header = http.Header{
		"User-Agent":            {"aws-sdk-go-v2/1.41.0"},
		"Amz-Sdk-Invocation-Id": {"b6b2f0a4-6d5d-4c61-9d58-9b1d0b6e2f4e"},
		"Amz-Sdk-Request":       {"attempt=1; max=3"},
		"X-Amz-Checksum-Mode":   {"ENABLED"},
		"X-Amz-Content-Sha256":  {emptySHA256},
	}
	r.Body = http.NoBody
	return r
}

// BenchmarkSDKSignS3GetObject is aws-sdk-go-v2's v4 signer signing the
// request of BenchmarkResignS3GetObject from scratch, as the S3 client does
// (no URI path escaping, the empty-body hash given): the baseline that
// `make bench` puts the re-sign cost against.
func BenchmarkSDKSignS3GetObject(b *testing.B) {
	tmpl := s3GetObjectRequest()
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	creds, err := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken).Retrieve(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := tmpl.Clone(ctx)
		if err := signer.SignHTTP(ctx, creds, r, emptySHA256, "s3", "us-east-1", at); err != nil {
			b.Fatal(err)
		}
	}
}
