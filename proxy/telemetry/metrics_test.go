package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// driveTraffic feeds the observer a small mixed workload.
func driveTraffic(t *testing.T, tel *Telemetry) {
	t.Helper()
	run := func(info proxy.RequestInfo, waited time.Duration, retried awserrors.Failure, status int, f awserrors.Failure) {
		_, o := tel.Start(context.Background(), lambdaInvoke(t))
		o.Classified(info)
		if waited > 0 {
			o.Queued()
			o.Dequeued(waited)
		}
		o.Signed(trueNow)
		if retried != "" {
			o.Retried(retried)
			o.Signed(trueNow)
		}
		o.End(status, nil, awserrors.Classification{Failure: f}, nil)
	}
	lambda := proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke"}
	s3 := proxy.RequestInfo{Service: "s3", Region: "us-east-1", Operation: "PutObject"}
	run(lambda, 2*time.Second, "", 200, "")
	run(lambda, 30*time.Millisecond, awserrors.FailureSignatureExpired, 200, "")
	run(lambda, 0, "", 429, awserrors.FailureThrottled)
	run(s3, 0, "", 404, "")
	run(s3, 0, "", 503, "")
	run(s3, 0, "", 403, awserrors.FailureExpiredToken)
	tel.LeafCache(true)
	tel.LeafCache(true)
	tel.LeafCache(false)
	tel.NTPSample("ntp://169.254.169.123", 400*time.Microsecond)
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	driveTraffic(t, h.tel)
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	byName := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			byName[m.Name] = m.Data
		}
	}
	sums := func(name string, keys ...string) map[string]int64 {
		t.Helper()
		s, ok := byName[name].(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("%s: data %T, want Sum[int64]", name, byName[name])
		}
		out := map[string]int64{}
		for _, dp := range s.DataPoints {
			var parts []string
			for _, k := range keys {
				v, _ := dp.Attributes.Value(attributeKey(k))
				parts = append(parts, v.AsString())
			}
			out[strings.Join(parts, "/")] += dp.Value
		}
		return out
	}

	t.Run("requests by service and outcome", func(t *testing.T) {
		got := sums(MetricRequests, "service", "outcome")
		want := map[string]int64{"Lambda/ok": 2, "Lambda/throttled": 1, "S3/client_error": 1, "S3/server_error": 1, "S3/expired_token": 1}
		assertCounts(t, got, want)
	})
	t.Run("failures by class", func(t *testing.T) {
		got := sums(MetricFailures, "failure")
		want := map[string]int64{"signature_expired": 1, "throttled": 1, "expired_token": 1}
		assertCounts(t, got, want)
	})
	t.Run("leaf cache", func(t *testing.T) {
		assertCounts(t, sums(MetricLeafCacheHits), map[string]int64{"": 2})
		assertCounts(t, sums(MetricLeafCacheMisses), map[string]int64{"": 1})
	})
	t.Run("queue wait histogram", func(t *testing.T) {
		hist, ok := byName[MetricQueueWait].(metricdata.Histogram[float64])
		if !ok || len(hist.DataPoints) != 1 {
			t.Fatalf("queue wait: %#v", byName[MetricQueueWait])
		}
		dp := hist.DataPoints[0]
		if dp.Count != 2 || dp.Sum != 2.03 {
			t.Errorf("count=%d sum=%v, want 2 and 2.03", dp.Count, dp.Sum)
		}
	})
	t.Run("gauges", func(t *testing.T) {
		offset, ok := byName[MetricClockOffset].(metricdata.Gauge[float64])
		if !ok || len(offset.DataPoints) != 1 || offset.DataPoints[0].Value != -1200 {
			t.Errorf("clock offset = %#v, want -1200 s", byName[MetricClockOffset])
		}
		unc, ok := byName[MetricClockUncertainty].(metricdata.Gauge[float64])
		if !ok || len(unc.DataPoints) != 1 || unc.DataPoints[0].Value != 0.0015 {
			t.Errorf("clock uncertainty = %#v, want 0.0015 s", byName[MetricClockUncertainty])
		}
		inflight, ok := byName[MetricLambdaInflight].(metricdata.Gauge[int64])
		if !ok || len(inflight.DataPoints) != 1 || inflight.DataPoints[0].Value != 3 {
			t.Errorf("lambda inflight = %#v, want 3", byName[MetricLambdaInflight])
		}
	})
}

func assertCounts(t *testing.T, got, want map[string]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("series = %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], w, got)
		}
	}
}

// TestPrometheusNames renders the metrics with the OTel Prometheus exporter,
// as the admin /metrics does, and checks the names design.md promises.
func TestPrometheusNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("prometheus exporter: %v", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel, err := New(Options{MeterProvider: mp, Clock: &fakeClock{st: skewedHost}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tel.Close() })
	driveTraffic(t, tel)

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics text does not parse: %v", err)
	}
	var names []string
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)

	tests := []struct {
		name  string
		typ   dto.MetricType
		label string // a label every series must carry; "" for none
	}{
		{"skewproxy_clock_offset_seconds", dto.MetricType_GAUGE, "source"},
		{"skewproxy_clock_uncertainty_seconds", dto.MetricType_GAUGE, "source"},
		{"skewproxy_requests_total", dto.MetricType_COUNTER, "outcome"},
		{"skewproxy_failures_total", dto.MetricType_COUNTER, "failure"},
		{"skewproxy_queue_wait_seconds", dto.MetricType_HISTOGRAM, ""},
		{"skewproxy_lambda_inflight", dto.MetricType_GAUGE, ""},
		{"skewproxy_leaf_cache_hits_total", dto.MetricType_COUNTER, ""},
		{"skewproxy_leaf_cache_misses_total", dto.MetricType_COUNTER, ""},
		{"skewproxy_ntp_rtt_seconds", dto.MetricType_HISTOGRAM, "source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mf, ok := families[tc.name]
			if !ok {
				t.Fatalf("series %s missing; have %v", tc.name, names)
			}
			if mf.GetType() != tc.typ {
				t.Errorf("type = %v, want %v", mf.GetType(), tc.typ)
			}
			if len(mf.GetMetric()) == 0 {
				t.Fatal("no samples")
			}
			if tc.label == "" {
				return
			}
			for _, m := range mf.GetMetric() {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == tc.label
				}
				if !found {
					t.Errorf("sample %v lacks label %s", m.GetLabel(), tc.label)
				}
			}
		})
	}
	if mf := families["skewproxy_requests_total"]; mf != nil {
		var total float64
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
		if total != 6 {
			t.Errorf("skewproxy_requests_total sums to %v, want 6", total)
		}
	}
}

func attributeKey(k string) attribute.Key { return attribute.Key(k) }
