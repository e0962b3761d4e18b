package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
)

// uploadResult is one upload mode: through a fresh skewproxy against
// straight to MinIO, and the proxy's peak resident memory (VmHWM).
type uploadResult struct {
	Mode       string // the x-amz-content-sha256 the client sent
	Client     string
	ProxyMiBs  float64
	DirectMiBs float64
	PeakRSSKiB int64
}

// minioCreds are the MinIO root keys, held by the proxy in upload runs.
var minioCreds = aws.Credentials{AccessKeyID: "skewbenchminio", SecretAccessKey: "skewbench-minio-secret-key"}

const (
	s3Host      = "s3.us-east-1.amazonaws.com"
	benchBucket = "skewbench"
)

// minioProc is a MinIO server skewbench started on loopback.
type minioProc struct {
	*child
	Addr string
	TLS  bool
}

// minioBinary finds minio in $GOBIN, $GOPATH/bin, ~/go/bin, then PATH.
func minioBinary() (string, error) {
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(d)[0], "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "minio"); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("minio")
	if err != nil {
		return "", errors.New("minio binary not found (run make deps)")
	}
	return p, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// startMinIO runs MinIO with data under dir; with pki it serves TLS with
// pki's leaf.
func startMinIO(dir string, pki *testPKI) (*minioProc, error) {
	bin, err := minioBinary()
	if err != nil {
		return nil, err
	}
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return nil, fmt.Errorf("minio dir: %w", err)
	}
	if pki != nil {
		if err := os.WriteFile(filepath.Join(certs, "public.crt"), pki.CertPEM, 0o600); err != nil {
			return nil, fmt.Errorf("minio cert: %w", err)
		}
		if err := os.WriteFile(filepath.Join(certs, "private.key"), pki.KeyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("minio key: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"), "--address", addr,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(cport)), "--certs-dir", certs, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+minioCreds.AccessKeyID, "MINIO_ROOT_PASSWORD="+minioCreds.SecretAccessKey,
		"MINIO_DOMAIN="+s3Host, "MINIO_SITE_REGION=us-east-1", "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	c, err := startChild("minio", cmd)
	if err != nil {
		return nil, err
	}
	m := &minioProc{child: c, Addr: addr, TLS: pki != nil}
	scheme, tr := "http", &http.Transport{}
	if pki != nil {
		scheme, tr = "https", &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if c.Exited() {
			return nil, fmt.Errorf("minio exited at start: %v\n%s", c.err, c.Tail())
		}
		resp, err := client.Get(scheme + "://" + addr + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Stop()
	return nil, fmt.Errorf("minio not live on %s within 90s\n%s", addr, c.Tail())
}

// patternReaderAt yields size bytes of a repeating pattern without holding
// them in memory.
type patternReaderAt struct{ block []byte }

func newPattern() patternReaderAt {
	b := make([]byte, 64<<10+7) // odd length: chunk boundaries do not line up with it
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return patternReaderAt{block: b}
}

func (p patternReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		i := int((off + int64(n)) % int64(len(p.block)))
		n += copy(b[n:], p.block[i:])
	}
	return n, nil
}

// modeRecorder remembers the x-amz-content-sha256 of PUT requests.
type modeRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	mode string
}

func (m *modeRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.ContentLength != 0 {
		m.mu.Lock()
		m.mode = r.Header.Get("X-Amz-Content-Sha256")
		if t := r.Header.Get("X-Amz-Trailer"); t != "" {
			m.mode += ", trailer " + t
		}
		if r.Header.Get("X-Amz-Decoded-Content-Length") == "" && r.Header.Get("Content-Encoding") == "" {
			m.mode += ", not aws-chunked"
		}
		m.mu.Unlock()
	}
	return m.next.RoundTrip(r)
}

func (m *modeRecorder) Mode() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode
}

// uploader sends size bytes as key and reports the payload mode it used.
type uploader func(ctx context.Context, key string, size int64) (mode string, err error)

