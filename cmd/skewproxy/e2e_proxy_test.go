package main

// End-to-end proof of the intercepting proxy (issue 3) through the real
// binary: real clients (aws-sdk-go-v2, a child process configured only by
// HTTPS_PROXY and SSL_CERT_FILE, the AWS CLI v2) with placeholder keys reach a
// real MinIO and the verifying fake AWS; hosts that are not intercepted never
// see the proxy's credentials; hop-by-hop headers and the client's session
// token stay behind; a skewed host clock is corrected; large objects stream;
// the admin endpoints keep the contract; logs hold no secret; SIGTERM drains.
//
// Helpers here are prefixed proxyE2E so they do not collide with the
// harness or other end-to-end files.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithy "github.com/aws/smithy-go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// proxyE2ENoTimeSource is a time source nobody answers, so the proxy runs on
// the host clock (plus --clock-offset) until AWS tells it the time.
const proxyE2ENoTimeSource = "ntp://127.0.0.1:1"

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

// TestProxyE2EEnvironmentRoute: an unmodified SDK program in a child process,
// configured only by HTTPS_PROXY, SSL_CERT_FILE and placeholder keys in its
// environment, reaches the verifying endpoint through the binary.
func TestProxyE2EEnvironmentRoute(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t), "--time-source", proxyE2ENoTimeSource,
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	bin := filepath.Join(t.TempDir(), "envclient")
	build := exec.Command("go", "build", "-o", bin, "./testdata/e2e_proxy/envclient")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build envclient: %v\n%s", err, out)
	}
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER", "AWS_SECRET_ACCESS_KEY=placeholder-secret",
	}
	for _, c := range []struct {
		name    string
		env     []string
		wantErr bool
	}{
		{"HTTPS_PROXY and SSL_CERT_FILE", []string{"HTTPS_PROXY=" + p.ProxyURL.String(), "SSL_CERT_FILE=" + p.CAFile}, false},
		// Without trusting the proxy CA the handshake must fail: the
		// proxy terminated the TLS with its own leaf.
		{"HTTPS_PROXY without the CA", []string{"HTTPS_PROXY=" + p.ProxyURL.String(), "SSL_CERT_FILE=" + fake.CAFile(t)}, true},
		// The same program straight to the verifying endpoint: its
		// placeholder keys are refused.
		{"no proxy, straight to the endpoint", []string{"AWS_ENDPOINT_URL=" + fake.URL(), "SSL_CERT_FILE=" + fake.CAFile(t)}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append(append([]string(nil), env...), c.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if c.wantErr {
				if err == nil {
					t.Fatalf("envclient succeeded without trusting the proxy CA: %s", stdout.String())
				}
				want := "certificate"
				if !strings.Contains(strings.Join(c.env, " "), "HTTPS_PROXY") {
					want = "StatusCode: 403"
				}
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("envclient failed, but without %q: %s", want, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("envclient: %v\n%s", err, stderr.String())
			}
			var got map[string]string
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("envclient output %q: %v", stdout.String(), err)
			}
			if got["account"] != proxytest.AccountID || !strings.Contains(got["payload"], "envclient") {
				t.Errorf("envclient got %v", got)
			}
		})
	}
	if s := fake.Stats(); s.Operations["STS.GetCallerIdentity"] != 1 || s.Operations["Lambda.Invoke"] != 1 {
		t.Errorf("fake verified operations %v, want one GetCallerIdentity and one Invoke", s.Operations)
	}
}

// proxyE2ERecorder is a loopback server that records every request it gets.
type proxyE2ERecorder struct {
	mu   sync.Mutex
	reqs []proxyE2ERecorded
}

// proxyE2ERecorded is one request as a non-AWS server received it.
type proxyE2ERecorded struct {
	Method, Host, RequestURI string
	Header                   http.Header
	Body                     []byte
}

// dump is everything the server could see, for "never appears" checks.
func (r proxyE2ERecorded) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\nHost: %s\n", r.Method, r.RequestURI, r.Host)
	r.Header.Write(&b)
	b.Write(r.Body)
	return b.String()
}

func (rec *proxyE2ERecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, proxyE2ERecorded{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: body})
	rec.mu.Unlock()
	w.Write([]byte("recorded"))
}

// find returns the recorded request whose URI ends in suffix.
func (rec *proxyE2ERecorder) find(suffix string) (proxyE2ERecorded, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		if strings.HasSuffix(r.RequestURI, suffix) {
			return r, true
		}
	}
	return proxyE2ERecorded{}, false
}

// proxyE2EEgress is a minimal upstream (egress) proxy for --upstream-proxy:
// absolute-form requests are answered by rec itself (it plays the origin),
// CONNECT tunnels are relayed to tunnelTo whatever their target, and every
// CONNECT target is remembered.
func proxyE2EEgress(t *testing.T, rec *proxyE2ERecorder, tunnelTo string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var targets []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			rec.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		targets = append(targets, r.Host)
		mu.Unlock()
		up, err := net.DialTimeout("tcp", tunnelTo, 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		go func() { io.Copy(up, brw); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), targets...) }
}

