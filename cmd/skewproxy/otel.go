package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
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
// variables ask: OTEL_TRACES_EXPORTER (default "none" here, unlike the
// spec's "otlp": a sidecar must not send spans nobody asked for),
// OTEL_METRICS_EXPORTER (default "none"), OTEL_EXPORTER_OTLP_*,
// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME (default "skewproxy") and
// OTEL_RESOURCE_ATTRIBUTES. A Prometheus reader on its own registry is always
// installed and served by the returned Metrics handler (so
// OTEL_METRICS_EXPORTER=prometheus is rarely wanted: autoexport would start a
// second server on OTEL_EXPORTER_PROMETHEUS_HOST:PORT, default localhost:9464).
//
// It also sets otel's globals (tracer and meter providers, and the W3C
// TraceContext+Baggage propagator) so that code using the otel API without
// an explicit provider reports to the same place.
func setupOTel(ctx context.Context, serviceVersion string) (*otelSetup, error) {
	res, err := otelResource(ctx, serviceVersion)
	if err != nil {
		return nil, err
	}

	spanExp, err := autoexport.NewSpanExporter(ctx,
		autoexport.WithFallbackSpanExporter(func(context.Context) (sdktrace.SpanExporter, error) { return nil, nil }))
	if err != nil {
		return nil, fmt.Errorf("trace exporter (OTEL_TRACES_EXPORTER): %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if spanExp != nil && !autoexport.IsNoneSpanExporter(spanExp) {
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
	envReader, err := autoexport.NewMetricReader(ctx,
		autoexport.WithFallbackMetricReader(func(context.Context) (sdkmetric.Reader, error) { return nil, nil }))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("metric exporter (OTEL_METRICS_EXPORTER): %w", err),
			promReader.Shutdown(ctx), tp.Shutdown(ctx))
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}
	if envReader != nil && !autoexport.IsNoneMetricReader(envReader) {
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
