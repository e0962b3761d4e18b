package main

// Wrong clocks for real. --clock-offset only shifts what timesource reads
// as the host clock; it cannot show a part of the process that reads the
// machine clock itself (upstream TLS, credential expiry, span timestamps).
// These tests move the world instead: true time = machine clock + shift for
// the NTP server (chrony under faketime), the SigV4-verifying endpoint (its
// window, its Date header) and that endpoint's certificate (valid only from
// 1 h before to 1 h after true now). The built binary runs on the
// unmodified machine clock with no --clock-offset, and real aws-sdk-go-v2
// clients call it over HTTPS upstream.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

const year = 365 * 24 * time.Hour

// wrongClockWorld is a world whose true time is the machine clock plus shift.
type wrongClockWorld struct {
	shift time.Duration
	fake  *proxytest.AWS
	ntp   string // "ntp://..." of the world's NTP server; a dead one without
}

// newWrongClockWorld starts the world's endpoint (accepting opts'
// credentials, or proxyKeys) and, when withNTP, its NTP server.
func newWrongClockWorld(t *testing.T, shift time.Duration, withNTP bool, opts proxytest.AWSOptions) *wrongClockWorld {
	t.Helper()
	w := &wrongClockWorld{shift: shift, ntp: "ntp://127.0.0.1:1"} // nothing answers on port 1
	if opts.Credentials.AccessKeyID == "" {
		opts.Credentials = proxyKeys
	}
	opts.Now = w.trueNow
	opts.CertValidity = time.Hour
	w.fake = proxytest.NewAWS(t, opts)
	if withNTP {
		w.ntp = "ntp://" + ntptest.StartShifted(t, shift)
	}
	return w
}

// trueNow is the world's true time.
func (w *wrongClockWorld) trueNow() time.Time { return time.Now().Add(w.shift) }

// startProxy runs the binary in the world: the world's NTP server as its
// only time source, Lambda and STS sent to the world's endpoint over TLS.
func (w *wrongClockWorld) startProxy(t *testing.T, env []string, args ...string) *runningProxy {
	t.Helper()
	if env == nil {
		env = proxyCredsEnv(proxyKeys)
	}
	return startProxy(t, proxyOptions{
		Args: append([]string{
			"--time-source", w.ntp,
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + w.fake.URL(),
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + w.fake.URL(),
			"--upstream-ca", w.fake.CAFile(t),
		}, args...),
		Env: env,
	})
}

// wrongClockCalls makes one Lambda Invoke and one STS GetCallerIdentity
// through p and returns the first error.
func wrongClockCalls(ctx context.Context, p *runningProxy) error {
	cfg := p.awsConfig()
	if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("wrong-clock"), Payload: []byte(`{"n":1}`)}); err != nil {
		return fmt.Errorf("Lambda Invoke: %w", err)
	}
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		return fmt.Errorf("STS GetCallerIdentity: %w", err)
	}
	return nil
}

// statusOffset reads /status's clock offset and source.
func statusOffset(t *testing.T, p *runningProxy) (offset time.Duration, source string, synced bool) {
	t.Helper()
	st := proxyE2EStatus(t, p)
	return time.Duration(st.Clock.OffsetSeconds * float64(time.Second)), st.Clock.Source, st.Clock.Synced
}

// TestWrongClockE2EInvokeAndSTS: with the host clock 2 h behind, 2 h
// ahead, 10 years behind (a gateway without an RTC) and 10 years ahead,
// Lambda and STS calls through the proxy succeed, every signature the
// endpoint verified is dated in true time, and /status reports the host's
// offset.
func TestWrongClockE2EInvokeAndSTS(t *testing.T) {
	cases := []struct {
		name  string
		shift time.Duration // true time minus the machine clock
	}{
		{"host 2h behind", 2 * time.Hour},
		{"host 2h ahead", -2 * time.Hour},
		{"host 10 years behind", 10 * year},
		{"host 10 years ahead", -10 * year},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWrongClockWorld(t, tc.shift, true, proxytest.AWSOptions{})
			p := w.startProxy(t, nil)
			p.waitReady(t, 15*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := wrongClockCalls(ctx, p); err != nil {
				t.Fatalf("%v\nproxy logs:\n%s", err, p.Logs())
			}
			w.fake.WaitIdle(ctx)
			for _, r := range w.fake.Requests() {
				if r.Verified == nil {
					t.Errorf("%s %s refused: %s", r.Method, r.Path, r.Failure)
					continue
				}
				if d := r.Verified.SigningTime.Sub(r.Time); d > 2*time.Second || d < -2*time.Second {
					t.Errorf("signed at %v, %v from true time", r.Verified.SigningTime, d)
				}
			}
			if got := w.fake.Stats().Operations; got["Lambda.Invoke"] != 1 || got["STS.GetCallerIdentity"] != 1 {
				t.Errorf("endpoint served %v, want one Invoke and one GetCallerIdentity", got)
			}
			off, src, synced := statusOffset(t, p)
			if !synced || !strings.HasPrefix(src, "ntp://") {
				t.Errorf("/status synced %t source %q, want synced to NTP", synced, src)
			}
			if d := off + tc.shift; d > time.Second || d < -time.Second {
				t.Errorf("/status offset %v, want %v", off, -tc.shift)
			}
		})
	}
}

