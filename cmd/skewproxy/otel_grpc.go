//go:build otlpgrpc

package main

// OTLP over gRPC, for a build with -tags otlpgrpc. The default build leaves
// it out: gRPC and its dependencies add about 5 MB to the binary (measured
// on linux/arm/v7), and http/protobuf, the OTLP specification's default
// protocol, reaches the same collectors on port 4318.

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
