package main

// End-to-end tests of presigned URLs: the built binary mints them (the
// presign command, or POST /presign on a running proxy), a real MinIO
// checks them, and plain curl is the client that holds them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

const (
	presignE2EBucket  = "presign-e2e"
	presignE2EKey     = "dir/hello world.txt"
	presignE2EContent = "hello from a presigned URL\n"
)

// presignE2ENoTime is a time source that never answers, with a short wait,
// so the command signs with the (offset) host clock at once.
var presignE2ENoTime = []string{"--time-source", "ntp://127.0.0.1:1", "--time-timeout", "300ms"}

// presignE2EArgs is presignE2ENoTime followed by args (a fresh slice).
func presignE2EArgs(args ...string) []string {
	return append(append([]string{}, presignE2ENoTime...), args...)
}

// presignE2EMinIO starts MinIO with a bucket holding presignE2EKey.
func presignE2EMinIO(t *testing.T) *proxytest.MinIO {
	t.Helper()
	m := proxytest.StartMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := s3.New(s3.Options{
		Region:       proxytest.MinIORegion,
		BaseEndpoint: aws.String(m.Endpoint()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.Credentials.AccessKeyID, m.Credentials.SecretAccessKey, ""),
		HTTPClient:   &http.Client{Transport: &http.Transport{Proxy: nil}},
	})
	// StartMinIO returns once MinIO is live, which can be a moment before it
	// is initialised (503 XMinioServerNotInitialized): retry, bounded.
	for {
		_, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(presignE2EBucket)})
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "XMinioServerNotInitialized") || ctx.Err() != nil {
			t.Fatalf("create bucket: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(presignE2EBucket), Key: aws.String(presignE2EKey),
		Body: strings.NewReader(presignE2EContent), ContentType: aws.String("text/plain")}); err != nil {
		t.Fatalf("put object: %v", err)
	}
	return m
}

// presignE2EKeysEnv gives the binary MinIO's root keys through the environment.
func presignE2EKeysEnv(m *proxytest.MinIO) []string {
	return proxyCredsEnv(proxytest.Credentials{AccessKeyID: m.Credentials.AccessKeyID, SecretAccessKey: m.Credentials.SecretAccessKey})
}

// presignE2ERun runs `skewproxy presign --json` and decodes its answer.
func presignE2ERun(t *testing.T, env []string, args ...string) (presignResult, string) {
	t.Helper()
	out, stderr, code := runBinary(t, "", env, append([]string{"presign", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("presign %v: exit %d; stderr:\n%s", args, code, stderr)
	}
	var res presignResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("presign --json output %q: %v", out, err)
	}
	return res, stderr
}

// presignE2ECurl runs plain curl (no AWS knowledge) and returns the status
// code and body.
func presignE2ECurl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bodyFile := filepath.Join(t.TempDir(), "body")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "20", "-o", bodyFile, "-w", "%{http_code}"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl status %q: %v", out, err)
	}
	body, _ := os.ReadFile(bodyFile)
	return code, string(body)
}

// presignE2EQuery returns the query of a presigned URL.
func presignE2EQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("URL %q: %v", raw, err)
	}
	return u.Query()
}

// presignE2EAmzDate parses a presigned URL's X-Amz-Date.
func presignE2EAmzDate(t *testing.T, raw string) time.Time {
	t.Helper()
	d, err := time.Parse("20060102T150405Z", presignE2EQuery(t, raw).Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("X-Amz-Date of %s: %v", raw, err)
	}
	return d
}

// presignE2EExpired asserts MinIO's answer to an expired presigned URL.
func presignE2EExpired(t *testing.T, code int, body string) {
	t.Helper()
	if code != http.StatusForbidden || !strings.Contains(body, "<Code>AccessDenied</Code>") || !strings.Contains(body, "Request has expired") {
		t.Errorf("expired URL: status %d, body %s; want 403 AccessDenied Request has expired", code, body)
	}
}