// proxyE2EClientRequest is a request that looks like an SDK's Lambda
// Invoke signed with the client's own (placeholder) keys.
func proxyE2EClientRequest(t *testing.T, rawURL, host string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(`{"client":"payload"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Authorization", proxyE2EClientAuth)
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("X-Amz-Security-Token", "client-own-session-token")
	req.Header.Set("Content-Type", "application/json")
	return req
}

const proxyE2EClientAuth = "AWS4-HMAC-SHA256 Credential=AKIDPLACEHOLDER/20260101/us-east-1/lambda/aws4_request, " +
	"SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// proxyE2EAssertUntouched checks that a non-AWS server got the client's
// request exactly as sent and nothing of the proxy's credentials.
func proxyE2EAssertUntouched(t *testing.T, got proxyE2ERecorded, host string) {
	t.Helper()
	if a := got.Header.Get("Authorization"); a != proxyE2EClientAuth {
		t.Errorf("Authorization = %q, want the client's own", a)
	}
	if got.Host != host {
		t.Errorf("Host = %q, want %q", got.Host, host)
	}
	if d := got.Header.Get("X-Amz-Date"); d != "20260101T000000Z" {
		t.Errorf("X-Amz-Date = %q, want the client's own", d)
	}
	if tok := got.Header.Get("X-Amz-Security-Token"); tok != "client-own-session-token" {
		t.Errorf("X-Amz-Security-Token = %q, want the client's own", tok)
	}
	if string(got.Body) != `{"client":"payload"}` {
		t.Errorf("body = %q", got.Body)
	}
	for _, secret := range []string{proxyKeys.AccessKeyID, proxyKeys.SecretAccessKey} {
		if strings.Contains(got.dump(), secret) {
			t.Errorf("a host that is not intercepted received the proxy's credential %q:\n%s", secret, got.dump())
		}
	}
}

// TestProxyE2ENotInterceptedNeverSigned: requests for hosts outside the
// intercept patterns — loopback servers and a host that merely looks like
// AWS — reach their server exactly as the client sent them, AWS-looking
// Authorization and Host included, and never carry the proxy's credentials.
func TestProxyE2ENotInterceptedNeverSigned(t *testing.T) {
	const lookalike = "lambda.us-east-1.amazonaws.com.evil.test"
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	rec := &proxyE2ERecorder{}
	plain := httptest.NewServer(rec)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(rec)
	defer tlsSrv.Close()
	tlsRoots := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	egress, connectTargets := proxyE2EEgress(t, rec, tlsSrv.Listener.Addr().String())

	direct := startProxy(t, proxyOptions{
		Args: []string{"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(), "--upstream-ca", fake.CAFile(t),
			"--time-source", proxyE2ENoTimeSource},
		Env: proxyCredsEnv(proxyKeys),
	})
	viaEgress := startProxy(t, proxyOptions{
		Args: []string{"--upstream-proxy", egress.URL, "--time-source", proxyE2ENoTimeSource},
		Env:  proxyCredsEnv(proxyKeys),
	})
	client := func(p *runningProxy, tc *tls.Config) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(p.ProxyURL), TLSClientConfig: tc}}
	}

	tests := []struct {
		name   string
		proxy  *runningProxy
		url    string
		host   string
		tls    *tls.Config
		suffix string
		// rawAbsolute writes "POST <url> HTTP/1.1" with the Host header
		// as given, on a raw connection.
		rawAbsolute bool
	}{
		// Written by hand: Go's client would put the Host header into the
		// request line. The target is loopback, the Host header says AWS.
		// RFC 9112 section 3.2.2: a proxy MUST replace the Host header of an
		// absolute-form request with the target's authority, so the server
		// sees its own address there.
		{"absolute-form to a loopback HTTP server, AWS Host header", direct, plain.URL + "/abs-loopback", "lambda.us-east-1.amazonaws.com", nil, "/abs-loopback", true},
		// The handshake succeeding with the server's own certificate
		// proves the tunnel was blind: the proxy's leaf would not verify.
		{"CONNECT to a loopback TLS server, AWS Host header", direct, tlsSrv.URL + "/connect-loopback", "lambda.us-east-1.amazonaws.com", &tls.Config{RootCAs: tlsRoots}, "/connect-loopback", false},
		{"absolute-form to a look-alike host", viaEgress, "http://" + lookalike + "/abs-lookalike", lookalike, nil, "/abs-lookalike", false},
		{"CONNECT to a look-alike host", viaEgress, "https://" + lookalike + "/connect-lookalike", lookalike, &tls.Config{RootCAs: tlsRoots, ServerName: "example.com"}, "/connect-lookalike", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var status int
			if tt.rawAbsolute {
				status = proxyE2ERawAbsolute(t, tt.proxy, proxyE2EClientRequest(t, tt.url, tt.host))
			} else {
				resp, err := client(tt.proxy, tt.tls).Do(proxyE2EClientRequest(t, tt.url, tt.host))
				if err != nil {
					t.Fatalf("request through the proxy: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			got, ok := rec.find(tt.suffix)
			if !ok {
				t.Fatalf("the server never got the request (status %d)", status)
			}
			wantHost := tt.host
			if tt.rawAbsolute {
				wantHost = strings.TrimPrefix(plain.URL, "http://")
			}
			proxyE2EAssertUntouched(t, got, wantHost)
		})
	}
	if targets := connectTargets(); !slices.Contains(targets, lookalike+":443") {
		t.Errorf("egress proxy saw CONNECT targets %q, want %s:443 (a blind tunnel)", targets, lookalike)
	}

	// Without an egress proxy the look-alike host is dialled by the proxy
	// itself: it cannot be resolved here, so CONNECT must fail with a 502,
	// and must never be answered with a TLS leaf from the proxy's CA. The
	// real AWS name is the control: that one is terminated.
	t.Run("CONNECT look-alike is not terminated, the real name is", func(t *testing.T) {
		for _, c := range []struct {
			host        string
			wantStatus  int
			wantProxyCA bool
		}{
			{lookalike, http.StatusBadGateway, false},
			{"lambda.us-east-1.amazonaws.com", http.StatusOK, true},
		} {
			status, state := proxyE2EConnect(t, direct, c.host)
			if status != c.wantStatus {
				t.Errorf("CONNECT %s: status %d, want %d", c.host, status, c.wantStatus)
			}
			if gotCA := state != nil; gotCA != c.wantProxyCA {
				t.Errorf("CONNECT %s: handshake with a leaf of the proxy CA = %v, want %v", c.host, gotCA, c.wantProxyCA)
			}
		}
	})
	if n := fake.Stats().Requests; n != 0 {
		t.Errorf("the fake AWS got %d requests; only the TLS handshake was expected", n)
	}
}

// proxyE2ERawAbsolute writes req to the proxy in absolute form with its own
// URL in the request line and req.Host in the Host header, and returns the
// answer's status.
func proxyE2ERawAbsolute(t *testing.T, p *runningProxy, req *http.Request) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.ProxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	body, _ := io.ReadAll(req.Body)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Method, req.URL, req.Host, len(body))
	req.Header.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("absolute-form %s: %v", req.URL, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// proxyE2EConnect sends CONNECT host:443 on a raw connection and, when the
// proxy answers 200, tries a TLS handshake that trusts only the proxy's CA.
// It returns the status and the connection state of a successful handshake.
func proxyE2EConnect(t *testing.T, p *runningProxy, host string) (int, *tls.ConnectionState) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.ProxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Logf("CONNECT %s: %s %q", host, resp.Status, body)
		return resp.StatusCode, nil
	}
	tc := tls.Client(&proxyE2EBufConn{Conn: conn, r: br}, &tls.Config{RootCAs: p.CAPool, ServerName: host})
	if err := tc.Handshake(); err != nil {
		t.Logf("CONNECT %s: 200, handshake trusting the proxy CA: %v", host, err)
		return resp.StatusCode, nil
	}
	st := tc.ConnectionState()
	return resp.StatusCode, &st
}

// proxyE2EBufConn reads first what a bufio.Reader already holds.
type proxyE2EBufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *proxyE2EBufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// proxyE2EFakeArgs points the STS and Lambda names at fake.
func proxyE2EFakeArgs(t *testing.T, fake *proxytest.AWS, extra ...string) []string {
	return append([]string{
		"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
		"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
		"--upstream-ca", fake.CAFile(t),
	}, extra...)
}

// TestProxyE2EHeadersOnTheWire: upstream sees no client session token and
// no hop-by-hop header, every other client header unchanged, and every
// header named in SignedHeaders.
func TestProxyE2EHeadersOnTheWire(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	// No time probe: the fake must see exactly the client's two requests.
	p := startProxy(t, proxyOptions{Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource, "--no-time-bootstrap"), Env: proxyCredsEnv(proxyKeys)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clientCreds := aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder-secret", SessionToken: "client-own-session-token"}

	const form = "Action=GetCallerIdentity&Version=2011-06-15"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://sts.us-east-1.amazonaws.com/", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("User-Agent", "e2e-headers/1.0")
	req.Header.Set("X-Custom-Kept", "kept value")
	sum := sha256.Sum256([]byte(form))
	if err := v4.NewSigner().SignHTTP(ctx, clientCreds, req, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Hop-by-hop headers as a client library or an earlier hop adds them.
	req.Header.Set("Connection", "x-foo")
	req.Header.Set("X-Foo", "named by Connection")
	req.Header.Set("Proxy-Authorization", "Basic dXNlcjpwYXNz")
	req.Header.Set("Keep-Alive", "timeout=5")
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), proxytest.AccountID) {
		t.Fatalf("GetCallerIdentity: %s %s", resp.Status, body)
	}

	// The SDK's own request with a session token in its credentials.
	cfg := p.awsConfig()
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return clientCreds, nil })
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke with a client session token: %v", err)
	}

	reqs := proxyE2EFakeRequests(t, fake, 2)
	for _, r := range reqs {
		t.Run(r.Service+"."+r.Operation, func(t *testing.T) {
			if r.Verified == nil || r.Verified.AccessKeyID != proxyKeys.AccessKeyID {
				t.Fatalf("not verified with the proxy's key: failure %q", r.Failure)
			}
			for _, h := range []string{"X-Amz-Security-Token", "X-Foo", "Proxy-Authorization", "Keep-Alive"} {
				if v := r.Header.Values(h); len(v) > 0 {
					t.Errorf("upstream got %s: %q", h, v)
				}
			}
			if c := strings.ToLower(strings.Join(r.Header.Values("Connection"), ",")); strings.Contains(c, "x-foo") {
				t.Errorf("upstream got Connection: %q", c)
			}
			for _, h := range r.Verified.SignedHeaders {
				if h == "host" {
					if r.Host == "" {
						t.Error("signed header host is empty upstream")
					}
					continue
				}
				if len(r.Header.Values(h)) == 0 {
					t.Errorf("signed header %q is not on the wire upstream (have %v)", h, slices.Sorted(maps.Keys(r.Header)))
				}
			}
			if r.Service == "sts" {
				for h, want := range map[string]string{"User-Agent": "e2e-headers/1.0", "X-Custom-Kept": "kept value",
					"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"} {
					if got := r.Header.Get(h); got != want {
						t.Errorf("upstream %s = %q, want %q (the client's, unchanged)", h, got, want)
					}
				}
				if string(r.Body) != form {
					t.Errorf("upstream body %q", r.Body)
				}
			}
		})
	}
}

// proxyE2EFakeRequests waits (bounded) until fake has recorded n requests:
// it records one when its answer is done, which can be just after the
// client has read it.
func proxyE2EFakeRequests(t *testing.T, fake *proxytest.AWS, n int) []proxytest.Request {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reqs := fake.Requests()
		if len(reqs) >= n || time.Now().After(deadline) {
			if len(reqs) != n {
				t.Fatalf("fake recorded %d requests, want %d", len(reqs), n)
			}
			return reqs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyE2EClockOffsetLearned: with the host clock 20 minutes behind or
// 3 hours ahead (--clock-offset), no time source reachable and a 5-minute
// window upstream, the first signature is refused; the proxy learns the time
// from the answer, re-signs and retries once, and the client sees success.
// Later requests are signed right the first time, and /status reports the
// learned offset.
func TestProxyE2EClockOffsetLearned(t *testing.T) {
	tests := []struct {
		name      string
		offset    string
		want      float64 // offset_seconds
		wantFirst proxytest.FailureKind
	}{
		{"host 20m behind", "-20m", -1200, proxytest.FailExpired},
		{"host 3h ahead", "+3h", 3 * 3600, proxytest.FailNotYetCurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys, Window: 5 * time.Minute})
			p := startProxy(t, proxyOptions{
				// Learning from the skew error itself, not from a probe.
				Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource, "--clock-offset", tt.offset, "--no-time-bootstrap"),
				Env:  proxyCredsEnv(proxyKeys),
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := p.awsConfig() // RetryMaxAttempts 1: only the proxy retries
			if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
				t.Fatalf("GetCallerIdentity with the host clock %s: %v", tt.offset, err)
			}
			reqs := proxyE2EFakeRequests(t, fake, 2)
			var kinds []string
			for _, r := range reqs {
				kinds = append(kinds, fmt.Sprintf("%s(%s)", r.Operation, cmp.Or(string(r.Failure), "verified")))
			}
			t.Logf("upstream saw: %v", kinds)
			if reqs[0].Failure != tt.wantFirst || reqs[1].Verified == nil {
				t.Fatalf("upstream saw %v, want a refused %s then a verified retry", kinds, tt.wantFirst)
			}
			if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{}`)}); err != nil {
				t.Fatalf("Invoke after learning: %v", err)
			}
			proxyE2EFakeRequests(t, fake, 3) // the Invoke needed one request
			st := proxyE2EStatus(t, p)
			if got := st.Clock.OffsetSeconds; math.Abs(got-tt.want) > 2.5 {
				t.Errorf("/status offset_seconds = %v, want %v ± 2.5", got, tt.want)
			}
			if st.Clock.Source == "host" || st.Clock.Source == "" {
				t.Errorf("/status source = %q, want the passive source that taught it", st.Clock.Source)
			}
			_, _, raw := proxyE2EGet(t, p.AdminURL+"/status")
			t.Logf("/status after learning: %s", bytes.TrimSpace(raw))
			if !strings.Contains(p.Logs(), `"retried":true`) {
				t.Error("no log line says the request was retried")
			}
		})
	}
}

