package main

// Which traffic the binary intercepts and signs: an unmodified SDK program
// routed by its environment alone, and hosts that are not intercepted, which
// never see the proxy's credentials (plain, CONNECT and through an egress
// proxy).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

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
