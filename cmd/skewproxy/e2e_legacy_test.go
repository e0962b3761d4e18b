package main

// End-to-end proof of issue 16's "SigV2 in, SigV4 out" through the real
// binary with real legacy clients: s3cmd with --signature-v2 and boto3 with
// signature_version='s3' (HmacV1) against MinIO, a presigned V2 URL made by
// boto3 fetched with curl before and after its Expires, and query API
// requests signed by hand with SignatureVersion=2, 1 and 0 against the
// SigV4-verifying fake AWS. The clients hold placeholder keys: MinIO also
// speaks V2, so only a request the proxy signed again with its own keys
// gets through.
//
// Helpers here are prefixed legacyE2E.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

const (
	legacyE2ES3cmd  = "/usr/bin/s3cmd"
	legacyE2EPython = "/usr/bin/python3" // Debian's, which has python3-boto3
	// The client's placeholder keys (the proxy holds MinIO's).
	legacyE2EAKID   = "AKIDPLACEHOLDER"
	legacyE2ESecret = "placeholder-secret"
)

// legacyE2EMinIOProxy starts MinIO and the proxy in front of it for the
// S3 endpoints of us-east-1, path-style and virtual-hosted.
func legacyE2EMinIOProxy(t *testing.T) (*proxytest.MinIO, *runningProxy) {
	t.Helper()
	m := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: append(proxyE2ES3Resolve(m.Endpoint()), "--time-source", proxyE2ENoTimeSource),
		Env:  proxyCredsEnv(m.Credentials),
	})
	return m, p
}

// legacyE2EUpgrades reads the proxy's skewproxy_signature_upgrades_total
// counter from /metrics: requests signed again with SigV4, by the
// pre-SigV4 signature version they arrived with.
func legacyE2EUpgrades(p *runningProxy) map[string]int {
	n := map[string]int{}
	resp, err := http.Get(p.AdminURL + "/metrics")
	if err != nil {
		return n
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(text), "\n") {
		labels, ok := strings.CutPrefix(line, "skewproxy_signature_upgrades_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(labels, "} ")
		_, version, _ := strings.Cut(labels, `signature_version="`)
		version, _, _ = strings.Cut(version, `"`)
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			n[version] += int(v)
		}
	}
	return n
}

// legacyE2ERun runs a client program with a bounded time and returns its
// stdout; stderr goes into the error.
func legacyE2ERun(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// legacyE2EClientEnv is a clean environment for a legacy client.
func legacyE2EClientEnv(t *testing.T) []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C.UTF-8",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
}