// TestPresignE2ECurlDownloadUpload: URLs from the presign command download
// and upload with plain curl; the signed Content-Type is enforced.
func TestPresignE2ECurlDownloadUpload(t *testing.T) {
	m := presignE2EMinIO(t)
	env := presignE2EKeysEnv(m)

	get, _ := presignE2ERun(t, env, presignE2EArgs("--endpoint-url", m.Endpoint(), "--expires", "5m", "s3://"+presignE2EBucket+"/"+presignE2EKey)...)
	if !strings.HasPrefix(get.URL, m.Endpoint()+"/"+presignE2EBucket+"/dir/hello%20world.txt?") {
		t.Errorf("url %s is not path-style at the endpoint", get.URL)
	}
	if get.CredentialExpiresAt != nil || get.Clamped {
		t.Errorf("root keys: credential_expires_at %v clamped %t", get.CredentialExpiresAt, get.Clamped)
	}
	if d := get.ExpiresAt.Sub(presignE2EAmzDate(t, get.URL)); d != 5*time.Minute {
		t.Errorf("expires_at - X-Amz-Date = %s, want 5m", d)
	}
	code, body := presignE2ECurl(t, get.URL)
	if code != 200 || body != presignE2EContent {
		t.Fatalf("curl GET: %d %q", code, body)
	}

	// The plain (non-JSON) form prints just the URL.
	out, stderr, exit := runBinary(t, "", env, append(append([]string{"presign"}, presignE2ENoTime...), "--endpoint-url", m.Endpoint(), "s3://"+presignE2EBucket+"/"+presignE2EKey)...)
	if exit != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "http://") {
		t.Fatalf("plain presign: exit %d out %q stderr %s", exit, out, stderr)
	}
	if code, body := presignE2ECurl(t, strings.TrimSpace(out)); code != 200 || body != presignE2EContent {
		t.Errorf("curl GET of the plain URL: %d %q", code, body)
	}

	put, stderr := presignE2ERun(t, env, presignE2EArgs("--method", "PUT", "--content-type", "text/csv", "--header", "x-amz-meta-owner:alice",
		"--endpoint-url", m.Endpoint(), "--expires", "5m", "s3://"+presignE2EBucket+"/up/loaded.csv")...)
	if put.Headers["Content-Type"] != "text/csv" || put.Headers["X-Amz-Meta-Owner"] != "alice" {
		t.Errorf("headers to send = %v", put.Headers)
	}
	if !strings.Contains(stderr, "no time source answered") {
		t.Errorf("no warning about the missing time source on stderr: %s", stderr)
	}
	code, body = presignE2ECurl(t, "-X", "PUT", "-H", "Content-Type: text/csv", "-H", "X-Amz-Meta-Owner: alice", "--data-binary", "a,b\n", put.URL)
	if code != 200 {
		t.Fatalf("curl PUT: %d %s", code, body)
	}
	// Without one of the signed headers S3 refuses the upload.
	if code, body := presignE2ECurl(t, "-X", "PUT", "-H", "Content-Type: text/csv", "--data-binary", "not,this\n", put.URL); code < 400 || code > 403 || !strings.Contains(body, "<Code>AccessDenied</Code>") {
		t.Errorf("PUT without the signed x-amz-meta-owner: %d %s", code, body)
	}
	back, _ := presignE2ERun(t, env, presignE2EArgs("--endpoint-url", m.Endpoint(), "s3://"+presignE2EBucket+"/up/loaded.csv")...)
	code, body = presignE2ECurl(t, back.URL)
	if code != 200 || body != "a,b\n" {
		t.Errorf("read back the upload: %d %q", code, body)
	}
}

// TestPresignE2EExpires: a 2-second URL works at once and gets S3's
// "Request has expired" after 3 seconds.
func TestPresignE2EExpires(t *testing.T) {
	m := presignE2EMinIO(t)
	res, _ := presignE2ERun(t, presignE2EKeysEnv(m), presignE2EArgs("--endpoint-url", m.Endpoint(), "--expires", "2s", "s3://"+presignE2EBucket+"/"+presignE2EKey)...)
	if q := presignE2EQuery(t, res.URL); q.Get("X-Amz-Expires") != "2" {
		t.Fatalf("X-Amz-Expires = %q", q.Get("X-Amz-Expires"))
	}
	if code, body := presignE2ECurl(t, res.URL); code != 200 || body != presignE2EContent {
		t.Fatalf("fresh URL: %d %q", code, body)
	}
	time.Sleep(time.Until(res.ExpiresAt.Add(time.Second)))
	code, body := presignE2ECurl(t, res.URL)
	presignE2EExpired(t, code, body)
}