// proxyE2EStatusDoc is /status as design.md defines it.
type proxyE2EStatusDoc struct {
	Clock struct {
		Synced             bool    `json:"synced"`
		Source             string  `json:"source"`
		CorrectedTime      string  `json:"corrected_time"`
		OffsetSeconds      float64 `json:"offset_seconds"`
		UncertaintySeconds float64 `json:"uncertainty_seconds"`
		LastSync           *string `json:"last_sync"`
		Reason             string  `json:"reason"`
	} `json:"clock"`
	Lambda struct {
		Inflight int `json:"inflight"`
		Queued   int `json:"queued"`
	} `json:"lambda"`
}

func proxyE2EStatus(t *testing.T, p *runningProxy) proxyE2EStatusDoc {
	t.Helper()
	var st proxyE2EStatusDoc
	if code := p.getJSON(t, "/status", &st); code != http.StatusOK {
		t.Fatalf("/status: %d", code)
	}
	return st
}

// proxyE2EGet fetches an admin path.
func proxyE2EGet(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// proxyE2EStatusFields checks the raw /status JSON against the contract:
// every field present with its JSON type.
func proxyE2EStatusFields(t *testing.T, raw []byte) {
	t.Helper()
	var doc map[string]map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("/status %s: %v", raw, err)
	}
	want := map[string]map[string]string{
		"clock": {"synced": "bool", "source": "string", "corrected_time": "string", "offset_seconds": "float64",
			"uncertainty_seconds": "float64", "last_sync": "string-or-null"},
		"lambda": {"inflight": "float64", "queued": "float64"},
	}
	for obj, fields := range want {
		for name, typ := range fields {
			v, ok := doc[obj][name]
			if !ok {
				t.Errorf("/status %s.%s missing in %s", obj, name, raw)
				continue
			}
			got := fmt.Sprintf("%T", v)
			if got == typ || (typ == "string-or-null" && (v == nil || got == "string")) {
				continue
			}
			t.Errorf("/status %s.%s is %s, want %s", obj, name, got, typ)
		}
	}
}

