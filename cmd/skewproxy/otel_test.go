package main

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/skewproxy/skewproxy/proxy/telemetry"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// otlpReceiver is a minimal OTLP/HTTP trace receiver on loopback.
type otlpReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	other    []string // paths of non-trace posts (metrics, logs)
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(io.LimitReader(body, 8<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.URL.Path != "/v1/traces" {
			r.mu.Lock()
			r.other = append(r.other, req.URL.Path)
			r.mu.Unlock()
			w.WriteHeader(http.StatusOK)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests = append(r.requests, &msg)
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) traceRequests() []*collectortrace.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*collectortrace.ExportTraceServiceRequest(nil), r.requests...)
}

func otlpAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strings.TrimSpace(v.String())
		}
	}
	return m
}

func TestSetupOTelTraceExport(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantSpans   bool
		wantService string
	}{
		{
			name:        "otlp http/protobuf with service name and resource attributes",
			env:         map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "edge-gw", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test"},
			wantSpans:   true,
			wantService: "edge-gw",
		},
		{
			name:        "otlp with default service name",
			env:         map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			wantSpans:   true,
			wantService: "skewproxy",
		},
		{
			name:      "traces exporter unset exports nothing",
			env:       map[string]string{},
			wantSpans: false,
		},
		{
			name:      "traces exporter none exports nothing",
			env:       map[string]string{"OTEL_TRACES_EXPORTER": "none"},
			wantSpans: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recv := newOTLPReceiver(t)
			for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
				t.Setenv(k, "")
			}
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.srv.URL)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			setup, err := setupOTel(ctx, "1.2.3")
			if err != nil {
				t.Fatalf("setupOTel: %v", err)
			}
			_, span := setup.TracerProvider.Tracer("otel_test").Start(ctx, "Lambda.Invoke")
			span.SetAttributes(attribute.String("rpc.system", "aws-api"), attribute.Float64("skewproxy.clock.offset_ms", -1200000))
			span.End()
			if err := setup.TracerProvider.ForceFlush(ctx); err != nil {
				t.Fatalf("ForceFlush: %v", err)
			}
			if err := setup.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}

			reqs := recv.traceRequests()
			if !tc.wantSpans {
				if len(reqs) != 0 {
					t.Fatalf("receiver got %d trace exports, want none", len(reqs))
				}
				return
			}
			var found bool
			for _, req := range reqs {
				for _, rs := range req.GetResourceSpans() {
					res := otlpAttrs(rs.GetResource().GetAttributes())
					for _, ss := range rs.GetScopeSpans() {
						for _, s := range ss.GetSpans() {
							if s.GetName() != "Lambda.Invoke" {
								continue
							}
							found = true
							attrs := otlpAttrs(s.GetAttributes())
							if attrs["rpc.system"] != "aws-api" {
								t.Errorf("rpc.system = %q", attrs["rpc.system"])
							}
							if !strings.Contains(attrs["skewproxy.clock.offset_ms"], "-1.2e+06") {
								t.Errorf("skewproxy.clock.offset_ms = %q", attrs["skewproxy.clock.offset_ms"])
							}
							if res["service.name"] != tc.wantService || res["service.version"] != "1.2.3" {
								t.Errorf("resource = %v, want service %q version 1.2.3", res, tc.wantService)
							}
							if want := tc.env["OTEL_RESOURCE_ATTRIBUTES"]; want != "" && res["deployment.environment.name"] != "test" {
								t.Errorf("resource lacks OTEL_RESOURCE_ATTRIBUTES: %v", res)
							}
						}
					}
				}
			}
			if !found {
				t.Fatalf("span Lambda.Invoke not received (%d exports)", len(reqs))
			}
		})
	}
}

// otelTestClock is a corrected clock with a fixed status.
type otelTestClock struct{ st timesource.Status }

func (c otelTestClock) Now() time.Time                 { return c.st.CorrectedTime }
func (c otelTestClock) Status() timesource.Status      { return c.st }
func (c otelTestClock) Observe(timesource.Observation) {}

func TestSetupOTelPrometheus(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	setup, err := setupOTel(ctx, "1.2.3")
	if err != nil {
		t.Fatalf("setupOTel: %v", err)
	}
	defer func() { _ = setup.Shutdown(context.Background()) }()

	tel, err := telemetry.New(telemetry.Options{
		TracerProvider: setup.TracerProvider,
		MeterProvider:  setup.MeterProvider,
		Clock:          otelTestClock{st: timesource.Status{Synced: true, Source: "ntp://127.0.0.1:1123", Offset: -20 * time.Minute, Uncertainty: 2 * time.Millisecond}},
		LambdaInflight: func() int64 { return 2 },
	})
	if err != nil {
		t.Fatalf("telemetry.New: %v", err)
	}
	defer tel.Close()
	req := httptest.NewRequest(http.MethodPost, "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", nil)
	_, o := tel.Start(ctx, req)
	o.Queued()
	o.Dequeued(3 * time.Second)
	o.End(429, nil, signer.Classification{Failure: signer.FailureThrottled}, nil)
	tel.LeafCache(false)
	tel.NTPSample("ntp://127.0.0.1:1123", time.Millisecond)

	srv := httptest.NewServer(setup.Metrics)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	for _, name := range []string{
		"skewproxy_clock_offset_seconds", "skewproxy_clock_uncertainty_seconds",
		"skewproxy_requests_total", "skewproxy_failures_total", "skewproxy_queue_wait_seconds",
		"skewproxy_lambda_inflight", "skewproxy_leaf_cache_misses_total", "skewproxy_ntp_rtt_seconds",
		"target_info",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("series %s missing", name)
		}
	}
	if mf := families["skewproxy_clock_offset_seconds"]; mf != nil {
		if got := mf.GetMetric()[0].GetGauge().GetValue(); got != -1200 {
			t.Errorf("skewproxy_clock_offset_seconds = %v, want -1200", got)
		}
	}
	if mf := families["target_info"]; mf != nil {
		var service string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			if lp.GetName() == "service_name" {
				service = lp.GetValue()
			}
		}
		if service != "skewproxy" {
			t.Errorf("target_info service_name = %q, want skewproxy", service)
		}
	}
}