// TestPresignE2EClockOffset: on a host 20 minutes behind, with a real NTP
// server answering, the URL is signed at true time and works; with no time
// source the same host signs a URL that is dead on arrival.
func TestPresignE2EClockOffset(t *testing.T) {
	m := presignE2EMinIO(t)
	ntp := ntptest.Start(t)
	env := presignE2EKeysEnv(m)
	target := "s3://" + presignE2EBucket + "/" + presignE2EKey

	before := time.Now()
	res, stderr := presignE2ERun(t, env, "--clock-offset", "-20m", "--time-source", "ntp://"+ntp, "--endpoint-url", m.Endpoint(), "--expires", "10m", target)
	after := time.Now()
	t.Logf("presign with a chrony time source took %s", after.Sub(before).Round(time.Millisecond))
	if strings.Contains(stderr, "no time source answered") {
		t.Fatalf("chrony did not answer: %s", stderr)
	}
	// X-Amz-Date has whole seconds: true signing time lies in [before, after].
	amz := presignE2EAmzDate(t, res.URL)
	if amz.Before(before.Add(-time.Second)) || amz.After(after) {
		t.Errorf("X-Amz-Date %s not within 1s of true time [%s, %s]", amz, before.UTC(), after.UTC())
	}
	if code, body := presignE2ECurl(t, res.URL); code != 200 || body != presignE2EContent {
		t.Errorf("URL signed with corrected time: %d %q", code, body)
	}

	skewed, stderr := presignE2ERun(t, env, presignE2EArgs("--clock-offset", "-20m", "--endpoint-url", m.Endpoint(), "--expires", "10m", target)...)
	if !strings.Contains(stderr, "no time source answered") || !strings.Contains(stderr, "--clock-offset -20m") {
		t.Errorf("no warning about signing with the host clock: %s", stderr)
	}
	if d := time.Since(presignE2EAmzDate(t, skewed.URL)); d < 19*time.Minute || d > 21*time.Minute {
		t.Errorf("host-clock URL signed %s ago, want about 20m", d)
	}
	code, body := presignE2ECurl(t, skewed.URL)
	presignE2EExpired(t, code, body)
}

