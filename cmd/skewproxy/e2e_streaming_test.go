package main

// End-to-end proof of aws-chunked streaming uploads (issue 5) through the
// built binary to a real MinIO, which verifies every chunk signature: the
// AWS SDK for Go v2 (unsigned payload with a checksum trailer over HTTPS),
// minio-go over plain HTTP (every chunk signed, with and without a
// trailer), the AWS CLI v2, hand-built malformed bodies, SigV4A, and the
// proxy's memory during a large upload.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// streamE2EHost is the S3 endpoint every client in these tests talks to.
const streamE2EHost = "s3.us-east-1.amazonaws.com"

// streamE2EEnv is a MinIO and a proxy that sends S3 traffic to it with
// MinIO's root keys.
type streamE2EEnv struct {
	minio *proxytest.MinIO
	p     *runningProxy
}

func streamE2EStart(t *testing.T) *streamE2EEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	m := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", streamE2EHost + ":443=" + m.Endpoint(),
			"--resolve", "*." + streamE2EHost + ":443=" + m.Endpoint(),
			"--resolve", streamE2EHost + ":80=" + m.Endpoint(),
			"--resolve", "*." + streamE2EHost + ":80=" + m.Endpoint(),
			"--time-source", "ntp://127.0.0.1:1",
		},
		Env: proxyCredsEnv(m.Credentials),
	})
	return &streamE2EEnv{minio: m, p: p}
}

// direct is a minio-go client straight to MinIO with the root keys, to
// create buckets and check what MinIO stored.
func (e *streamE2EEnv) direct(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(e.minio.Addr(), &minio.Options{
		Creds:  miniocreds.NewStaticV4(e.minio.Credentials.AccessKeyID, e.minio.Credentials.SecretAccessKey, ""),
		Region: proxytest.MinIORegion,
	})
	if err != nil {
		t.Fatalf("minio-go direct client: %v", err)
	}
	return c
}

func (e *streamE2EEnv) makeBucket(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.direct(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: proxytest.MinIORegion}); err != nil {
		t.Fatalf("MakeBucket %s: %v", name, err)
	}
}

// viaProxy is a minio-go client over plain HTTP through the proxy with
// placeholder keys: it signs every chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
// or ...-TRAILER with trailing headers and a checksum).
func (e *streamE2EEnv) viaProxy(t *testing.T, trailers bool) *minio.Client {
	t.Helper()
	c, err := minio.New(streamE2EHost, &minio.Options{
		Creds:           miniocreds.NewStaticV4("AKIDPLACEHOLDER", "placeholder-secret", ""),
		Secure:          false,
		Region:          proxytest.MinIORegion,
		Transport:       &http.Transport{Proxy: http.ProxyURL(e.p.ProxyURL)},
		TrailingHeaders: trailers,
		MaxRetries:      1,
	})
	if err != nil {
		t.Fatalf("minio-go client: %v", err)
	}
	// minio-go picks s3.dualstack.* for AWS endpoints unless told not to.
	c.SetS3EnableDualstack(false)
	return c
}

// streamE2ELogMark is a position in the proxy's log.
func streamE2ELogMark(p *runningProxy) int { return len(p.Logs()) }

