package main

// End-to-end proof of the intercepting proxy (issue 3) through the real
// binary, with real clients holding placeholder keys: what reaches the
// upstream (headers on the wire, the client's session token left behind), a
// skewed host clock corrected, logs free of secrets, presigned URLs passed
// through, SIGTERM draining, and the AWS CLI. S3 against MinIO is in
// e2e_s3_test.go, interception and routing in e2e_routing_test.go, the
// admin contract in e2e_admin_test.go.
//
// Helpers here are prefixed proxyE2E so they do not collide with the
// harness or other end-to-end files.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// proxyE2ENoTimeSource is a time source nobody answers, so the proxy runs on
// the host clock (plus --clock-offset) until AWS tells it the time.
const proxyE2ENoTimeSource = "ntp://127.0.0.1:1"

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
