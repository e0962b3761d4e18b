//go:build !otlpgrpc

package main

// otlpGRPC is empty in the default build: no OTLP over gRPC (see
// otel_grpc.go for the build that has it).
var otlpGRPC otlpGRPCExporters
