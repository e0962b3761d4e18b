package main

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// TestOTelE2ESpansFromTheBinary runs the real binary with OTLP/HTTP export
// to a receiver in the test: a host 20 minutes behind, no NTP, an upstream
// "Signature expired" that the proxy retries. The span the receiver decodes
// carries the contract's attribute names and values.
func TestOTelE2ESpansFromTheBinary(t *testing.T) {
	recv := newOTLPReceiver(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
			"--clock-offset", "-20m",
			"--no-time-bootstrap", // the skew failure is the point
		},
		Env: append(proxyCredsEnv(proxyKeys),
			"OTEL_TRACES_EXPORTER=otlp",
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.srv.URL,
			"OTEL_BSP_SCHEDULE_DELAY=100",
			"OTEL_SERVICE_NAME=skewproxy-e2e"),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := lambda.NewFromConfig(p.awsConfig()).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("otel-fn"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("Invoke through the proxy: %v", err)
	}
	if err := p.Stop(t); err != nil { // shutdown flushes the exporter
		t.Fatalf("skewproxy exit: %v", err)
	}

	var found map[string]string
	var kind string
	for _, req := range recv.traceRequests() {
		for _, rs := range req.GetResourceSpans() {
			if otlpAttrs(rs.GetResource().GetAttributes())["service.name"] != "skewproxy-e2e" {
				continue
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					if sp.GetName() == "Lambda.Invoke" {
						found, kind = otlpAttrs(sp.GetAttributes()), sp.GetKind().String()
					}
				}
			}
		}
	}
	if found == nil {
		t.Fatalf("no Lambda.Invoke span reached the OTLP receiver (%d export requests)", len(recv.traceRequests()))
	}
	if kind != "SPAN_KIND_CLIENT" {
		t.Errorf("span kind %s, want client", kind)
	}
	want := map[string]string{
		"rpc.system":                "aws-api",
		"rpc.service":               "Lambda",
		"rpc.method":                "Invoke",
		"cloud.region":              "us-east-1",
		"server.address":            "lambda.us-east-1.amazonaws.com",
		"http.request.method":       "POST",
		"http.response.status_code": "200",
		"skewproxy.failure":         "signature_expired",
		"skewproxy.retried":         "true",
	}
	for k, v := range want {
		if found[k] != v {
			t.Errorf("span attribute %s = %q, want %q (all: %v)", k, found[k], v, found)
		}
	}
	for _, k := range []string{"aws.request_id", "skewproxy.clock.offset_ms", "skewproxy.clock.source",
		"skewproxy.clock.uncertainty_ms", "skewproxy.client_signature.age_ms", "skewproxy.queue.age_ms"} {
		if _, ok := found[k]; !ok {
			t.Errorf("span lacks %s (all: %v)", k, found)
		}
	}
}