// TestWrongClockE2EBootstrapWithoutNTP: a host 10 years behind with no NTP
// answering learns the time from the first intercepted host's HTTPS Date
// (certificate judged at the learned time), so the first or second attempt
// succeeds; the probe itself carries no credentials.
func TestWrongClockE2EBootstrapWithoutNTP(t *testing.T) {
	w := newWrongClockWorld(t, 10*year, false, proxytest.AWSOptions{})
	p := w.startProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for attempt := 1; attempt <= 2; attempt++ {
		if err = wrongClockCalls(ctx, p); err == nil {
			break
		}
		t.Logf("attempt %d: %v", attempt, err)
	}
	if err != nil {
		t.Fatalf("no success in two attempts: %v\nproxy logs:\n%s", err, p.Logs())
	}
	off, src, synced := statusOffset(t, p)
	if !synced {
		t.Errorf("/status not synced after the bootstrap (source %q)", src)
	}
	if d := off + w.shift; d > 3*time.Second || d < -3*time.Second {
		t.Errorf("/status offset %v, want %v within the bootstrap's few seconds", off, -w.shift)
	}
	if !strings.Contains(p.Logs(), "time learned from an HTTPS Date header") {
		t.Errorf("no bootstrap log line; logs:\n%s", p.Logs())
	}
	w.fake.WaitIdle(ctx)
	probes := 0
	for _, r := range w.fake.Requests() {
		if r.Method == http.MethodHead {
			probes++
			for _, h := range []string{"Authorization", "X-Amz-Security-Token", "X-Amz-Date"} {
				if r.Header.Get(h) != "" {
					t.Errorf("the time probe carried %s", h)
				}
			}
		}
	}
	if probes != 1 {
		t.Errorf("endpoint saw %d HEAD probes, want 1", probes)
	}
}

// TestWrongClockE2EBuildTimeFloor: an NTP server claiming a time before the
// binary's build (the test binary is stamped 2016-01-01) is refused: the
// proxy stays unsynced and says why.
func TestWrongClockE2EBuildTimeFloor(t *testing.T) {
	shift := time.Until(time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC))
	w := newWrongClockWorld(t, shift, true, proxytest.AWSOptions{})
	p := w.startProxy(t, nil)
	deadline := time.Now().Add(10 * time.Second)
	var reason string
	for time.Now().Before(deadline) {
		var body struct {
			Reason string `json:"reason"`
		}
		if code := p.getJSON(t, "/readyz", &body); code == http.StatusOK {
			t.Fatalf("/readyz 200 with an NTP server in 2015: the floor was not applied")
		}
		if reason = body.Reason; strings.Contains(reason, "build-time floor") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(reason, "build-time floor") {
		t.Errorf("/readyz reason %q does not name the build-time floor", reason)
	}
	if _, _, synced := statusOffset(t, p); synced {
		t.Error("synced to a time before the build")
	}
}

// credentialProcessScript writes a credential_process that prints
// credentials dated in the world's true time (machine clock + shift) and
// counts its runs in a file. The first run's credentials expire at
// firstExpiry (seconds from true now; may be negative), later runs' at
// laterExpiry. Each run's access key is AKIDRUN<n>.
func credentialProcessScript(t *testing.T, shift time.Duration, firstExpiry, laterExpiry time.Duration) (script, counter string) {
	t.Helper()
	dir := t.TempDir()
	counter = filepath.Join(dir, "runs")
	script = filepath.Join(dir, "creds.sh")
	body := fmt.Sprintf(`#!/bin/sh
set -e
echo run >> %[1]s
n=$(wc -l < %[1]s | tr -d ' ')
now=$(( $(date +%%s) + %[2]d ))
if [ "$n" = 1 ]; then exp=$(( now + %[3]d )); else exp=$(( now + %[4]d )); fi
printf '{"Version":1,"AccessKeyId":"AKIDRUN%%s","SecretAccessKey":"process-secret","SessionToken":"token-%%s","Expiration":"%%s"}\n' \
  "$n" "$n" "$(date -u -d "@$exp" +%%Y-%%m-%%dT%%H:%%M:%%SZ)"
`, counter, int64(shift/time.Second), int64(firstExpiry/time.Second), int64(laterExpiry/time.Second))
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script, counter
}

