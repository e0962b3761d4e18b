package main

// The admin endpoints of the running binary keep the contract of design.md:
// /healthz, /readyz, /status (its fields and types), /metrics.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

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