// TestLegacyE2ES3cmdSignatureV2: s3cmd 2.x with --signature-v2 makes a
// bucket, puts, lists, gets and deletes an object whose key has spaces, and
// removes the bucket, through the proxy to MinIO; every request arrives as
// S3 V2 and leaves SigV4-signed. Straight to MinIO the same s3cmd is refused.
func TestLegacyE2ES3cmdSignatureV2(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	if _, err := os.Stat(legacyE2ES3cmd); err != nil {
		t.Skipf("no s3cmd (Debian package s3cmd; .ci/install-deps): %v", err)
	}
	m, p := legacyE2EMinIOProxy(t)
	dir := t.TempDir()
	config := func(name string, lines ...string) string {
		path := filepath.Join(dir, name)
		base := []string{"[default]", "access_key = " + legacyE2EAKID, "secret_key = " + legacyE2ESecret,
			"signature_v2 = True", "bucket_location = us-east-1", "progress_meter = False"}
		if err := os.WriteFile(path, []byte(strings.Join(append(base, lines...), "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	viaProxy := config("via-proxy.cfg",
		"host_base = s3.us-east-1.amazonaws.com",
		"host_bucket = %(bucket)s.s3.us-east-1.amazonaws.com",
		"use_https = True", "check_ssl_certificate = True", "check_ssl_hostname = True",
		"ca_certs_file = "+p.CAFile,
		"proxy_host = 127.0.0.1", "proxy_port = "+p.ProxyURL.Port())
	env := legacyE2EClientEnv(t)
	s3cmd := func(args ...string) string {
		t.Helper()
		out, err := legacyE2ERun(t, env, legacyE2ES3cmd, append([]string{"-c", viaProxy, "--signature-v2", "--no-mime-magic"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	const bucket = "legacy-s3cmd"
	const key = "dir/a key with spaces & more.txt"
	content := []byte("uploaded by s3cmd with Signature Version 2\n")
	local := filepath.Join(dir, "upload.txt")
	if err := os.WriteFile(local, content, 0o600); err != nil {
		t.Fatal(err)
	}
	s3cmd("mb", "s3://"+bucket)
	s3cmd("put", local, "s3://"+bucket+"/"+key)
	if ls := s3cmd("ls", "s3://"+bucket+"/dir/"); !strings.Contains(ls, "s3://"+bucket+"/"+key) || !strings.Contains(ls, strconv.Itoa(len(content))) {
		t.Errorf("s3cmd ls does not list %q (%d bytes):\n%s", key, len(content), ls)
	}
	down := filepath.Join(dir, "download.txt")
	s3cmd("get", "--force", "s3://"+bucket+"/"+key, down)
	if got, err := os.ReadFile(down); err != nil || !bytes.Equal(got, content) {
		t.Errorf("s3cmd get: %q (err %v), want %q", got, err, content)
	}
	s3cmd("del", "s3://"+bucket+"/"+key)
	if ls := s3cmd("ls", "s3://"+bucket+"/dir/"); strings.Contains(ls, key) {
		t.Errorf("after s3cmd del, ls still lists the key:\n%s", ls)
	}
	s3cmd("rb", "s3://"+bucket)
	if ls := s3cmd("ls"); strings.Contains(ls, bucket) {
		t.Errorf("after s3cmd rb, ls still lists the bucket:\n%s", ls)
	}

	up := legacyE2EUpgrades(p)
	t.Logf("signed requests by client signature version: %v; request lines: %v", up, proxyE2ERequestLines(t, p))
	if up["s3v2"] < 8 || len(up) != 1 {
		t.Errorf("requests by client signature version %v: want every s3cmd request (8 or more) upgraded from s3v2", up)
	}
	if logs := p.Logs(); !strings.Contains(logs, "upgraded a legacy signature to SigV4") || !strings.Contains(logs, `"signature_version":"s3v2"`) {
		t.Errorf("no info log line for the upgraded requests")
	}

	// The same s3cmd straight to MinIO: its placeholder keys are refused.
	direct := config("direct.cfg", "host_base = "+strings.TrimPrefix(m.Endpoint(), "http://"),
		"host_bucket = "+strings.TrimPrefix(m.Endpoint(), "http://"), "use_https = False")
	if out, err := legacyE2ERun(t, env, legacyE2ES3cmd, "-c", direct, "--signature-v2", "ls"); err == nil || !strings.Contains(err.Error(), "InvalidAccessKeyId") {
		t.Errorf("s3cmd with placeholder keys straight to MinIO: %v, want InvalidAccessKeyId\n%s", err, out)
	}
}

// legacyE2EBoto3Script drives boto3 with HmacV1 (signature_version='s3')
// through the proxy: argv is proxy URL, CA file, addressing style, bucket,
// key; it prints one JSON object.
const legacyE2EBoto3Script = `
import json, sys
import boto3
from botocore.config import Config

proxy, ca, style, bucket, key = sys.argv[1:6]
cfg = Config(signature_version="s3", proxies={"https": proxy},
             s3={"addressing_style": style}, retries={"max_attempts": 1})
s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="https://s3.us-east-1.amazonaws.com",
                  aws_access_key_id="` + legacyE2EAKID + `", aws_secret_access_key="` + legacyE2ESecret + `",
                  verify=ca, config=cfg)
body = b"uploaded by boto3 with HmacV1 (" + style.encode() + b")\n"
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain", Metadata={"owner": "legacy app"})
got = s3.get_object(Bucket=bucket, Key=key)
listed = [o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", [])]
s3.delete_object(Bucket=bucket, Key=key)
after = [o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", [])]
s3.delete_bucket(Bucket=bucket)
print(json.dumps({
    "body_ok": got["Body"].read() == body,
    "owner": got["ResponseMetadata"]["HTTPHeaders"].get("x-amz-meta-owner"),  # the stored header itself
    "content_type": got["ContentType"],
    "listed": listed,
    "after_delete": after,
}))
`

// TestLegacyE2EBoto3HmacV1: boto3 with Config(signature_version='s3') puts,
// gets, lists and deletes through the proxy to MinIO, path-style and
// virtual-hosted, keeping the object's metadata and content type.
func TestLegacyE2EBoto3HmacV1(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	legacyE2ERequireBoto3(t)
	_, p := legacyE2EMinIOProxy(t)
	env := legacyE2EClientEnv(t)
	for _, style := range []string{"path", "virtual"} {
		t.Run(style, func(t *testing.T) {
			bucket, key := "legacy-boto3-"+style, "dir/a key with spaces+plus=eq.txt"
			before := legacyE2EUpgrades(p)["s3v2"]
			out, err := legacyE2ERun(t, env, legacyE2EPython, "-c", legacyE2EBoto3Script, p.ProxyURL.String(), p.CAFile, style, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				BodyOK      bool     `json:"body_ok"`
				Owner       string   `json:"owner"`
				ContentType string   `json:"content_type"`
				Listed      []string `json:"listed"`
				AfterDelete []string `json:"after_delete"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("boto3 output %q: %v", out, err)
			}
			if !res.BodyOK || res.Owner != "legacy app" || res.ContentType != "text/plain" ||
				len(res.Listed) != 1 || res.Listed[0] != key || len(res.AfterDelete) != 0 {
				t.Errorf("boto3 life cycle: %+v\n%s", res, out)
			}
			if n := legacyE2EUpgrades(p)["s3v2"] - before; n < 7 {
				t.Errorf("%d requests upgraded from s3v2, want the 7 boto3 sent", n)
			}
		})
	}
	if up := legacyE2EUpgrades(p); len(up) != 1 {
		t.Errorf("requests by client signature version %v: want all s3v2", up)
	}
}

func legacyE2ERequireBoto3(t *testing.T) {
	t.Helper()
	if _, err := legacyE2ERun(t, legacyE2EClientEnv(t), legacyE2EPython, "-c", "import boto3, botocore.auth; botocore.auth.HmacV1Auth"); err != nil {
		t.Skipf("no boto3 with HmacV1 for %s (Debian package python3-boto3; .ci/install-deps): %v", legacyE2EPython, err)
	}
}

// legacyE2EPresignScript makes an object with boto3 (HmacV1, through the
// proxy) and prints a presigned V2 GET URL for it that lives argv[5]
// seconds.
const legacyE2EPresignScript = `
import sys
import boto3
from botocore.config import Config

proxy, ca, bucket, key, expires = sys.argv[1:6]
cfg = Config(signature_version="s3", proxies={"https": proxy}, s3={"addressing_style": "virtual"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="https://s3.us-east-1.amazonaws.com",
                  aws_access_key_id="` + legacyE2EAKID + `", aws_secret_access_key="` + legacyE2ESecret + `",
                  verify=ca, config=cfg)
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key=key, Body=b"presigned with Signature Version 2\n")
print(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires)))
`

// TestLegacyE2EPresignedV2URLCurl: a presigned V2 URL made by boto3 is
// fetched with curl through the proxy while it lives, and refused by the
// proxy itself, with S3's AccessDenied "Request has expired", once its
// Expires has passed.
func TestLegacyE2EPresignedV2URLCurl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	legacyE2ERequireBoto3(t)
	_, p := legacyE2EMinIOProxy(t)
	const lifetime = 6 // seconds: curl runs well within it on a loaded machine
	out, err := legacyE2ERun(t, legacyE2EClientEnv(t), legacyE2EPython, "-c", legacyE2EPresignScript,
		p.ProxyURL.String(), p.CAFile, "legacy-presign", "shared file.txt", strconv.Itoa(lifetime))
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.TrimSpace(out)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("presigned URL %q: %v", raw, err)
	}
	q := u.Query()
	if q.Get("AWSAccessKeyId") != legacyE2EAKID || q.Get("Signature") == "" || q.Get("Expires") == "" || q.Has("X-Amz-Signature") {
		t.Fatalf("boto3 did not make a V2 presigned URL: %s", raw)
	}
	exp, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	curl := func() (int, string) {
		return presignE2ECurl(t, "--proxy", p.ProxyURL.String(), "--cacert", p.CAFile, raw)
	}
	code, body := curl()
	if time.Now().Unix() > exp {
		t.Skip("the machine was too slow to fetch the URL within its lifetime")
	}
	if code != http.StatusOK || body != "presigned with Signature Version 2\n" {
		t.Fatalf("live presigned V2 URL through the proxy: %d %q", code, body)
	}
	if n := legacyE2EUpgrades(p)["s3v2-query"]; n != 1 {
		t.Errorf("%d requests upgraded from s3v2-query, want 1", n)
	}

	// Two seconds past Expires by the host clock: the proxy's corrected
	// clock, learned here from MinIO's one-second Date headers, may differ
	// from it by up to about a second.
	time.Sleep(time.Until(time.Unix(exp+2, 0)))
	code, body = curl()
	if code != http.StatusForbidden || !strings.Contains(body, "<Code>AccessDenied</Code>") || !strings.Contains(body, "<Message>Request has expired</Message>") {
		t.Errorf("expired presigned V2 URL: %d %s; want 403 AccessDenied Request has expired", code, body)
	}
	if n := legacyE2EUpgrades(p)["s3v2-query"]; n != 2 {
		t.Errorf("%d requests prepared from s3v2-query, want 2", n)
	}
	if !strings.Contains(p.Logs(), `"msg":"request not sent"`) {
		t.Error("no \"request not sent\" line for the expired URL")
	}
	if strings.Contains(p.Logs(), q.Get("Signature")) {
		t.Error("the proxy logged the URL's V2 signature")
	}
}

// legacyE2EQueryV2 signs params (url.Values) for a query API with
// Signature Version 2 (HmacSHA256) as the AWS documentation describes: the
// parameters sorted and RFC 3986-escaped, signed over "METHOD\nhost\n/\n".
// It returns them in the order a client sends them, Signature last.
func legacyE2EQueryV2(method, host string, params [][2]string, secret string) string {
	esc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	v := url.Values{}
	var order []string
	for _, kv := range params {
		v.Add(kv[0], kv[1])
		order = append(order, esc(kv[0])+"="+esc(kv[1]))
	}
	canon := strings.ReplaceAll(v.Encode(), "+", "%20")
	var sig string
	switch v.Get("SignatureVersion") {
	case "2":
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(method + "\n" + host + "\n/\n" + canon))
		sig = base64.StdEncoding.EncodeToString(m.Sum(nil))
	default: // HMAC-SHA1 of Action+Timestamp (0), of the pairs sorted case-insensitively, unescaped (1)
		m := hmac.New(sha1.New, []byte(secret))
		if v.Get("SignatureVersion") == "0" {
			m.Write([]byte(v.Get("Action") + v.Get("Timestamp")))
		} else {
			sorted := slices.Clone(params)
			slices.SortFunc(sorted, func(a, b [2]string) int { return strings.Compare(strings.ToLower(a[0]), strings.ToLower(b[0])) })
			for _, kv := range sorted {
				m.Write([]byte(kv[0] + kv[1]))
			}
		}
		sig = base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	return strings.Join(append(order, "Signature="+esc(sig)), "&")
}

// TestLegacyE2EQueryAPISignatureVersion2: STS GetCallerIdentity signed by
// hand with SignatureVersion=2 (and 1 and 0), in the query and in a POST
// form, reaches the SigV4-verifying fake through the proxy; upstream gets
// the other parameters in their order and encoding, and no V2 parameter.
func TestLegacyE2EQueryAPISignatureVersion2(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{"--resolve", "sts.amazonaws.com:443=" + fake.URL(), "--upstream-ca", fake.CAFile(t), "--time-source", proxyE2ENoTimeSource},
		Env:  proxyCredsEnv(proxyKeys),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ts := time.Now().UTC().Add(-20 * time.Minute).Format("2006-01-02T15:04:05Z") // a client 20 minutes behind
	v2 := func(version string, extra ...[2]string) [][2]string {
		ps := [][2]string{{"Action", "GetCallerIdentity"}, {"Version", "2011-06-15"}, {"AWSAccessKeyId", legacyE2EAKID}}
		if version == "2" {
			ps = append(ps, [2]string{"SignatureMethod", "HmacSHA256"})
		}
		ps = append(ps, [2]string{"SignatureVersion", version}, [2]string{"Timestamp", ts})
		return append(ps, extra...)
	}
	cases := []struct {
		name    string
		method  string
		params  [][2]string
		version string
		// rest is what upstream must receive in the query (GET) or body (POST).
		rest string
	}{
		{"SignatureVersion=2 in the query", "GET", v2("2"), "2", "Action=GetCallerIdentity&Version=2011-06-15"},
		{"SignatureVersion=2 in a POST form, extra parameters kept", "POST", v2("2", [2]string{"Note", "a b/c"}), "2", "Action=GetCallerIdentity&Version=2011-06-15&Note=a%20b%2Fc"},
		{"SignatureVersion=1 in the query", "GET", v2("1"), "1", "Action=GetCallerIdentity&Version=2011-06-15"},
		{"SignatureVersion=0 in a POST form", "POST", v2("0"), "0", "Action=GetCallerIdentity&Version=2011-06-15"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake.Reset()
			before := legacyE2EUpgrades(p)[tc.version]
			signed := legacyE2EQueryV2(tc.method, "sts.amazonaws.com", tc.params, legacyE2ESecret)
			var req *http.Request
			if tc.method == "GET" {
				req, _ = http.NewRequestWithContext(ctx, "GET", "https://sts.amazonaws.com/?"+signed, nil)
			} else {
				req, _ = http.NewRequestWithContext(ctx, "POST", "https://sts.amazonaws.com/", strings.NewReader(signed))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
			}
			resp, err := p.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<Account>"+proxytest.AccountID+"</Account>") {
				t.Fatalf("GetCallerIdentity through the proxy: %s %s", resp.Status, body)
			}
			var reqs []proxytest.Request // leaving out the proxy's own time probe (HEAD /)
			for _, r := range fake.Requests() {
				if r.Host == "sts.amazonaws.com" {
					reqs = append(reqs, r)
				}
			}
			if len(reqs) != 1 || reqs[0].Verified == nil || reqs[0].Operation != "GetCallerIdentity" {
				t.Fatalf("the fake saw %d STS requests: %+v", len(reqs), reqs)
			}
			got := reqs[0].RawQuery
			if tc.method == "POST" {
				got = string(reqs[0].Body)
				if reqs[0].RawQuery != "" {
					t.Errorf("upstream query %q, want none", reqs[0].RawQuery)
				}
			}
			if got != tc.rest {
				t.Errorf("upstream got\n %q\nwant\n %q", got, tc.rest)
			}
			if auth := reqs[0].Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+proxyKeys.AccessKeyID+"/") {
				t.Errorf("upstream Authorization does not carry the proxy's SigV4 credential")
			}
			if n := legacyE2EUpgrades(p)[tc.version] - before; n != 1 {
				t.Errorf("%d requests upgraded from SignatureVersion %s, want 1", n, tc.version)
			}
		})
	}
}

// TestLegacyE2EPlainHTTPSentOverTLS: an app that only speaks plain HTTP
// (absolute-form through HTTP_PROXY) to an intercepted host has its request
// signed and sent upstream over verified TLS: the only --resolve rule is
// for port 443, to an endpoint that speaks nothing but TLS.
func TestLegacyE2EPlainHTTPSentOverTLS(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(), "--upstream-ca", fake.CAFile(t),
			"--no-time-bootstrap"}, // the endpoint must see only the app's request
		Env: proxyCredsEnv(proxyKeys),
	})
	resp, err := p.Client().Get("http://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), proxytest.AccountID) {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake.WaitIdle(ctx)
	reqs := fake.Requests()
	if len(reqs) != 1 || reqs[0].Verified == nil || reqs[0].Host != "sts.us-east-1.amazonaws.com" {
		t.Fatalf("the TLS endpoint saw %+v, want the one signed request for sts.us-east-1.amazonaws.com", reqs)
	}
}
