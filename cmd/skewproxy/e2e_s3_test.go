package main

// S3 through the real binary against a real MinIO: the object life cycle
// with keys that need escaping, path-style and virtual-hosted, and large
// objects that stream (issue 3).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithy "github.com/aws/smithy-go"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// proxyE2EKeys are S3 keys that stress path escaping and canonicalisation.
var proxyE2EKeys = map[string][]byte{
	"with space/a b.txt":         []byte("space"),
	"plus+sign+":                 []byte("plus"),
	"eq=ual&amp=x":               []byte("equals"),
	"co:lon:key":                 []byte("colon"),
	"per%cent%20literal":         []byte("percent"),
	"ünïcødé/日本語.txt":            []byte("unicode"),
	"double//slash":              []byte("double slash"),
	"tilde~star*(paren)'quote'!": []byte("sub-delims"),
}

func proxyE2ES3Resolve(endpoint string) []string {
	return []string{
		"--resolve", "s3.us-east-1.amazonaws.com:443=" + endpoint,
		"--resolve", "*.s3.us-east-1.amazonaws.com:443=" + endpoint,
	}
}

// TestProxyE2ES3MinIO: an SDK S3 client with placeholder keys does the full
// object life cycle against a real MinIO through the binary, path-style and
// virtual-hosted, with keys that need escaping; straight to MinIO the same
// client is refused.
func TestProxyE2ES3MinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	m := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: append(proxyE2ES3Resolve(m.Endpoint()), "--time-source", proxyE2ENoTimeSource),
		Env:  proxyCredsEnv(m.Credentials),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// MinIO refuses some keys itself ("//" is not a valid object name on
	// its file system): learn which, straight from MinIO with its own
	// keys, and expect exactly the same refusal through the proxy. (Had the
	// proxy collapsed "//" MinIO would have accepted the key.)
	refused := map[string]string{}
	direct := proxyE2EMinIOClient(m)
	if _, err := direct.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("e2e-probe")}); err != nil {
		t.Fatalf("CreateBucket straight to MinIO: %v", err)
	}
	for key, body := range proxyE2EKeys {
		if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("e2e-probe"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			refused[key] = proxyE2EErrorCode(err)
			t.Logf("MinIO itself refuses key %q: %s", key, refused[key])
		}
	}

	for _, style := range []struct {
		name      string
		pathStyle bool
		bucket    string
	}{
		{"virtual-hosted", false, "e2e-vhost"},
		{"path-style", true, "e2e-path"},
	} {
		t.Run(style.name, func(t *testing.T) {
			cli := s3.NewFromConfig(p.awsConfig(), func(o *s3.Options) { o.UsePathStyle = style.pathStyle })
			bucket := aws.String(style.bucket)
			if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
				t.Fatalf("CreateBucket: %v", err)
			}
			var want []string
			for key, body := range proxyE2EKeys {
				_, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(key), Body: bytes.NewReader(body)})
				if code, ok := refused[key]; ok {
					if got := proxyE2EErrorCode(err); got != code {
						t.Errorf("PutObject %q through the proxy: %v; want MinIO's own refusal %s", key, err, code)
					}
					continue
				}
				want = append(want, key)
				if err != nil {
					t.Errorf("PutObject %q: %v", key, err)
				}
			}
			for key, body := range proxyE2EKeys {
				if _, ok := refused[key]; ok {
					continue
				}
				out, err := cli.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String(key)})
				if err != nil {
					t.Errorf("GetObject %q: %v", key, err)
					continue
				}
				got, err := io.ReadAll(out.Body)
				out.Body.Close()
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("GetObject %q = %q (err %v), want %q", key, got, err, body)
				}
			}
			sort.Strings(want)
			if got := proxyE2EListKeys(ctx, t, cli, style.bucket); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("ListObjectsV2 keys:\n got %q\nwant %q", got, want)
			}
			for _, key := range want {
				if _, err := cli.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(key)}); err != nil {
					t.Errorf("DeleteObject %q: %v", key, err)
				}
			}
			if got := proxyE2EListKeys(ctx, t, cli, style.bucket); len(got) != 0 {
				t.Errorf("after DeleteObject, ListObjectsV2 still lists %q", got)
			}
		})
	}

	if len(refused) > len(proxyE2EKeys)/2 {
		t.Errorf("MinIO refused most keys straight away (%v): the test proves little", refused)
	}

	t.Run("placeholder keys straight to MinIO are refused", func(t *testing.T) {
		direct := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: placeholderKeys, HTTPClient: m.Client(), RetryMaxAttempts: 1},
			func(o *s3.Options) { o.UsePathStyle = true; o.BaseEndpoint = aws.String(m.Endpoint()) })
		if _, err := direct.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("e2e-path")}); err == nil {
			t.Fatal("MinIO accepted the placeholder keys")
		}
	})
}