// streamE2EModes returns the payload kinds the proxy logged in its
// "prepared re-signing" debug lines after mark, in order.
func streamE2EModes(p *runningProxy, mark int) []string {
	var modes []string
	for _, line := range strings.Split(p.Logs()[mark:], "\n") {
		var rec struct {
			Msg     string `json:"msg"`
			Payload string `json:"payload"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "prepared re-signing" {
			modes = append(modes, rec.Payload)
		}
	}
	return modes
}

func streamE2EHasMode(modes []string, mode string) bool {
	for _, m := range modes {
		if m == mode {
			return true
		}
	}
	return false
}

// streamE2EData is n deterministic pseudo-random bytes.
func streamE2EData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	_, _ = r.Read(b)
	return b
}

// streamE2EReader streams n deterministic bytes without holding them.
func streamE2EReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 2}), n)
}

// onlyReader hides every method but Read (no Seek, no ReadAt, no Len), so
// that clients cannot learn the length or rewind.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// readBackMinio reads an object straight from MinIO and returns its SHA-256
// and length.
func (e *streamE2EEnv) readBackSum(t *testing.T, bucket, key string) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obj, err := e.direct(t).GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

func streamE2ESum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestStreamingE2ESDKUploads: aws-sdk-go-v2 over HTTPS through the proxy:
// PutObject of an unseekable body (STREAMING-UNSIGNED-PAYLOAD-TRAILER with a
// crc32 trailer) and a 5 MiB-part multipart upload of ~23 MiB; both read
// back byte for byte through the proxy.
func TestStreamingE2ESDKUploads(t *testing.T) {
	e := streamE2EStart(t)
	const bucket = "sdk-stream"
	e.makeBucket(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// LoadDefaultConfig, as applications do: it is what turns on the default
	// request checksums (a literal aws.Config leaves them off and the SDK
	// then sends UNSIGNED-PAYLOAD without a trailer).
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(placeholderKeys),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
		config.WithRetryMaxAttempts(1),
	)
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	if cfg.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenSupported {
		t.Fatalf("RequestChecksumCalculation = %v, want the default WhenSupported (is AWS_REQUEST_CHECKSUM_CALCULATION set?)", cfg.RequestChecksumCalculation)
	}
	cfg.HTTPClient = &http.Client{Transport: e.p.Client().Transport, Timeout: 2 * time.Minute}
	cli := s3.NewFromConfig(cfg)

	readBack := func(t *testing.T, key string, want []byte) {
		t.Helper()
		out, err := cli.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("GetObject %s through the proxy: %v", key, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GetObject %s: %d bytes (want %d), equal=%v, err %v", key, len(got), len(want), bytes.Equal(got, want), err)
		}
	}

	putCases := []struct {
		name     string
		size     int
		seekable bool
		wantMode string // "" = only record it
	}{
		{"unseekable 3MiB", 3<<20 + 17, false, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
		{"unseekable 1B", 1, false, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
		{"seekable 2MiB", 2 << 20, true, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
	}
	for i, tc := range putCases {
		t.Run("PutObject "+tc.name, func(t *testing.T) {
			data := streamE2EData(uint64(10+i), tc.size)
			var body io.Reader = onlyReader{bytes.NewReader(data)}
			if tc.seekable {
				body = bytes.NewReader(data)
			}
			key := fmt.Sprintf("put-%d.bin", i)
			mark := streamE2ELogMark(e.p)
			if _, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
				Body: body, ContentLength: aws.Int64(int64(tc.size))}); err != nil {
				t.Fatalf("PutObject through the proxy: %v", err)
			}
			modes := streamE2EModes(e.p, mark)
			t.Logf("payload mode seen by the proxy: %v", modes)
			if tc.wantMode != "" && !streamE2EHasMode(modes, tc.wantMode) {
				t.Fatalf("proxy saw payload modes %v, want %s", modes, tc.wantMode)
			}
			readBack(t, key, data)
			// The crc32 trailer went through untouched: MinIO kept the
			// client's checksum.
			head, err := cli.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
			if err != nil {
				t.Fatalf("HeadObject: %v", err)
			}
			var crc [4]byte
			binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(data))
			if got, want := aws.ToString(head.ChecksumCRC32), base64.StdEncoding.EncodeToString(crc[:]); got != want {
				t.Errorf("stored CRC32 %q, want %q", got, want)
			}
		})
	}

	t.Run("multipart 5MiB parts", func(t *testing.T) {
		data := streamE2EData(99, 23<<20+12345)
		//lint:ignore SA1019 the brief asks for feature/s3/manager, still the common multipart client
		up := manager.NewUploader(cli, func(u *manager.Uploader) { u.PartSize = 5 << 20; u.Concurrency = 2 })
		mark := streamE2ELogMark(e.p)
		//lint:ignore SA1019 as above
		res, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("multi.bin"), Body: onlyReader{bytes.NewReader(data)}})
		if err != nil {
			t.Fatalf("multipart Upload through the proxy: %v", err)
		}
		modes := streamE2EModes(e.p, mark)
		t.Logf("upload id %s; payload modes seen by the proxy: %v", res.UploadID, modes)
		if res.UploadID == "" {
			t.Fatalf("Upload was not multipart (no upload id)")
		}
		if !streamE2EHasMode(modes, "STREAMING-UNSIGNED-PAYLOAD-TRAILER") {
			t.Errorf("no part went as STREAMING-UNSIGNED-PAYLOAD-TRAILER: %v", modes)
		}
		readBack(t, "multi.bin", data)
	})
}

// TestStreamingE2EMinioGo: minio-go over plain HTTP, absolute-form through
// the proxy, signs every chunk; MinIO checks the re-signed chunk (and
// trailer) signatures. Sizes straddle minio-go's 64 KiB chunk and 16 MiB
// part boundaries.
func TestStreamingE2EMinioGo(t *testing.T) {
	e := streamE2EStart(t)
	const bucket = "minio-go-stream"
	e.makeBucket(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Control: the placeholder keys alone are refused by MinIO.
	placeholder, err := minio.New(e.minio.Addr(), &minio.Options{
		Creds: miniocreds.NewStaticV4("AKIDPLACEHOLDER", "placeholder-secret", ""), Region: proxytest.MinIORegion, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := placeholder.PutObject(ctx, bucket, "control", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err == nil {
		t.Fatal("PutObject with the placeholder keys straight to MinIO succeeded")
	}

	for _, trailer := range []bool{false, true} {
		mode, opts := "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", minio.PutObjectOptions{}
		name := "no trailer"
		if trailer {
			mode, opts = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", minio.PutObjectOptions{Checksum: minio.ChecksumCRC32C}
			name = "crc32c trailer"
		}
		cli := e.viaProxy(t, trailer)
		for _, size := range []int{0, 1, 64<<10 + 1, 17 << 20} {
			t.Run(fmt.Sprintf("%s/%d bytes", name, size), func(t *testing.T) {
				data := streamE2EData(uint64(size)+7, size)
				key := fmt.Sprintf("%t/%d.bin", trailer, size)
				mark := streamE2ELogMark(e.p)
				// A bare reader takes minio-go's sequential part path, which
				// puts a part's checksum in a header; a ReaderAt takes the
				// parallel path, which sends it as a trailer.
				var body io.Reader = onlyReader{bytes.NewReader(data)}
				if trailer {
					body = bytes.NewReader(data)
				}
				info, err := cli.PutObject(ctx, bucket, key, body, int64(size), opts)
				if err != nil {
					t.Fatalf("PutObject through the proxy: %v", err)
				}
				if info.Size != int64(size) {
					t.Errorf("UploadInfo.Size = %d, want %d", info.Size, size)
				}
				modes := streamE2EModes(e.p, mark)
				t.Logf("payload modes seen by the proxy: %v", modes)
				want := mode
				if size == 0 {
					want = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" // minio-go adds no trailer to an empty body
				}
				if !streamE2EHasMode(modes, want) {
					t.Errorf("proxy saw payload modes %v, want %s", modes, want)
				}
				// Read back through the proxy as well as straight from MinIO.
				obj, err := cli.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
				if err != nil {
					t.Fatalf("GetObject through the proxy: %v", err)
				}
				got, err := io.ReadAll(obj)
				obj.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read back through the proxy: %d bytes (want %d), err %v", len(got), size, err)
				}
				if sum, n := e.readBackSum(t, bucket, key); n != int64(size) || sum != streamE2ESum(data) {
					t.Fatalf("MinIO holds %d bytes sha256 %s, want %d bytes %s", n, sum, size, streamE2ESum(data))
				}
			})
		}
	}
}

// TestStreamingE2EAWSCLI: the AWS CLI v2 copies a 100 MiB file up through
// the proxy with placeholder keys and back down; the SHA-256 matches.
func TestStreamingE2EAWSCLI(t *testing.T) {
	const awsCLI = "/usr/bin/aws"
	if _, err := os.Stat(awsCLI); err != nil {
		t.Skipf("no AWS CLI v2 at %s", awsCLI)
	}
	e := streamE2EStart(t)
	const bucket = "cli-stream"
	e.makeBucket(t, bucket)

	dir := t.TempDir()
	src := filepath.Join(dir, "up.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), streamE2EReader(42, 100<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER",
		"AWS_SECRET_ACCESS_KEY=placeholder-secret",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
		"HTTPS_PROXY=" + e.p.ProxyURL.String(),
		"AWS_CA_BUNDLE=" + e.p.CAFile,
	}
	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsCLI, args...)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		t.Logf("aws %s: %v", strings.Join(args[:2], " "), time.Since(start).Round(time.Millisecond))
	}
	mark := streamE2ELogMark(e.p)
	run("s3", "cp", "--only-show-errors", src, "s3://"+bucket+"/big.bin")
	modes := streamE2EModes(e.p, mark)
	counts := map[string]int{}
	for _, m := range modes {
		counts[m]++
	}
	t.Logf("payload modes seen by the proxy for the upload: %v", counts)
	if len(modes) < 2 {
		t.Errorf("expected a multipart upload (several requests), proxy prepared %d", len(modes))
	}
	if sum, n := e.readBackSum(t, bucket, "big.bin"); n != 100<<20 || sum != want {
		t.Fatalf("MinIO holds %d bytes sha256 %s, want %d bytes %s", n, sum, 100<<20, want)
	}
	dst := filepath.Join(dir, "down.bin")
	run("s3", "cp", "--only-show-errors", "s3://"+bucket+"/big.bin", dst)
	df, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	h2 := sha256.New()
	if _, err := io.Copy(h2, df); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h2.Sum(nil)); got != want {
		t.Fatalf("downloaded sha256 %s, want %s", got, want)
	}
}

// streamE2EFakeSig is a syntactically valid signature made with no key: the
// proxy must replace it, and only checks its form.
var streamE2EFakeSig = strings.Repeat("5a", 32)

// streamE2EChunk frames data as one signed aws-chunked chunk.
func streamE2EChunk(data []byte) string {
	return fmt.Sprintf("%x;chunk-signature=%s\r\n%s\r\n", len(data), streamE2EFakeSig, data)
}

// streamE2EFinal is the final zero-size chunk of a body without trailer.
var streamE2EFinal = "0;chunk-signature=" + streamE2EFakeSig + "\r\n\r\n"

// streamE2ERaw is one hand-built request sent absolute-form to the proxy.
type streamE2ERaw struct {
	bucket, key string
	mode        string // X-Amz-Content-Sha256
	decodedLen  int64  // x-amz-decoded-content-length
	body        string
	// declaredLen is the Content-Length; 0 means len(body). Larger than
	// len(body) with halfClose: the client stops sending early.
	declaredLen int
	halfClose   bool
	authAlg     string // Authorization algorithm; default AWS4-HMAC-SHA256
}

// send writes the request and reads the answer (bounded). A connection the
// proxy closes without answering gives status 0 and the read error.
func (r streamE2ERaw) send(t *testing.T, p *runningProxy) (int, string, error) {
	t.Helper()
	now := time.Now().UTC()
	host := r.bucket + "." + streamE2EHost
	alg := r.authAlg
	if alg == "" {
		alg = "AWS4-HMAC-SHA256"
	}
	cl := r.declaredLen
	if cl == 0 {
		cl = len(r.body)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "PUT http://%s/%s HTTP/1.1\r\nHost: %s\r\n", host, r.key, host)
	fmt.Fprintf(&b, "Content-Length: %d\r\nContent-Encoding: aws-chunked\r\n", cl)
	fmt.Fprintf(&b, "X-Amz-Content-Sha256: %s\r\nX-Amz-Date: %s\r\nX-Amz-Decoded-Content-Length: %d\r\n",
		r.mode, proxytest.FormatAMZDate(now), r.decodedLen)
	fmt.Fprintf(&b, "Authorization: %s Credential=AKIDPLACEHOLDER/%s/us-east-1/s3/aws4_request, "+
		"SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length, Signature=%s\r\n\r\n",
		alg, now.Format("20060102"), streamE2EFakeSig)
	b.WriteString(r.body)

	conn, err := net.DialTimeout("tcp", p.ProxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return 0, "", fmt.Errorf("write request: %w", err)
	}
	if r.halfClose {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, string(msg), nil
}

// statMissing asserts MinIO holds no object under bucket/key.
func (e *streamE2EEnv) statMissing(t *testing.T, bucket, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := e.direct(t).StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err == nil {
		t.Errorf("MinIO stored %s/%s (%d bytes) from a malformed body", bucket, key, info.Size)
		return
	}
	if code := minio.ToErrorResponse(err).Code; code != "NoSuchKey" {
		t.Errorf("StatObject %s/%s: %v (want NoSuchKey)", bucket, key, err)
	}
}

// TestStreamingE2EBadFraming: malformed signed aws-chunked bodies through
// the proxy are refused with a 400 and never stored, and the proxy keeps
// serving: the good request after each one succeeds.
func TestStreamingE2EBadFraming(t *testing.T) {
	e := streamE2EStart(t)
	const bucket = "framing"
	e.makeBucket(t, bucket)
	const mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	small := string(streamE2EData(1, 100))
	big := streamE2EData(2, 2<<20+5) // over the proxy's 1 MiB replay buffer: streamed
	var bigChunks strings.Builder
	for off := 0; off < len(big); off += 64 << 10 {
		bigChunks.WriteString(streamE2EChunk(big[off:min(off+64<<10, len(big))]))
	}

	good := func(t *testing.T, key string) {
		t.Helper()
		r := streamE2ERaw{bucket: bucket, key: key, mode: mode, decodedLen: 100, body: streamE2EChunk([]byte(small)) + streamE2EFinal}
		status, msg, err := r.send(t, e.p)
		if err != nil || status != http.StatusOK {
			t.Fatalf("good request after a bad one: status %d, err %v, body %q", status, err, msg)
		}
		if sum, n := e.readBackSum(t, bucket, key); n != 100 || sum != streamE2ESum([]byte(small)) {
			t.Fatalf("good object: %d bytes sha256 %s", n, sum)
		}
	}
	good(t, "control")

	cases := []struct {
		name string
		raw  streamE2ERaw
	}{
		{"truncated inside a chunk", streamE2ERaw{decodedLen: 100,
			body: fmt.Sprintf("64;chunk-signature=%s\r\n%s", streamE2EFakeSig, small[:40])}},
		{"oversize chunk", streamE2ERaw{decodedLen: 16<<20 + 1,
			body: fmt.Sprintf("1000001;chunk-signature=%s\r\n%s\r\n", streamE2EFakeSig, small)}},
		{"bad hex size", streamE2ERaw{decodedLen: 100,
			body: fmt.Sprintf("6z;chunk-signature=%s\r\n%s\r\n", streamE2EFakeSig, small) + streamE2EFinal}},
		{"no chunk-signature", streamE2ERaw{decodedLen: 100,
			body: fmt.Sprintf("64\r\n%s\r\n", small) + streamE2EFinal}},
		{"missing final chunk", streamE2ERaw{decodedLen: 100, body: streamE2EChunk([]byte(small))}},
		{"decoded length larger than chunks", streamE2ERaw{decodedLen: 150, body: streamE2EChunk([]byte(small)) + streamE2EFinal}},
		{"decoded length smaller than chunks", streamE2ERaw{decodedLen: 50, body: streamE2EChunk([]byte(small)) + streamE2EFinal}},
		{"missing CRLF after data", streamE2ERaw{decodedLen: 100,
			body: fmt.Sprintf("64;chunk-signature=%s\r\n%sXX", streamE2EFakeSig, small) + streamE2EFinal}},
		{"streamed: missing final chunk after 2MiB", streamE2ERaw{decodedLen: int64(len(big)), body: bigChunks.String()}},
		{"streamed: bad hex after 2MiB", streamE2ERaw{decodedLen: int64(len(big)) + 100,
			body: bigChunks.String() + fmt.Sprintf("xyz;chunk-signature=%s\r\n%s\r\n", streamE2EFakeSig, small) + streamE2EFinal}},
		{"client stops sending (half-close)", streamE2ERaw{decodedLen: 100, halfClose: true,
			body: fmt.Sprintf("64;chunk-signature=%s\r\n%s", streamE2EFakeSig, small[:40]), declaredLen: 400}},
		{"streamed: client stops sending after 2MiB (half-close)", streamE2ERaw{decodedLen: int64(len(big)), halfClose: true,
			body: bigChunks.String()[:len(bigChunks.String())-1000], declaredLen: len(bigChunks.String()) + len(streamE2EFinal)}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("bad-%d", i)
			tc.raw.bucket, tc.raw.key, tc.raw.mode = bucket, key, mode
			status, msg, err := tc.raw.send(t, e.p)
			t.Logf("answer: status %d, err %v, body %.200q", status, err, msg)
			if tc.raw.halfClose {
				// The client never sent the whole body: a 400 or a closed
				// connection are both acceptable; anything else is not.
				if err == nil && status != http.StatusBadRequest {
					t.Errorf("status %d, want 400 or a closed connection", status)
				}
			} else if err != nil || status != http.StatusBadRequest {
				t.Errorf("status %d (err %v), want 400", status, err)
			}
			e.statMissing(t, bucket, key)
			good(t, fmt.Sprintf("after-%d", i))
		})
	}
}

// TestStreamingE2ESigV4A: the SigV4A streaming payload mode gets a 501
// that names the mode, whatever the Authorization algorithm.
func TestStreamingE2ESigV4A(t *testing.T) {
	e := streamE2EStart(t)
	const bucket = "sigv4a"
	e.makeBucket(t, bucket)
	body := streamE2EChunk([]byte("hello")) + streamE2EFinal
	for _, tc := range []struct{ name, mode, alg string }{
		{"ECDSA payload, SigV4 header", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", ""},
		{"ECDSA payload trailer, SigV4 header", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER", ""},
		{"ECDSA payload, SigV4A header", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "AWS4-ECDSA-P256-SHA256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := streamE2ERaw{bucket: bucket, key: "k", mode: tc.mode, decodedLen: 5, body: body, authAlg: tc.alg}
			status, msg, err := r.send(t, e.p)
			t.Logf("answer: status %d, body %.300q", status, msg)
			if err != nil || status != http.StatusNotImplemented {
				t.Fatalf("status %d (err %v), want 501", status, err)
			}
			if !strings.Contains(msg, "STREAMING-AWS4-ECDSA-P256-SHA256") && !strings.Contains(msg, "SigV4A") {
				t.Errorf("answer does not name the mode: %q", msg)
			}
			e.statMissing(t, bucket, "k")
		})
	}
}

// streamE2EProcMem reads VmRSS and VmHWM (bytes) of pid.
func streamE2EProcMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read proc status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in proc status")
	}
	return rss, hwm, nil
}

// streamE2EPattern is a large deterministic io.ReaderAt that holds only a
// 1 MiB block, read with a period that is not a power of two so that no two
// parts are alike.
type streamE2EPattern struct {
	block []byte
	size  int64
}

func newStreamE2EPattern(size int64) *streamE2EPattern {
	return &streamE2EPattern{block: streamE2EData(5, 1<<20+7), size: size}
}

func (s *streamE2EPattern) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < s.size {
		i := int(off % int64(len(s.block)))
		c := copy(p[n:], s.block[i:min(len(s.block), i+int(s.size-off))])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestStreamingE2EMemory: during a 256 MiB chunk-signed minio-go upload
// through the proxy, the proxy's peak RSS stays under its baseline plus
// 64 MiB. The same upload straight to MinIO gives the throughput ratio.
func TestStreamingE2EMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	e := streamE2EStart(t)
	const bucket = "memory"
	// STREAME2E_SIZE_MIB=1024 runs the 1 GiB figure of issue 5 on demand.
	size := int64(256 << 20)
	if v, err := strconv.Atoi(os.Getenv("STREAME2E_SIZE_MIB")); err == nil && v > 0 {
		size = int64(v) << 20
	}
	e.makeBucket(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pid := e.p.cmd.Process.Pid

	// Warm up (leaf cert, connection pool, buffers), then take the baseline.
	if _, err := e.viaProxy(t, false).PutObject(ctx, bucket, "warm", onlyReader{streamE2EReader(3, 1<<20)}, 1<<20, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("warm-up PutObject: %v", err)
	}
	baseRSS, baseHWM, err := streamE2EProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}

	// A ReaderAt makes minio-go send four 16 MiB parts at a time.
	src := newStreamE2EPattern(size)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(src, 0, size)); err != nil {
		t.Fatal(err)
	}
	wantSum := hex.EncodeToString(h.Sum(nil))
	upload := func(cli *minio.Client, key string) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := cli.PutObject(ctx, bucket, key, io.NewSectionReader(src, 0, size), size, minio.PutObjectOptions{NumThreads: 4}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
		return time.Since(start)
	}

	stop := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, _, err := streamE2EProcMem(pid); err == nil && rss > peak {
				peak = rss
			}
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()
	mark := streamE2ELogMark(e.p)
	viaDur := upload(e.viaProxy(t, false), "via-proxy.bin")
	close(stop)
	peakRSS := <-sampled
	_, hwm, err := streamE2EProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	modes := streamE2EModes(e.p, mark)

	directCli, err := minio.New(e.minio.Addr(), &minio.Options{
		Creds:  miniocreds.NewStaticV4(e.minio.Credentials.AccessKeyID, e.minio.Credentials.SecretAccessKey, ""),
		Region: proxytest.MinIORegion,
	})
	if err != nil {
		t.Fatal(err)
	}
	directDur := upload(directCli, "direct.bin")

	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	t.Logf("proxy RSS: baseline %.1f MiB (HWM %.1f), sampled peak %.1f MiB, VmHWM after %.1f MiB; growth %.1f MiB",
		mib(baseRSS), mib(baseHWM), mib(peakRSS), mib(hwm), mib(max(hwm, peakRSS)-baseRSS))
	t.Logf("%.0f MiB chunk-signed upload: via proxy %v (%.0f MiB/s), direct %v (%.0f MiB/s), ratio %.0f%%", mib(size),
		viaDur.Round(time.Millisecond), mib(size)/viaDur.Seconds(), directDur.Round(time.Millisecond), mib(size)/directDur.Seconds(),
		100*directDur.Seconds()/viaDur.Seconds())
	if !streamE2EHasMode(modes, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") {
		t.Errorf("proxy saw payload modes %v, want STREAMING-AWS4-HMAC-SHA256-PAYLOAD", modes)
	}
	if growth := max(hwm, peakRSS) - baseRSS; growth >= 64<<20 {
		t.Errorf("proxy peak RSS grew by %.1f MiB during the upload (limit 64 MiB)", mib(growth))
	}
	if sum, n := e.readBackSum(t, bucket, "via-proxy.bin"); n != size || sum != wantSum {
		t.Fatalf("MinIO holds %d bytes sha256 %s, want %d bytes %s", n, sum, size, wantSum)
	}
}