// TestProxyE2EAdminContract: /healthz, /readyz, /status and /metrics of the
// binary as design.md defines them, before and after traffic, unsynced and
// synced to a real NTP server (chrony).
func TestProxyE2EAdminContract(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource), Env: proxyCredsEnv(proxyKeys)})

	t.Run("healthz", func(t *testing.T) {
		if code, _, body := proxyE2EGet(t, p.AdminURL+"/healthz"); code != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("/healthz: %d %q", code, body)
		}
	})
	t.Run("readyz without a time source", func(t *testing.T) {
		code, h, body := proxyE2EGet(t, p.AdminURL+"/readyz")
		var v struct {
			Ready  *bool  `json:"ready"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(body, &v); err != nil || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("/readyz is not JSON (%s): %q", h.Get("Content-Type"), body)
		}
		if code != http.StatusServiceUnavailable || v.Ready == nil || *v.Ready || v.Reason == "" {
			t.Errorf("/readyz: %d %s, want 503 with ready=false and a reason", code, body)
		}
		t.Logf("/readyz: %d %s", code, bytes.TrimSpace(body))
	})
	t.Run("status without a time source", func(t *testing.T) {
		_, _, raw := proxyE2EGet(t, p.AdminURL+"/status")
		proxyE2EStatusFields(t, raw)
		st := proxyE2EStatus(t, p)
		if st.Clock.Synced {
			t.Error("synced with no time source answering and no traffic")
		}
		ct, err := time.Parse(time.RFC3339Nano, st.Clock.CorrectedTime)
		if err != nil || time.Since(ct).Abs() > 5*time.Second {
			t.Errorf("corrected_time %q (err %v) is not RFC 3339 now", st.Clock.CorrectedTime, err)
		}
		if !strings.Contains(st.Clock.CorrectedTime, ".") {
			t.Errorf("corrected_time %q has no fractional seconds (the contract says ns)", st.Clock.CorrectedTime)
		}
	})

	// Traffic: two successes and one throttled answer.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := p.awsConfig()
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	fake.FailNext(1, proxytest.FailModeThrottle)
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{}`)}); err == nil {
		t.Fatal("Invoke answered 429 by the fake succeeded")
	}

	t.Run("metrics after traffic", func(t *testing.T) {
		code, _, body := proxyE2EGet(t, p.AdminURL+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
		}
		for _, name := range []string{"skewproxy_clock_offset_seconds", "skewproxy_clock_uncertainty_seconds", "skewproxy_requests_total",
			"skewproxy_failures_total", "skewproxy_queue_wait_seconds", "skewproxy_lambda_inflight"} {
			if _, ok := fams[name]; !ok {
				t.Errorf("/metrics has no %s", name)
			}
		}
		seen := map[string]float64{}
		if f := fams["skewproxy_requests_total"]; f != nil {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				seen[labels["service"]+"/"+labels["outcome"]] += m.GetCounter().GetValue()
			}
		}
		t.Logf("skewproxy_requests_total by service/outcome: %v", seen)
		var lambdaTotal, stsTotal float64
		for k, v := range seen {
			switch {
			case strings.HasPrefix(strings.ToLower(k), "lambda/"):
				lambdaTotal += v
			case strings.HasPrefix(strings.ToLower(k), "sts/"):
				stsTotal += v
			}
		}
		if lambdaTotal != 2 || stsTotal != 1 {
			t.Errorf("requests_total: lambda %v, sts %v; want 2 and 1 (by service and outcome): %v", lambdaTotal, stsTotal, seen)
		}
		if f := fams["skewproxy_failures_total"]; f != nil {
			var throttled float64
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "failure" && l.GetValue() == "throttled" {
						throttled += m.GetCounter().GetValue()
					}
				}
			}
			if throttled != 1 {
				t.Errorf("skewproxy_failures_total{failure=\"throttled\"} = %v, want 1", throttled)
			}
		}
	})

	t.Run("synced to chrony with the host 3h ahead", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts chronyd")
		}
		addr := ntptest.Start(t)
		p := startProxy(t, proxyOptions{Args: []string{"--time-source", "ntp://" + addr, "--clock-offset", "+3h"}, Env: proxyCredsEnv(proxyKeys)})
		took := p.waitReady(t, 20*time.Second)
		_, _, raw := proxyE2EGet(t, p.AdminURL+"/status")
		proxyE2EStatusFields(t, raw)
		st := proxyE2EStatus(t, p)
		t.Logf("ready after %v; /status %s", took, bytes.TrimSpace(raw))
		if !st.Clock.Synced || st.Clock.Source != "ntp://"+addr {
			t.Errorf("synced %v source %q, want true and ntp://%s", st.Clock.Synced, st.Clock.Source, addr)
		}
		if math.Abs(st.Clock.OffsetSeconds-3*3600) > 1 {
			t.Errorf("offset_seconds %v, want 10800 ± 1", st.Clock.OffsetSeconds)
		}
		if st.Clock.UncertaintySeconds < 0 || st.Clock.UncertaintySeconds > 1 {
			t.Errorf("uncertainty_seconds %v, want within [0, 1]", st.Clock.UncertaintySeconds)
		}
		ct, err := time.Parse(time.RFC3339Nano, st.Clock.CorrectedTime)
		if err != nil || time.Since(ct).Abs() > 2*time.Second {
			t.Errorf("corrected_time %q (err %v): the corrected clock was fooled by --clock-offset", st.Clock.CorrectedTime, err)
		}
		if st.Clock.LastSync == nil {
			t.Error("last_sync is null after a sync")
		} else if ls, err := time.Parse(time.RFC3339Nano, *st.Clock.LastSync); err != nil || time.Since(ls).Abs() > 30*time.Second {
			t.Errorf("last_sync %q (err %v)", *st.Clock.LastSync, err)
		}
		if code, _, body := proxyE2EGet(t, p.AdminURL+"/readyz"); code != http.StatusOK {
			t.Errorf("/readyz after sync: %d %s", code, body)
		}
	})
}