// presignE2EAssumeRole gets real session credentials from MinIO's STS.
func presignE2EAssumeRole(t *testing.T, m *proxytest.MinIO) miniocreds.Value {
	t.Helper()
	sts, err := miniocreds.NewSTSAssumeRole(m.Endpoint(), miniocreds.STSAssumeRoleOptions{
		AccessKey: m.Credentials.AccessKeyID, SecretKey: m.Credentials.SecretAccessKey,
		DurationSeconds: 900, Location: proxytest.MinIORegion,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := sts.GetWithContext(&miniocreds.CredContext{Context: ctx, Client: &http.Client{Transport: &http.Transport{Proxy: nil}}})
	if err != nil {
		t.Fatalf("AssumeRole at MinIO: %v", err)
	}
	if v.SessionToken == "" || v.Expiration.IsZero() {
		t.Fatalf("AssumeRole gave no session token or expiry: token %t expiry %s", v.SessionToken != "", v.Expiration)
	}
	return v
}

// presignE2EProcessProfile writes an AWS config whose default profile gets
// creds from a credential_process that prints them with their Expiration:
// a standard-chain source that knows when the session ends.
func presignE2EProcessProfile(t *testing.T, v miniocreds.Value) []string {
	t.Helper()
	dir := t.TempDir()
	doc, err := json.Marshal(map[string]any{"Version": 1, "AccessKeyId": v.AccessKeyID, "SecretAccessKey": v.SecretAccessKey,
		"SessionToken": v.SessionToken, "Expiration": v.Expiration.UTC().Format(time.RFC3339)})
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(dir, "session.json")
	cfgFile := filepath.Join(dir, "config")
	if err := os.WriteFile(credsFile, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("[default]\nregion = us-east-1\ncredential_process = cat %s\n", credsFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"AWS_CONFIG_FILE=" + cfgFile}
}

// TestPresignE2ETemporaryCredentials: with MinIO STS session credentials
// (15 minutes), an hour is refused with the source, the expiry and the fix;
// --clamp shortens it to the session, and the clamped URL works.
func TestPresignE2ETemporaryCredentials(t *testing.T) {
	m := presignE2EMinIO(t)
	session := presignE2EAssumeRole(t, m)
	env := presignE2EProcessProfile(t, session)
	target := []string{"--endpoint-url", m.Endpoint(), "s3://" + presignE2EBucket + "/" + presignE2EKey}
	args := func(flags ...string) []string { return presignE2EArgs(append(flags, target...)...) }

	out, stderr, code := runBinary(t, "", env, append([]string{"presign"}, args("--expires", "1h")...)...)
	if code == 0 || out != "" {
		t.Fatalf("an hour past a 15-minute session was not refused: exit %d out %q", code, out)
	}
	for _, want := range []string{"ProcessProvider", session.Expiration.UTC().Format(time.RFC3339), "IAM-user access keys", "--clamp", "never outlives"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal lacks %q:\n%s", want, stderr)
		}
	}

	res, stderr := presignE2ERun(t, env, args("--expires", "1h", "--clamp")...)
	if !res.Clamped || res.CredentialExpiresAt == nil || !res.CredentialExpiresAt.Equal(session.Expiration.UTC().Truncate(time.Second)) {
		t.Errorf("clamped %t credential_expires_at %v, want true and %s", res.Clamped, res.CredentialExpiresAt, session.Expiration)
	}
	if !strings.Contains(stderr, "warning: expiry clamped from 1h0m0s") {
		t.Errorf("no clamp warning on stderr: %s", stderr)
	}
	exp, _ := strconv.Atoi(presignE2EQuery(t, res.URL).Get("X-Amz-Expires"))
	if exp < 800 || exp > 900 || res.ExpiresAt.After(*res.CredentialExpiresAt) {
		t.Errorf("clamped X-Amz-Expires %d, expires_at %s (session ends %s)", exp, res.ExpiresAt, res.CredentialExpiresAt)
	}
	if q := presignE2EQuery(t, res.URL); q.Get("X-Amz-Security-Token") == "" {
		t.Error("no session token in the URL")
	}
	if code, body := presignE2ECurl(t, res.URL); code != 200 || body != presignE2EContent {
		t.Errorf("clamped URL: %d %q", code, body)
	}

	short, _ := presignE2ERun(t, env, args("--expires", "5m")...)
	if short.Clamped || short.CredentialExpiresAt == nil {
		t.Errorf("5m within the session: clamped %t credential_expires_at %v", short.Clamped, short.CredentialExpiresAt)
	}
	if code, body := presignE2ECurl(t, short.URL); code != 200 || body != presignE2EContent {
		t.Errorf("5-minute URL: %d %q", code, body)
	}
}

// TestPresignE2EClampedURLLivesUntilSessionEnd waits a MinIO STS session
// out (15 minutes, MinIO's shortest): the URL clamped to the session works
// 20 s before the session ends and is refused 5 s after. It runs only with
// SKEWPROXY_SOAK=1 (make soak).
func TestPresignE2EClampedURLLivesUntilSessionEnd(t *testing.T) {
	if os.Getenv("SKEWPROXY_SOAK") != "1" {
		t.Skip("set SKEWPROXY_SOAK=1 (make soak) to wait out a 15-minute STS session")
	}
	m := presignE2EMinIO(t)
	session := presignE2EAssumeRole(t, m)
	env := presignE2EProcessProfile(t, session)
	res, _ := presignE2ERun(t, env, presignE2EArgs("--expires", "1h", "--clamp",
		"--endpoint-url", m.Endpoint(), "s3://"+presignE2EBucket+"/"+presignE2EKey)...)
	if !res.Clamped || res.CredentialExpiresAt == nil {
		t.Fatalf("not clamped: %+v", res)
	}
	if gap := res.CredentialExpiresAt.Sub(res.ExpiresAt); gap < 0 || gap > 2*time.Second {
		t.Errorf("URL ends %s, session %s: want the URL to end with the session (within 2 s)", res.ExpiresAt, res.CredentialExpiresAt)
	}
	check := func(at time.Time, wantOK bool) {
		t.Helper()
		time.Sleep(time.Until(at))
		code, body := presignE2ECurl(t, res.URL)
		t.Logf("%s before the session ends: %d", time.Until(*res.CredentialExpiresAt).Round(time.Second), code)
		switch {
		case wantOK && (code != http.StatusOK || body != presignE2EContent):
			t.Errorf("clamped URL before the session ends: %d %q", code, body)
		case !wantOK && code != http.StatusForbidden:
			t.Errorf("clamped URL after the session ended: %d %q, want 403", code, body)
		}
	}
	check(time.Now(), true)
	check(res.CredentialExpiresAt.Add(-20*time.Second), true)
	check(res.CredentialExpiresAt.Add(5*time.Second), false)
}

// presignE2EAdmin asks a running proxy's admin port for a URL.
func presignE2EAdmin(t *testing.T, p *runningProxy, body string) presignResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.AdminURL+"/presign", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("POST /presign: %v", err)
	}
	defer resp.Body.Close()
	var res presignResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /presign %s: status %d, decode %v", body, resp.StatusCode, err)
	}
	return res
}