// runs counts the credential_process runs so far.
func runs(t *testing.T, counter string) int {
	t.Helper()
	data, err := os.ReadFile(counter)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// TestWrongClockE2ECredentialProcess: credentials from credential_process
// are judged by true time. Host 2 h behind: credentials that expire an
// hour after host now are already dead in true time; they are refreshed and
// never used. Host 2 h ahead: credentials valid for an hour in true time
// look expired to the host clock; they are fetched once, not per request.
func TestWrongClockE2ECredentialProcess(t *testing.T) {
	cases := []struct {
		name        string
		shift       time.Duration
		firstExpiry time.Duration // from true now
		laterExpiry time.Duration
		requests    int
		wantRuns    int
		neverUsed   string // an access key the endpoint must never see
	}{
		{"host 2h behind, first credentials dead in true time", 2 * time.Hour, -time.Hour, time.Hour, 10, 2, "AKIDRUN1"},
		{"host 2h ahead, credentials valid 1h", -2 * time.Hour, time.Hour, time.Hour, 40, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script, counter := credentialProcessScript(t, tc.shift, tc.firstExpiry, tc.laterExpiry)
			trueNow := time.Now().Add(tc.shift)
			var accepted []proxytest.Credentials
			for n := 1; n <= 60; n++ {
				exp := trueNow.Add(tc.laterExpiry)
				if n == 1 {
					exp = trueNow.Add(tc.firstExpiry)
				}
				accepted = append(accepted, proxytest.Credentials{AccessKeyID: "AKIDRUN" + strconv.Itoa(n),
					SecretAccessKey: "process-secret", SessionToken: "token-" + strconv.Itoa(n), Expires: exp})
			}
			w := newWrongClockWorld(t, tc.shift, true, proxytest.AWSOptions{Credentials: accepted[0], MoreCredentials: accepted})
			home := t.TempDir()
			cfgFile := filepath.Join(home, "aws-config")
			if err := os.WriteFile(cfgFile, []byte("[default]\ncredential_process = "+script+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p := w.startProxy(t, []string{"AWS_CONFIG_FILE=" + cfgFile, "AWS_REGION=us-east-1"})
			p.waitReady(t, 15*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			client := lambda.NewFromConfig(p.awsConfig())
			for i := 0; i < tc.requests; i++ {
				if _, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("creds"), Payload: []byte(`{}`)}); err != nil {
					t.Fatalf("Invoke %d: %v\nproxy logs:\n%s", i, err, p.Logs())
				}
			}
			if got := runs(t, counter); got != tc.wantRuns {
				t.Errorf("credential_process ran %d times for %d requests, want %d", got, tc.requests, tc.wantRuns)
			}
			w.fake.WaitIdle(ctx)
			for _, r := range w.fake.Requests() {
				if r.Failure != "" {
					t.Errorf("endpoint refused a request: %s", r.Failure)
				}
				if tc.neverUsed != "" && r.Verified != nil && r.Verified.AccessKeyID == tc.neverUsed {
					t.Errorf("signed with %s, which had expired in true time", tc.neverUsed)
				}
			}
		})
	}
}

// TestWrongClockE2ESpanTimestamps: with the host clock 2 h behind, the span
// exported over OTLP is dated in true time, so it lines up with AWS's own
// logs.
func TestWrongClockE2ESpanTimestamps(t *testing.T) {
	recv := newOTLPReceiver(t)
	w := newWrongClockWorld(t, 2*time.Hour, true, proxytest.AWSOptions{})
	p := w.startProxy(t, append(proxyCredsEnv(proxyKeys),
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.srv.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_SERVICE_NAME=skewproxy-wrong-clock"))
	p.waitReady(t, 15*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := w.trueNow()
	if _, err := lambda.NewFromConfig(p.awsConfig()).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("span-time"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	after := w.trueNow()
	if err := p.Stop(t); err != nil { // shutdown flushes the exporter
		t.Fatalf("skewproxy exit: %v", err)
	}
	found := false
	for _, req := range recv.traceRequests() {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					if sp.GetName() != "Lambda.Invoke" {
						continue
					}
					found = true
					start := time.Unix(0, int64(sp.GetStartTimeUnixNano()))
					end := time.Unix(0, int64(sp.GetEndTimeUnixNano()))
					slack := time.Second
					if start.Before(before.Add(-slack)) || end.After(after.Add(slack)) || end.Before(start) {
						t.Errorf("span %v..%v, want inside true time %v..%v (the host clock reads %v)",
							start.UTC(), end.UTC(), before.UTC(), after.UTC(), time.Now().UTC())
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("no Lambda.Invoke span reached the OTLP receiver")
	}
}

// TestWrongClockE2EWebIdentityOverTLS: the credential chain's own HTTPS
// verifies certificates by corrected time. With the host 10 years behind,
// the web identity provider's call to STS (AssumeRoleWithWebIdentity, over
// TLS to an endpoint whose certificate is valid only around true time)
// succeeds, and the credentials it returns sign the invoke.
func TestWrongClockE2EWebIdentityOverTLS(t *testing.T) {
	shift := 10 * year
	trueNow := time.Now().Add(shift)
	session := proxytest.Credentials{AccessKeyID: "ASIAWEBIDENTITY", SecretAccessKey: "web-identity-secret",
		SessionToken: "web-identity-session", Expires: trueNow.Add(time.Hour)}
	w := newWrongClockWorld(t, shift, true, proxytest.AWSOptions{Credentials: session,
		WebIdentity: &proxytest.WebIdentity{Token: "oidc-token", Credentials: session}})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("oidc-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := w.startProxy(t, []string{
		"AWS_REGION=us-east-1",
		"AWS_ROLE_ARN=arn:aws:iam::" + proxytest.AccountID + ":role/proxytest",
		"AWS_ROLE_SESSION_NAME=wrong-clock",
		"AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile,
		"AWS_ENDPOINT_URL_STS=" + w.fake.URL(),
		"AWS_CA_BUNDLE=" + w.fake.CAFile(t),
	})
	p.waitReady(t, 15*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := lambda.NewFromConfig(p.awsConfig()).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("web-identity"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke: %v\nproxy logs:\n%s", err, p.Logs())
	}
	w.fake.WaitIdle(ctx)
	var assumed, signed int
	for _, r := range w.fake.Requests() {
		switch {
		case r.Operation == "AssumeRoleWithWebIdentity":
			assumed++
		case r.Verified != nil && r.Verified.AccessKeyID == session.AccessKeyID && r.Verified.SessionToken:
			signed++
		}
	}
	if assumed != 1 || signed != 1 {
		t.Errorf("endpoint saw %d AssumeRoleWithWebIdentity and %d requests signed with the session, want 1 and 1", assumed, signed)
	}
}

// TestWrongClockE2EPresign: `skewproxy presign` on a host 2 hours ahead, with
// credentials from credential_process that live 30 minutes in true time
// (already expired by the host clock): the URL is signed at true time and
// its credential-life check is judged in true time. A 10-minute URL works
// at the endpoint (which judges its window in true time); a 1-hour URL is
// refused because it would outlive the credentials.
func TestWrongClockE2EPresign(t *testing.T) {
	shift := -2 * time.Hour
	script, _ := credentialProcessScript(t, shift, 30*time.Minute, 30*time.Minute)
	trueNow := time.Now().Add(shift)
	var accepted []proxytest.Credentials
	for n := 1; n <= 5; n++ {
		accepted = append(accepted, proxytest.Credentials{AccessKeyID: "AKIDRUN" + strconv.Itoa(n),
			SecretAccessKey: "process-secret", SessionToken: "token-" + strconv.Itoa(n), Expires: trueNow.Add(30 * time.Minute)})
	}
	w := newWrongClockWorld(t, shift, true, proxytest.AWSOptions{Credentials: accepted[0], MoreCredentials: accepted})
	cfgFile := filepath.Join(t.TempDir(), "aws-config")
	if err := os.WriteFile(cfgFile, []byte("[default]\ncredential_process = "+script+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_CONFIG_FILE=" + cfgFile, "AWS_REGION=us-east-1"}
	args := func(expires string) []string {
		return []string{"presign", "--json", "--time-source", w.ntp, "--time-timeout", "10s",
			"--endpoint-url", w.fake.URL(), "--expires", expires, "s3://bucket/key"}
	}

	out, stderr, code := runBinary(t, "", env, args("10m")...)
	if code != 0 {
		t.Fatalf("presign --expires 10m: exit %d\n%s", code, stderr)
	}
	var res presignResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("presign output %q: %v", out, err)
	}
	if d := res.SignedAt.Sub(w.trueNow()); d > 5*time.Second || d < -5*time.Second {
		t.Errorf("signed at %v, %v off true time", res.SignedAt, d)
	}
	// A client whose TLS judges the certificate in true time, as the
	// world's own clients do.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.fake.CertPool(), Time: w.trueNow}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(res.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the presigned URL: %d", resp.StatusCode)
	}

	_, stderr, code = runBinary(t, "", env, args("1h")...)
	if code == 0 || !strings.Contains(stderr, "expire") {
		t.Errorf("presign --expires 1h with credentials that die in 30 minutes: exit %d, stderr %q; want a refusal naming the expiry", code, stderr)
	}
}