// proxyE2ESeen is a client transport that remembers the signatures the
// client sent (Authorization values and presigned X-Amz-Signature).
type proxyE2ESeen struct {
	base    http.RoundTripper
	mu      sync.Mutex
	secrets []string
}

func (s *proxyE2ESeen) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	if a := r.Header.Get("Authorization"); a != "" {
		s.secrets = append(s.secrets, a, proxyE2ESignatureOf(a))
	}
	if sig := r.URL.Query().Get("X-Amz-Signature"); sig != "" {
		s.secrets = append(s.secrets, sig)
	}
	s.mu.Unlock()
	return s.base.RoundTrip(r)
}

// proxyE2ESignatureOf is the Signature= part of an Authorization value.
func proxyE2ESignatureOf(auth string) string {
	_, sig, _ := strings.Cut(auth, "Signature=")
	return strings.TrimSpace(sig)
}

// TestProxyE2ELogsHoldNoSecrets: after SDK calls with a client session
// token, a presigned URL and an upstream failure, the proxy's complete
// debug logs hold no secret key, session token, signature or Authorization
// value, the client's or its own.
func TestProxyE2ELogsHoldNoSecrets(t *testing.T) {
	proxyCreds := proxytest.Credentials{AccessKeyID: "AKIDSKEWPROXYLOGS", SecretAccessKey: "proxy-logs-secret-Q7w9", SessionToken: "proxy-logs-session-token-Z3x8"}
	clientCreds := aws.Credentials{AccessKeyID: "AKIDCLIENTLOGS", SecretAccessKey: "client-logs-secret-K2m4", SessionToken: "client-logs-session-token-P5r6"}
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyCreds})
	p := startProxy(t, proxyOptions{Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource), Env: proxyCredsEnv(proxyCreds)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	seen := &proxyE2ESeen{base: p.Client().Transport}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: seen}
	cfg := aws.Config{Region: "us-east-1", HTTPClient: hc, RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return clientCreds, nil })}
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"a":1}`)}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	fake.FailNext(1, proxytest.FailModeSignatureMismatch)
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"a":2}`)}); err == nil {
		t.Error("Invoke answered SignatureDoesNotMatch succeeded")
	}
	// Presigned URLs with the client's keys and token: the SDK's form (no
	// X-Amz-Expires) and one with X-Amz-Expires, which the proxy passes on.
	pre, err := sts.NewPresignClient(sts.NewFromConfig(cfg)).PresignGetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	withExpires, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		"https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=900", nil)
	preURL2, _, err := v4.NewSigner().PresignHTTP(ctx, clientCreds, withExpires, proxytest.HexSHA256(nil), "sts", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{pre.URL, preURL2} {
		preReq, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := hc.Do(preReq)
		if err != nil {
			t.Fatalf("presigned GetCallerIdentity: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("presigned GetCallerIdentity through the proxy: %s %.120s", resp.Status, body)
	}

	if err := p.Stop(t); err != nil {
		t.Errorf("proxy exit: %v", err)
	}
	logs := p.Logs()

	secrets := map[string]string{
		"client secret key":    clientCreds.SecretAccessKey,
		"client session token": clientCreds.SessionToken,
		"proxy secret key":     proxyCreds.SecretAccessKey,
		"proxy session token":  proxyCreds.SessionToken,
	}
	seen.mu.Lock()
	for i, s := range seen.secrets {
		secrets[fmt.Sprintf("client signature or Authorization #%d", i)] = s
	}
	seen.mu.Unlock()
	for i, r := range fake.Requests() {
		if a := r.Header.Get("Authorization"); a != "" {
			secrets[fmt.Sprintf("upstream Authorization #%d", i)] = a
			secrets[fmt.Sprintf("upstream signature #%d", i)] = proxyE2ESignatureOf(a)
		}
		if q, err := url.ParseQuery(r.RawQuery); err == nil && q.Get("X-Amz-Signature") != "" {
			secrets[fmt.Sprintf("upstream presigned signature #%d", i)] = q.Get("X-Amz-Signature")
		}
		if r.Verified != nil {
			secrets[fmt.Sprintf("upstream verified signature #%d", i)] = r.Verified.Signature
		}
	}
	if len(secrets) < 10 {
		t.Fatalf("only %d secrets collected; the test saw too little traffic", len(secrets))
	}
	for what, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s)} {
			if strings.Contains(logs, form) {
				t.Errorf("the proxy's logs contain the %s", what)
			}
		}
	}
	for _, want := range []string{"GetCallerIdentity", "Invoke"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs never mention %s: the grep proves nothing", want)
		}
	}
	t.Logf("checked %d secrets against %d bytes (%d lines) of debug logs", len(secrets), len(logs), strings.Count(logs, "\n"))
}