// minioGoUploader is minio-go over plain HTTP (chunk-signed aws-chunked),
// one PUT without multipart; through proxyURL when it is not nil.
func minioGoUploader(endpoint string, creds aws.Credentials, proxyURL func(*http.Request) (*url.URL, error)) (uploader, error) {
	rec := &modeRecorder{next: &http.Transport{Proxy: proxyURL, DisableCompression: true}}
	cl, err := minio.New(endpoint, &minio.Options{
		Creds: miniocreds.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, ""), Secure: false,
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath, Transport: rec,
	})
	if err != nil {
		return nil, fmt.Errorf("minio-go client: %w", err)
	}
	cl.SetS3EnableDualstack(false) // keep the host name the proxy's --resolve rule names
	return func(ctx context.Context, key string, size int64) (string, error) {
		body := io.NewSectionReader(newPattern(), 0, size)
		_, err := cl.PutObject(ctx, benchBucket, key, body, size, minio.PutObjectOptions{
			DisableMultipart: true, ContentType: "application/octet-stream"})
		return rec.Mode(), err
	}, nil
}

// sdkPartSize is the part size of the SDK multipart upload: the SDK sends
// each part as one aws-chunked chunk, and MinIO (like S3) refuses chunks
// over 16 MiB.
const sdkPartSize = 8 << 20

// sdkPartWorkers is how many parts are in flight at once (the SDK upload
// managers' default is 5).
const sdkPartWorkers = 4

// uploadRounds is how many times each upload runs each way (best kept).
const uploadRounds = 2

// sdkUploader is an aws-sdk-go-v2 multipart upload over HTTPS with the
// SDK's default checksums: UploadPart bodies are aws-chunked with the CRC32
// in an unsigned trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), path-style,
// sdkPartWorkers parts at a time. baseEndpoint "" means the real S3 host
// name (through a proxy).
func sdkUploader(baseEndpoint string, creds aws.Credentials, hc *http.Client) uploader {
	rec := &modeRecorder{next: hc.Transport}
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		HTTPClient: &http.Client{Transport: rec}, RetryMaxAttempts: 1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported} // the default of config.LoadDefaultConfig
	cl := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		if baseEndpoint != "" {
			o.BaseEndpoint = aws.String(baseEndpoint)
		}
	})
	return func(ctx context.Context, key string, size int64) (string, error) {
		err := multipartUpload(ctx, cl, key, size)
		return rec.Mode(), err
	}
}

// multipartUpload uploads size pattern bytes as key in sdkPartSize parts.
func multipartUpload(ctx context.Context, cl *s3.Client, key string, size int64) error {
	mp, err := cl.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(benchBucket), Key: aws.String(key),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		return fmt.Errorf("CreateMultipartUpload: %w", err)
	}
	nparts := int((size + sdkPartSize - 1) / sdkPartSize)
	parts := make([]types.CompletedPart, nparts)
	jobs := make(chan int)
	errs := make(chan error, sdkPartWorkers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range sdkPartWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				off := int64(i) * sdkPartSize
				n := min(sdkPartSize, size-off)
				num := aws.Int32(int32(i + 1))
				out, err := cl.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(benchBucket), Key: aws.String(key),
					UploadId: mp.UploadId, PartNumber: num, ContentLength: aws.Int64(n),
					Body: io.NewSectionReader(newPattern(), off, n)})
				if err != nil {
					errs <- fmt.Errorf("UploadPart %d: %w", i+1, err)
					cancel()
					return
				}
				parts[i] = types.CompletedPart{PartNumber: num, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
			}
		}()
	}
feed:
	for i := range nparts {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		_, _ = cl.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(benchBucket), Key: aws.String(key), UploadId: mp.UploadId})
		return err
	default:
	}
	if _, err := cl.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(benchBucket), Key: aws.String(key),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		return fmt.Errorf("CompleteMultipartUpload: %w", err)
	}
	return nil
}

// timedUpload runs up once and returns MiB/s and the payload mode.
func timedUpload(ctx context.Context, up uploader, key string, size int64) (float64, string, error) {
	t0 := time.Now()
	mode, err := up(ctx, key, size)
	el := time.Since(t0)
	if err != nil {
		return 0, mode, fmt.Errorf("upload %s: %w", key, err)
	}
	return float64(size) / (1 << 20) / el.Seconds(), mode, nil
}