// TestPresignE2EAdminThroughProxy: an app behind the sidecar mints URLs at
// POST /presign without keys; curl uses them through the proxy, which
// passes presigned requests through unsigned-over, answers an expired one
// with S3's own error, and logs it as presigned_expired.
func TestPresignE2EAdminThroughProxy(t *testing.T) {
	m := presignE2EMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "*." + proxytest.MinIODomain + ":443=" + m.Endpoint(),
			"--resolve", proxytest.MinIODomain + ":443=" + m.Endpoint(),
			"--time-source", "ntp://127.0.0.1:1",
		},
		Env: presignE2EKeysEnv(m),
	})
	viaProxy := []string{"-x", p.ProxyURL.String(), "--cacert", p.CAFile}

	get := presignE2EAdmin(t, p, `{"method":"GET","bucket":"`+presignE2EBucket+`","key":"`+presignE2EKey+`","expires":"5m"}`)
	if !strings.HasPrefix(get.URL, "https://"+presignE2EBucket+"."+proxytest.MinIODomain+"/dir/hello%20world.txt?") {
		t.Errorf("admin URL %s", get.URL)
	}
	if code, body := presignE2ECurl(t, append(viaProxy, get.URL)...); code != 200 || body != presignE2EContent {
		t.Fatalf("curl GET through the proxy: %d %q", code, body)
	}

	put := presignE2EAdmin(t, p, `{"method":"PUT","url":"https://`+presignE2EBucket+`.`+proxytest.MinIODomain+`/from-admin.txt","expires":300,"content_type":"text/plain"}`)
	if code, body := presignE2ECurl(t, append(viaProxy, "-X", "PUT", "-H", "Content-Type: text/plain", "--data-binary", "uploaded", put.URL)...); code != 200 {
		t.Fatalf("curl PUT through the proxy: %d %s", code, body)
	}
	back := presignE2EAdmin(t, p, `{"bucket":"`+presignE2EBucket+`","key":"from-admin.txt"}`)
	if code, body := presignE2ECurl(t, append(viaProxy, back.URL)...); code != 200 || body != "uploaded" {
		t.Errorf("read back through the proxy: %d %q", code, body)
	}

	short := presignE2EAdmin(t, p, `{"bucket":"`+presignE2EBucket+`","key":"`+presignE2EKey+`","expires":1}`)
	time.Sleep(time.Until(short.ExpiresAt.Add(1500 * time.Millisecond)))
	code, body := presignE2ECurl(t, append(viaProxy, short.URL)...)
	presignE2EExpired(t, code, body)
	if !strings.Contains(body, "<BucketName>"+presignE2EBucket+"</BucketName>") || !strings.Contains(body, "<RequestId>") {
		t.Errorf("MinIO's error body was not passed on unchanged: %s", body)
	}
	presignE2EWaitLog(t, p, func(rec map[string]any) bool {
		return rec["msg"] == "request" && rec["failure"] == "presigned_expired" && rec["status"] == float64(403)
	})
	if strings.Contains(p.Logs(), "X-Amz-Signature=") || strings.Contains(p.Logs(), get.URL) {
		t.Error("the proxy logged a presigned URL with its signature")
	}
}

// presignE2EWaitLog waits (bounded) for a JSON log line of p that matches.
func presignE2EWaitLog(t *testing.T, p *runningProxy, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(p.Logs(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && match(rec) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching log line; logs:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
