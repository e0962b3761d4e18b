package proxy

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

func TestS3ThroughProxyToMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	m := proxytest.StartMinIO(t)
	h := newHarness(t, harnessOptions{
		keys: &m.Credentials,
		resolve: []string{
			"s3.us-east-1.amazonaws.com:443=" + m.Endpoint(),
			"*.s3.us-east-1.amazonaws.com:443=" + m.Endpoint(),
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, style := range []struct {
		name      string
		pathStyle bool
		bucket    string
	}{
		{"virtual-hosted", false, "vhost-bucket"},
		{"path-style", true, "path-bucket"},
	} {
		t.Run(style.name, func(t *testing.T) {
			cli := s3.NewFromConfig(sdkConfig(h.client()), func(o *s3.Options) { o.UsePathStyle = style.pathStyle })
			if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(style.bucket)}); err != nil {
				t.Fatalf("CreateBucket: %v", err)
			}
			objects := map[string][]byte{
				"with space/a b.txt": []byte("space"),
				"plus+sign":          []byte("plus"),
				"eq=ual&amp":         []byte("equals"),
				"ünïcødé/日本.txt":     []byte("unicode"),
				"big.bin":            bytes.Repeat([]byte("0123456789abcdef"), 3<<16), // 3 MiB
			}
			for key, body := range objects {
				if _, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(style.bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
					t.Fatalf("PutObject %q: %v", key, err)
				}
			}
			for key, want := range objects {
				out, err := cli.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(style.bucket), Key: aws.String(key)})
				if err != nil {
					t.Fatalf("GetObject %q: %v", key, err)
				}
				got, err := io.ReadAll(out.Body)
				out.Body.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("GetObject %q: %d bytes, err %v", key, len(got), err)
				}
			}
			list, err := cli.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(style.bucket)})
			if err != nil {
				t.Fatalf("ListObjectsV2: %v", err)
			}
			var keys, want []string
			for _, o := range list.Contents {
				keys = append(keys, aws.ToString(o.Key))
			}
			for k := range objects {
				want = append(want, k)
			}
			sort.Strings(keys)
			sort.Strings(want)
			if strings.Join(keys, "|") != strings.Join(want, "|") {
				t.Fatalf("listed %q, want %q", keys, want)
			}
			for key := range objects {
				if _, err := cli.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(style.bucket), Key: aws.String(key)}); err != nil {
					t.Fatalf("DeleteObject %q: %v", key, err)
				}
			}
		})
	}

	t.Run("direct without proxy fails", func(t *testing.T) {
		cli := s3.NewFromConfig(sdkConfig(m.Client()), func(o *s3.Options) {
			o.UsePathStyle = true
			o.BaseEndpoint = aws.String(m.Endpoint())
		})
		if _, err := cli.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("path-bucket")}); err == nil {
			t.Fatal("MinIO accepted the placeholder keys")
		}
	})
	eventually(t, "S3 log lines", func() bool {
		l := h.logs.String()
		return strings.Contains(l, "operation=PutObject") && strings.Contains(l, "operation=ListObjectsV2")
	})
}