// proxyE2EMinIOClient is an S3 client straight to MinIO with its own keys.
func proxyE2EMinIOClient(m *proxytest.MinIO) *s3.Client {
	return s3.NewFromConfig(aws.Config{Region: "us-east-1", HTTPClient: m.Client(), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: m.Credentials.AccessKeyID, SecretAccessKey: m.Credentials.SecretAccessKey}, nil
		})}, func(o *s3.Options) { o.UsePathStyle = true; o.BaseEndpoint = aws.String(m.Endpoint()) })
}

// proxyE2EErrorCode is the AWS error code of err ("" for nil, "?" for an
// error that is not an API error).
func proxyE2EErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return "?"
}

func proxyE2EListKeys(ctx context.Context, t *testing.T, cli *s3.Client, bucket string) []string {
	t.Helper()
	var keys []string
	pg := s3.NewListObjectsV2Paginator(cli, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListObjectsV2 %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys)
	return keys
}

// TestProxyE2ES3LargeGetStreams: a 64 MiB GetObject through the binary
// arrives intact, in bounded time, without the proxy holding the object in
// memory (its peak RSS stays below the object's size).
func TestProxyE2ES3LargeGetStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	const size = 64 << 20
	m := proxytest.StartMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// Put the object straight into MinIO with its own keys: this test is
	// about the download.
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i>>13)
	}
	wantSum := sha256.Sum256(body)
	direct := proxyE2EMinIOClient(m)
	if _, err := direct.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("big")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("big"), Key: aws.String("64MiB.bin"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	body = nil

	p := startProxy(t, proxyOptions{
		Args: append(proxyE2ES3Resolve(m.Endpoint()), "--time-source", proxyE2ENoTimeSource),
		Env:  proxyCredsEnv(m.Credentials),
	})
	baseline := proxyE2EPeakRSS(t, p)
	cli := s3.NewFromConfig(p.awsConfig())
	start := time.Now()
	out, err := cli.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("big"), Key: aws.String("64MiB.bin")})
	if err != nil {
		t.Fatalf("GetObject through the proxy: %v", err)
	}
	defer out.Body.Close()
	h := sha256.New()
	first := make([]byte, 1)
	if _, err := io.ReadFull(out.Body, first); err != nil {
		t.Fatalf("first byte: %v", err)
	}
	ttfb := time.Since(start)
	h.Write(first)
	n, err := io.Copy(h, out.Body)
	total := time.Since(start)
	if err != nil || n+1 != size {
		t.Fatalf("read %d bytes (err %v), want %d", n+1, err, size)
	}
	if !bytes.Equal(h.Sum(nil), wantSum[:]) {
		t.Fatal("the object that came through the proxy differs from the one stored")
	}
	peak := proxyE2EPeakRSS(t, p)
	t.Logf("64 MiB GetObject: first byte after %v, all after %v (%.0f MiB/s); proxy peak RSS %d MiB (%d MiB before)",
		ttfb, total, float64(size)/(1<<20)/total.Seconds(), peak>>20, baseline>>20)
	if peak >= size {
		t.Errorf("proxy peak RSS %d MiB >= the object's 64 MiB: the answer was buffered, not streamed", peak>>20)
	}
}

// proxyE2EPeakRSS is the child proxy's peak resident set (VmHWM), in bytes.
func proxyE2EPeakRSS(t *testing.T, p *runningProxy) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		t.Skipf("no /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return kb << 10
			}
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}