// TestProxyE2EPresignedSTS: a presigned URL is never re-signed, only passed
// on unchanged (it may belong to someone else): a GetCallerIdentity URL
// presigned elsewhere with valid keys works through the proxy and upstream
// sees the client's own signature. Both forms are real: aws-sdk-go-v2's
// sts.PresignGetCallerIdentity writes no X-Amz-Expires (STS ignores it and
// allows 15 minutes: aws/aws-sdk-go#2167,
// kubernetes-sigs/aws-iam-authenticator#258); other presigners add one.
func TestProxyE2EPresignedSTS(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource), Env: proxyCredsEnv(proxyKeys)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The URL's owner holds valid keys (here: the same the fake accepts).
	owner := aws.Credentials{AccessKeyID: proxyKeys.AccessKeyID, SecretAccessKey: proxyKeys.SecretAccessKey}
	cfg := p.awsConfig()
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return owner, nil })
	tests := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"aws-sdk-go-v2 PresignGetCallerIdentity (no X-Amz-Expires)", func(t *testing.T) string {
			pre, err := sts.NewPresignClient(sts.NewFromConfig(cfg)).PresignGetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatal(err)
			}
			return pre.URL
		}},
		{"v4 PresignHTTP with X-Amz-Expires=900", func(t *testing.T) string {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
				"https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=900", nil)
			u, _, err := v4.NewSigner().PresignHTTP(ctx, owner, req, proxytest.HexSHA256(nil), "sts", "us-east-1", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return u
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			u, err := url.Parse(tt.url(t))
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			resp, err := p.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), proxytest.AccountID) {
				t.Errorf("presigned GetCallerIdentity through the proxy: %s %s", resp.Status, body)
			}
			reqs := fake.Requests()
			if len(reqs) == 0 {
				t.Fatal("the presigned request never reached upstream")
			}
			up, _ := url.ParseQuery(reqs[len(reqs)-1].RawQuery)
			if got, want := up.Get("X-Amz-Signature"), u.Query().Get("X-Amz-Signature"); got != want {
				t.Error("upstream did not get the client's presigned signature: the URL was changed")
			}
		})
	}
}