// runUploads measures both upload modes direct and through a fresh
// skewproxy each, against two MinIO servers (plain HTTP for minio-go's
// chunk-signed uploads, TLS for the SDK's unsigned-trailer uploads).
func runUploads(ctx context.Context, cfg suiteConfig, dir string, res *results, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	plain, err := startMinIO(filepath.Join(dir, "minio-plain"), nil)
	if err != nil {
		return err
	}
	defer plain.Stop()
	pki, err := newPKI([]string{s3Host, "*." + s3Host, "localhost"})
	if err != nil {
		return err
	}
	secure, err := startMinIO(filepath.Join(dir, "minio-tls"), pki)
	if err != nil {
		return err
	}
	defer secure.Stop()
	minioCA, err := pki.writeCA(dir, "minio-ca.pem")
	if err != nil {
		return err
	}
	logf("minio http://%s and https://%s", plain.Addr, secure.Addr)

	// Buckets, made directly with the root keys.
	mc, err := minio.New(plain.Addr, &minio.Options{Creds: miniocreds.NewStaticV4(minioCreds.AccessKeyID, minioCreds.SecretAccessKey, ""), Region: "us-east-1"})
	if err != nil {
		return err
	}
	if err := mc.MakeBucket(ctx, benchBucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		return fmt.Errorf("make bucket (http): %w", err)
	}
	directTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}}
	s3c := s3.NewFromConfig(aws.Config{Region: "us-east-1", HTTPClient: directTLS,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return minioCreds, nil })},
		func(o *s3.Options) { o.UsePathStyle = true; o.BaseEndpoint = aws.String("https://" + secure.Addr) })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(benchBucket)}); err != nil {
		return fmt.Errorf("make bucket (https): %w", err)
	}

	type mode struct {
		name, client string
		resolve      []string
		direct       uploader
		proxied      func(sp *skewproxyProc) (uploader, error)
	}
	directChunked, err := minioGoUploader(plain.Addr, minioCreds, nil)
	if err != nil {
		return err
	}
	modes := []mode{
		{name: "chunk-signed", client: "minio-go, HTTP",
			resolve: []string{"--resolve", s3Host + ":80=http://" + plain.Addr},
			direct:  directChunked,
			proxied: func(sp *skewproxyProc) (uploader, error) {
				return minioGoUploader(s3Host, placeholderCreds, http.ProxyURL(sp.ProxyURL))
			}},
		{name: "unsigned-trailer", client: "aws-sdk-go-v2 multipart, 8 MiB parts, 4 at a time, HTTPS",
			resolve: []string{"--resolve", s3Host + ":443=https://" + secure.Addr, "--upstream-ca", minioCA},
			direct:  sdkUploader("https://"+secure.Addr, minioCreds, directTLS),
			proxied: func(sp *skewproxyProc) (uploader, error) {
				hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(sp.ProxyURL), TLSClientConfig: &tls.Config{RootCAs: sp.CAPool}}}
				return sdkUploader("", placeholderCreds, hc), nil
			}},
	}
	for i, m := range modes {
		sp, err := startSkewproxy(cfg.Skewproxy, filepath.Join(dir, fmt.Sprintf("skewproxy-upload-%d", i)), minioCreds, m.resolve...)
		if err != nil {
			return err
		}
		up, err := m.proxied(sp)
		if err != nil {
			sp.Stop()
			return err
		}
		// Alternate direct and proxied uploads and keep the best of each:
		// the disk and the other tenants of the machine are noisy.
		var direct, proxied float64
		var dmode, pmode string
		for round := range uploadRounds {
			d, dm, err := timedUpload(ctx, m.direct, fmt.Sprintf("direct-%d-%d", i, round), cfg.UploadBytes)
			if err != nil {
				sp.Stop()
				return fmt.Errorf("%s direct: %w", m.name, err)
			}
			p, pm, err := timedUpload(ctx, up, fmt.Sprintf("proxied-%d-%d", i, round), cfg.UploadBytes)
			if err != nil {
				err = fmt.Errorf("%s through skewproxy: %w\n%s", m.name, err, sp.Tail())
				sp.Stop()
				return err
			}
			direct, proxied, dmode, pmode = max(direct, d), max(proxied, p), dm, pm
			logf("upload %s round %d: direct %.0f MiB/s, proxy %.0f MiB/s", m.name, round+1, d, p)
		}
		hwm, err := procStatusKiB(sp.Pid(), "VmHWM")
		sp.Stop()
		if err != nil {
			return err
		}
		if dmode != pmode {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: the client sent %q directly but %q to the proxy", m.name, dmode, pmode))
		}
		res.Uploads = append(res.Uploads, uploadResult{Mode: m.name + " " + pmode, Client: m.client,
			ProxyMiBs: proxied, DirectMiBs: direct, PeakRSSKiB: hwm})
		logf("upload %s (%s): direct %.0f MiB/s, proxy %.0f MiB/s (best of %d), proxy VmHWM %d KiB", m.name, pmode, direct, proxied, uploadRounds, hwm)
	}
	return nil
}
