//go:build otlpgrpc

package main

// OTLP over gRPC, for a build with -tags otlpgrpc. The default build leaves
// it out: http/protobuf, the OTLP specification's default protocol, reaches
// the same collectors on port 4318, and the gRPC exporters add 0.33 MB to
// the linux/arm/v7 binary (measured with Go 1.26, otel 1.47). The gRPC
// library itself stays linked either way: the OTLP/HTTP exporters import
// the collector protos, whose packages hold the gRPC service stubs
// (open-telemetry/opentelemetry-go#2579); that is another 1.8 MB.

import (
	"context"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otlpGRPC makes OTLP/gRPC exporters configured by OTEL_EXPORTER_OTLP_*.
var otlpGRPC = otlpGRPCExporters{
	spans:   func(ctx context.Context) (sdktrace.SpanExporter, error) { return otlptracegrpc.New(ctx) },
	metrics: func(ctx context.Context) (sdkmetric.Exporter, error) { return otlpmetricgrpc.New(ctx) },
}
