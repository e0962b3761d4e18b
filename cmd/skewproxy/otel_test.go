package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/proxy/telemetry"
	"github.com/skewproxy/skewproxy/signer/awserrors"
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
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(v.BoolValue)
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = strconv.FormatFloat(v.DoubleValue, 'f', -1, 64)
		default:
			m[kv.GetKey()] = fmt.Sprintf("%T", v)
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
			// The span the proxy makes for a Lambda invoke retried after skew.
			tel, err := telemetry.New(telemetry.Options{
				TracerProvider: setup.TracerProvider,
				MeterProvider:  setup.MeterProvider,
				Clock:          otelTestClock{st: timesource.Status{Synced: true, Source: "ntp://127.0.0.1:1123", Offset: -20 * time.Minute}},
			})
			if err != nil {
				t.Fatalf("telemetry.New: %v", err)
			}
			defer tel.Close()
			req := httptest.NewRequest(http.MethodPost, "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", nil)
			req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			spanCtx, o := tel.Start(ctx, req)
			// Without an exporter the span is not recorded (the request
			// path then skips its attributes) but still continues the
			// client's trace.
			span := trace.SpanFromContext(spanCtx)
			if span.IsRecording() != tc.wantSpans {
				t.Errorf("span recording = %v, want %v", span.IsRecording(), tc.wantSpans)
			}
			if got := span.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("span trace id = %s, want the client's", got)
			}
			o.Classified(proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke"})
			o.Signed(time.Now())
			o.Retried(awserrors.FailureSignatureExpired)
			o.Signed(time.Now())
			o.End(200, http.Header{"X-Amzn-Requestid": {"req-1"}}, awserrors.Classification{}, nil)
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
							for k, want := range map[string]string{
								"rpc.system":                "aws-api",
								"rpc.service":               "Lambda",
								"rpc.method":                "Invoke",
								"cloud.region":              "us-east-1",
								"aws.request_id":            "req-1",
								"skewproxy.failure":         "signature_expired",
								"skewproxy.retried":         "true",
								"skewproxy.clock.offset_ms": "-1200000",
								"http.response.status_code": "200",
							} {
								if attrs[k] != want {
									t.Errorf("%s = %q, want %q", k, attrs[k], want)
								}
							}
							if got := hex.EncodeToString(s.GetTraceId()); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
								t.Errorf("trace id = %s, want the client's", got)
							}
							if s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
								t.Errorf("span kind = %v", s.GetKind())
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
	o.End(429, nil, awserrors.Classification{Failure: awserrors.FailureThrottled}, nil)
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

// TestSetupOTelExporterChoice: OTLP over http/protobuf is the default
// protocol; gRPC is there only in a build with -tags otlpgrpc, and asking a
// build without it says how to get it; unknown exporter names are refused.
func TestSetupOTelExporterChoice(t *testing.T) {
	recv := newOTLPReceiver(t)
	grpcBuilt := otlpGRPC.spans != nil
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"otlp default protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp"}, ""},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}, ""},
		{"prometheus metrics are the admin port's", map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, ""},
		{"grpc", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, map[bool]string{false: "-tags otlpgrpc", true: ""}[grpcBuilt]},
		{"grpc metrics", map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, map[bool]string{false: "-tags otlpgrpc", true: ""}[grpcBuilt]},
		{"unknown protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, `"http/json"`},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "want otlp, console or none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
				t.Setenv(k, "")
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.srv.URL)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			setup, err := setupOTel(ctx, "test")
			if err == nil {
				_ = setup.Shutdown(ctx)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("setupOTel: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("setupOTel: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