// TestProxyE2ESIGTERMDrains: SIGTERM while a slow Lambda invoke is in
// flight stops new connections, lets the invoke complete, then exits 0.
func TestProxyE2ESIGTERMDrains(t *testing.T) {
	const delay = 4 * time.Second
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys,
		Functions: map[string]proxytest.FunctionBehavior{"slow": {Delay: delay}}})
	p := startProxy(t, proxyOptions{Args: proxyE2EFakeArgs(t, fake, "--time-source", proxyE2ENoTimeSource), Env: proxyCredsEnv(proxyKeys)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type result struct {
		out *lambda.InvokeOutput
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		out, err := lambda.NewFromConfig(p.awsConfig()).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"slow":true}`)})
		done <- result{out, err, time.Now()}
	}()
	for fake.Stats().Requests == 0 {
		if ctx.Err() != nil {
			t.Fatal("the invoke never reached the fake")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes: new connections are refused while the invoke
	// is still running.
	refused := false
	for time.Since(sigAt) < delay/2 {
		c, err := net.DialTimeout("tcp", p.ProxyURL.Host, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !refused {
		t.Errorf("the proxy still accepted connections %v after SIGTERM", delay/2)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy did not exit within 30s of SIGTERM")
	}
	exitAt := time.Now()
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", p.err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight invoke never returned")
	}
	if r.err != nil {
		t.Fatalf("the in-flight invoke failed across SIGTERM: %v", r.err)
	}
	if !strings.Contains(string(r.out.Payload), "slow") {
		t.Errorf("payload %q", r.out.Payload)
	}
	if r.at.After(exitAt) {
		t.Errorf("the invoke returned %v after the process exited", r.at.Sub(exitAt))
	}
	t.Logf("SIGTERM to exit: %v (invoke answered %v after SIGTERM)", exitAt.Sub(sigAt), r.at.Sub(sigAt))
	if !strings.Contains(p.Logs(), "skewproxy stopped") {
		t.Error("no 'skewproxy stopped' log line")
	}
}

// proxyE2EAWSCLI is the AWS CLI v2 from Debian (an aws v1 may come first on PATH).
const proxyE2EAWSCLI = "/usr/bin/aws"

// TestProxyE2EAWSCLI: the AWS CLI v2 with placeholder keys, HTTPS_PROXY and
// AWS_CA_BUNDLE does s3 mb/cp/ls (a multipart upload and ranged downloads
// included) against MinIO and sts get-caller-identity against the verifying
// fake, all through the binary; straight to MinIO it is refused.
func TestProxyE2EAWSCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	if _, err := os.Stat(proxyE2EAWSCLI); err != nil {
		t.Skipf("no AWS CLI v2: %v", err)
	}
	m := proxytest.StartMinIO(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: m.Credentials})
	p := startProxy(t, proxyOptions{
		Args: append(proxyE2ES3Resolve(m.Endpoint()),
			"--resolve", "sts.us-east-1.amazonaws.com:443="+fake.URL(),
			"--resolve", "sts.amazonaws.com:443="+fake.URL(),
			"--upstream-ca", fake.CAFile(t), "--time-source", proxyE2ENoTimeSource),
		Env: proxyCredsEnv(m.Credentials),
	})
	home := t.TempDir()
	env := []string{
		"PATH=/usr/bin:/bin", "HOME=" + home, "LANG=C.UTF-8",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=",
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER", "AWS_SECRET_ACCESS_KEY=placeholder-secret",
	}
	viaProxy := append([]string{"HTTPS_PROXY=" + p.ProxyURL.String(), "AWS_CA_BUNDLE=" + p.CAFile}, env...)
	run := func(env []string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, proxyE2EAWSCLI, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("aws %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(viaProxy, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	dir := t.TempDir()
	big := make([]byte, 9<<20+12345) // above the CLI's 8 MiB multipart threshold
	for i := range big {
		big[i] = byte(i*31 + i>>11)
	}
	files := map[string][]byte{"big file.bin": big, "a b+c=d:é.txt": []byte("small object\n")}
	mustRun("s3", "mb", "s3://cli-bucket")
	for name, data := range files {
		local := filepath.Join(dir, "up-"+strconv.Itoa(len(data)))
		if err := os.WriteFile(local, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mustRun("s3", "cp", "--no-progress", local, "s3://cli-bucket/dir/"+name)
	}
	ls := mustRun("s3", "ls", "s3://cli-bucket/dir/")
	for name, data := range files {
		if !strings.Contains(ls, strconv.Itoa(len(data))+" "+name) {
			t.Errorf("s3 ls does not list %q with %d bytes:\n%s", name, len(data), ls)
		}
		local := filepath.Join(dir, "down-"+strconv.Itoa(len(data)))
		mustRun("s3", "cp", "--no-progress", "s3://cli-bucket/dir/"+name, local)
		got, err := os.ReadFile(local)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("s3 cp down %q: %d bytes (err %v), want the %d uploaded", name, len(got), err, len(data))
		}
	}
	var id struct{ Account, Arn string }
	if err := json.Unmarshal([]byte(mustRun("sts", "get-caller-identity", "--output", "json")), &id); err != nil || id.Account != proxytest.AccountID {
		t.Errorf("sts get-caller-identity: %+v (err %v)", id, err)
	}
	if n := fake.Stats().Operations["STS.GetCallerIdentity"]; n != 1 {
		t.Errorf("the fake verified %d GetCallerIdentity calls, want 1", n)
	}

	// The proxy's request lines show the CLI's real traffic: a multipart
	// upload and ranged downloads of the big file, virtual-hosted.
	ops := proxyE2ERequestLines(t, p)
	t.Logf("proxy request lines: %v", ops)
	for _, want := range []string{
		"cli-bucket.s3.us-east-1.amazonaws.com CreateMultipartUpload 200",
		"cli-bucket.s3.us-east-1.amazonaws.com UploadPart 200",
		"cli-bucket.s3.us-east-1.amazonaws.com CompleteMultipartUpload 200",
		"cli-bucket.s3.us-east-1.amazonaws.com GetObject 206",
		"cli-bucket.s3.us-east-1.amazonaws.com ListObjectsV2 200",
		"sts.us-east-1.amazonaws.com GetCallerIdentity 200",
	} {
		if ops[want] == 0 {
			t.Errorf("no request line %q", want)
		}
	}

	if out, err := run(env, "s3", "ls", "s3://cli-bucket/dir/", "--endpoint-url", m.Endpoint()); err == nil {
		t.Errorf("the CLI with placeholder keys listed the bucket straight from MinIO:\n%s", out)
	}
}

// proxyE2ERequestLines counts the proxy's info "request" log lines by
// "host operation status".
func proxyE2ERequestLines(t *testing.T, p *runningProxy) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, line := range strings.Split(p.Logs(), "\n") {
		var rec struct {
			Msg       string `json:"msg"`
			Host      string `json:"host"`
			Operation string `json:"operation"`
			Status    int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" {
			n[fmt.Sprintf("%s %s %d", rec.Host, rec.Operation, rec.Status)]++
		}
	}
	return n
}
