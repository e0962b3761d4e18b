package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otelServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
const otelServiceName = "skewproxy"

// otelSetup is the installed OpenTelemetry SDK: the providers to pass to
// the packages that make spans and metrics, the Prometheus handler for the
// admin /metrics, and the function that flushes and stops it all.
type otelSetup struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	// Metrics serves every metric of MeterProvider as Prometheus text.
	Metrics http.Handler
	// Shutdown flushes pending spans and metrics and stops the exporters.
	Shutdown func(context.Context) error
}

// setupOTel installs the OpenTelemetry SDK as the standard environment
// variables ask: OTEL_TRACES_EXPORTER (otlp, console or none; default
// "none" here, unlike the spec's "otlp": a sidecar must not send spans
// nobody asked for), OTEL_METRICS_EXPORTER (otlp, console, prometheus or
// none; default "none"), OTEL_EXPORTER_OTLP_* (protocol http/protobuf, the
// spec's default; grpc only in a build with -tags otlpgrpc, see
// otel_grpc.go), OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME (default
// "skewproxy") and OTEL_RESOURCE_ATTRIBUTES. A Prometheus reader on its own
// registry is always installed and served by the returned Metrics handler,
// so OTEL_METRICS_EXPORTER=prometheus adds nothing: the admin port's
// /metrics is that exporter.
//
// It also sets otel's globals (tracer and meter providers, and the W3C
// TraceContext+Baggage propagator) so that code using the otel API without
// an explicit provider reports to the same place.
func setupOTel(ctx context.Context, serviceVersion string) (*otelSetup, error) {
	res, err := otelResource(ctx, serviceVersion)
	if err != nil {
		return nil, err
	}

	spanExp, err := spanExporterFromEnv(ctx)
	if err != nil {
		return nil, fmt.Errorf("trace exporter (OTEL_TRACES_EXPORTER): %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if spanExp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(spanExp))
	} else {
		// Spans would go nowhere: do not record them (the request path
		// skips building their attributes; metrics are unaffected).
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	promReader, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("prometheus exporter: %w", err), tp.Shutdown(ctx))
	}
	envReader, err := metricReaderFromEnv(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("metric exporter (OTEL_METRICS_EXPORTER): %w", err),
			promReader.Shutdown(ctx), tp.Shutdown(ctx))
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}
	if envReader != nil {
		mpOpts = append(mpOpts, sdkmetric.WithReader(envReader))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	return &otelSetup{
		TracerProvider: tp,
		MeterProvider:  mp,
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Shutdown: func(ctx context.Context) error {
			// Traces first: ending spans may still record metrics.
			tErr := tp.Shutdown(ctx)
			mErr := mp.Shutdown(ctx)
			if err := errors.Join(tErr, mErr); err != nil {
				return fmt.Errorf("opentelemetry shutdown: %w", err)
			}
			return nil
		},
	}, nil
}

// spanExporterFromEnv is the exporter OTEL_TRACES_EXPORTER names, or nil
// for none.
func spanExporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch name := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); name {
	case "", "none":
		return nil, nil
	case "console":
		return stdouttrace.New()
	case "otlp":
		switch proto := otlpProtocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); proto {
		case "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			if otlpGRPC.spans == nil {
				return nil, errNoGRPC
			}
			return otlpGRPC.spans(ctx)
		default:
			return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", proto)
		}
	default:
		return nil, fmt.Errorf("%q: want otlp, console or none", name)
	}
}

// metricReaderFromEnv is the reader OTEL_METRICS_EXPORTER names beside the
// admin port's Prometheus reader, or nil for none.
func metricReaderFromEnv(ctx context.Context) (sdkmetric.Reader, error) {
	var exp sdkmetric.Exporter
	var err error
	switch name := strings.TrimSpace(os.Getenv("OTEL_METRICS_EXPORTER")); name {
	case "", "none", "prometheus": // prometheus: the admin port's /metrics
		return nil, nil
	case "console":
		exp, err = stdoutmetric.New()
	case "otlp":
		switch proto := otlpProtocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"); proto {
		case "http/protobuf":
			exp, err = otlpmetrichttp.New(ctx)
		case "grpc":
			if otlpGRPC.metrics == nil {
				return nil, errNoGRPC
			}
			exp, err = otlpGRPC.metrics(ctx)
		default:
			return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", proto)
		}
	default:
		return nil, fmt.Errorf("%q: want otlp, console, prometheus or none", name)
	}
	if err != nil {
		return nil, err
	}
	// The interval and timeout come from OTEL_METRIC_EXPORT_INTERVAL and
	// OTEL_METRIC_EXPORT_TIMEOUT (read by the SDK).
	return sdkmetric.NewPeriodicReader(exp), nil
}

// otlpProtocol is the OTLP protocol for a signal: its own variable, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf (the spec's default).
func otlpProtocol(signalVar string) string {
	for _, v := range []string{signalVar, "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(os.Getenv(v)); p != "" {
			return p
		}
	}
	return "http/protobuf"
}

// otlpGRPCExporters make OTLP/gRPC exporters; nil fields where the build
// has none (otel_grpc.go, otel_nogrpc.go).
type otlpGRPCExporters struct {
	spans   func(context.Context) (sdktrace.SpanExporter, error)
	metrics func(context.Context) (sdkmetric.Exporter, error)
}

// errNoGRPC says this build left gRPC export out.
var errNoGRPC = errors.New("OTLP over gRPC is not in this build (it exports http/protobuf, port 4318; " +
	"set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or build with -tags otlpgrpc)")

// otelResource describes this process: service.name and service.version,
// the SDK, and whatever OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES add
// (they win over the defaults). A malformed OTEL_RESOURCE_ATTRIBUTES is
// reported through otel's error handler and the rest is kept.
func otelResource(ctx context.Context, serviceVersion string) (*resource.Resource, error) {
	defaults := []attribute.KeyValue{attribute.String("service.name", otelServiceName)}
	if serviceVersion != "" {
		defaults = append(defaults, attribute.String("service.version", serviceVersion))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(defaults...),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv())
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, resource.ErrPartialResource):
		otel.Handle(fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err))
		return res, nil
	default:
		return nil, fmt.Errorf("opentelemetry resource: %w", err)
	}
}
