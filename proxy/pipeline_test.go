package proxy

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource"
)

func sdkConfig(hc aws.HTTPClient) aws.Config {
	return aws.Config{
		Region:           "us-east-1",
		Credentials:      clientKeys,
		HTTPClient:       hc,
		RetryMaxAttempts: 1,
	}
}

func TestSDKThroughProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := sdkConfig(h.client())

	t.Run("sts GetCallerIdentity", func(t *testing.T) {
		out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		if aws.ToString(out.Account) != proxytest.AccountID {
			t.Fatalf("account = %q", aws.ToString(out.Account))
		}
	})
	t.Run("lambda Invoke", func(t *testing.T) {
		out, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{
			FunctionName: aws.String("echo"),
			Payload:      []byte(`{"hello":"world"}`),
		})
		if err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		if string(out.Payload) != `{"hello":"world"}` {
			t.Fatalf("payload = %q", out.Payload)
		}
	})

	// Every request the fake saw was signed with the proxy's keys. (The
	// fake records a request after its handler returns, which may be just
	// after the client has the whole answer.)
	eventually(t, "the fake to record both requests", func() bool { return len(h.fake.Requests()) == 2 })
	reqs := h.fake.Requests()
	for _, r := range reqs {
		if r.Verified == nil || r.Failure != "" {
			t.Errorf("%s %s: not verified (failure %q)", r.Service, r.Operation, r.Failure)
		}
		if strings.Contains(r.Header.Get("Authorization"), "AKIDPLACEHOLDER") {
			t.Errorf("%s: the client's placeholder key reached AWS", r.Operation)
		}
	}
	for _, want := range []string{"service=sts operation=GetCallerIdentity", "service=lambda operation=Invoke"} {
		eventually(t, "log line "+want, func() bool { return strings.Contains(h.logs.String(), want) })
	}
	logs := h.logs.String()
	for _, secret := range []string{proxyKeys.SecretAccessKey, "Signature=", "AKIDPLACEHOLDER", "placeholder-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}

	t.Run("direct without proxy fails", func(t *testing.T) {
		direct := sdkConfig(h.fake.Client())
		if _, err := sts.NewFromConfig(direct).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err == nil {
			t.Fatal("placeholder keys were accepted without the proxy")
		}
		if _, err := lambda.NewFromConfig(direct).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo")}); err == nil {
			t.Fatal("placeholder keys were accepted without the proxy")
		}
	})
}

func TestSkewFailureRetriedOnceAndObserved(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	cfg := sdkConfig(h.client())

	h.fake.FailNext(1, proxytest.FailModeSignatureExpired)
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("a single skew failure was not retried away: %v", err)
	}
	if n := h.fake.Stats().Requests; n != 2 {
		t.Fatalf("fake saw %d requests, want 2 (one retry)", n)
	}
	eventually(t, "log line with retried=true", func() bool { return strings.Contains(h.logs.String(), "retried=true") })
	var sawDate, sawError bool
	for _, o := range h.clock.observations() {
		if o.Sent.After(o.Received) || o.Precision != time.Second || o.ServerTime.IsZero() {
			t.Errorf("bad observation %+v", o)
		}
		sawDate = sawDate || strings.HasPrefix(o.Source, "http-date:sts.")
		sawError = sawError || strings.HasPrefix(o.Source, "aws-error:")
	}
	if !sawDate {
		t.Error("no Date header observation reached the clock")
	}
	if !sawError {
		t.Error("the skew error's server time did not reach the clock")
	}

	t.Run("never more than one retry", func(t *testing.T) {
		h.fake.Reset()
		h.fake.FailNext(3, proxytest.FailModeSignatureExpired)
		_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err == nil || !strings.Contains(err.Error(), "Signature expired") {
			t.Fatalf("err = %v, want the AWS skew error passed through", err)
		}
		if n := h.fake.Stats().Requests; n != 2 {
			t.Fatalf("fake saw %d requests, want 2", n)
		}
	})
	t.Run("other failures are not retried", func(t *testing.T) {
		h.fake.Reset()
		h.fake.FailNext(1, proxytest.FailModeSignatureMismatch)
		_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
			t.Fatalf("err = %v, want SignatureDoesNotMatch passed through in full", err)
		}
		if n := h.fake.Stats().Requests; n != 1 {
			t.Fatalf("fake saw %d requests, want 1", n)
		}
	})
}

func TestSkewedClockWithoutCorrectionFails(t *testing.T) {
	// Expected-failure evidence: a proxy whose clock is 20 minutes behind
	// signs requests AWS refuses (the corrected clock fixes this).
	h := newHarness(t, harnessOptions{})
	h.clock.offset.Store(int64(-20 * time.Minute))
	_, err := sts.NewFromConfig(sdkConfig(h.client())).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err == nil || !strings.Contains(err.Error(), "Signature expired") {
		t.Fatalf("err = %v, want Signature expired", err)
	}
}

func TestRequireSync(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.RequireSync = true }})
	c := h.client()
	resp, err := c.Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "unsynchronised") {
		t.Fatalf("unsynced: %d %s", resp.StatusCode, body)
	}
	if h.fake.Stats().Requests != 0 {
		t.Fatal("a request went upstream with an unsynced clock")
	}
	h.clock.synced.Store(true)
	resp, err = c.Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("synced: %d %s", resp.StatusCode, body)
	}
}

// TestCachedDateLeavesClockAlone: the Date of an answer that says it came
// from a cache (Age) is old and must not move the clock; the same Date
// without Age is learned (the control).
func TestCachedDateLeavesClockAlone(t *testing.T) {
	cases := []struct {
		name      string
		age       string
		wantMoved bool
	}{
		{"cached answer (Age: 3600): ignored", "3600", false},
		{"fresh answer with the same Date: learned", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := time.Now().Add(-time.Hour).UTC()
			up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Date", old.Format(http.TimeFormat))
				if tc.age != "" {
					w.Header().Set("Age", tc.age)
				}
				w.Write([]byte("cached"))
			}))
			defer up.Close()
			pool := x509.NewCertPool()
			pool.AddCert(up.Certificate())
			clock := timesource.New(timesource.Config{})
			h := newHarness(t, harnessOptions{
				resolve:   []string{"*.amazonaws.com:443=" + up.URL},
				transport: &TransportOptions{RootCAs: pool},
				tweak:     func(p *Proxy) { p.Clock = clock },
			})
			resp, err := h.client().Get("https://s3.amazonaws.com/bucket/key")
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			moved := time.Until(clock.Now()) < -30*time.Minute
			if moved != tc.wantMoved {
				t.Errorf("clock moved to the answer's Date: %t, want %t (status %+v)", moved, tc.wantMoved, clock.Status())
			}
		})
	}
}
