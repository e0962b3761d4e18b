package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// ScopeName is the instrumentation scope of skewproxy's spans and metrics.
const ScopeName = "github.com/skewproxy/skewproxy/proxy"

// SignatureAgeWarning is the client-signature age past which a request is
// logged as one that would have failed without skewproxy: AWS refuses
// signatures more than 5 minutes old, and a minute of margin covers the
// trip upstream. A presigned URL is instead measured against its own
// X-Amz-Expires. A signature from more than SignatureAgeWarning in the
// future (client clock ahead) is logged too.
const SignatureAgeWarning = 4 * time.Minute

// Metric instrument names. The Prometheus exporter renders them with dots
// turned into underscores, the unit suffix ("s" -> _seconds) and _total on
// counters: skewproxy.requests -> skewproxy_requests_total.
const (
	MetricClockOffset      = "skewproxy.clock.offset"
	MetricClockUncertainty = "skewproxy.clock.uncertainty"
	MetricRequests         = "skewproxy.requests"
	MetricFailures         = "skewproxy.failures"
	MetricQueueWait        = "skewproxy.queue.wait"
	MetricLambdaInflight   = "skewproxy.lambda.inflight"
	MetricLeafCacheHits    = "skewproxy.leaf_cache.hits"
	MetricLeafCacheMisses  = "skewproxy.leaf_cache.misses"
	// MetricCredentialsRefresh counts fetches of the proxy's credentials
	// from their provider, by outcome ("ok", "error", "expired": the
	// provider handed out credentials already expired in true time).
	MetricCredentialsRefresh = "skewproxy.credentials.refreshes"
	// MetricSignatureUpgrades counts requests that arrived with a
	// pre-SigV4 signature (by signature_version) and were signed with SigV4.
	MetricSignatureUpgrades = "skewproxy.signature_upgrades"
	MetricNTPRTT            = "skewproxy.ntp.rtt"
)

// Options configures New. Every field may be left zero.
type Options struct {
	// TracerProvider makes the request spans; nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics; nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Clock is the corrected clock whose Status feeds the skewproxy.clock.*
	// span attributes and the clock gauges; nil leaves both out.
	Clock timesource.Clock
	// LambdaInflight reports the Lambda invokes in flight for the
	// skewproxy_lambda_inflight gauge; nil reports 0.
	LambdaInflight func() int64
	// Logger receives the client-signature age warnings; nil discards them.
	Logger *slog.Logger
	// LambdaCoordinatorMode reports the fleet coordinator's mode
	// ("shared", "local", "closed") for the skewproxy_lambda_coordinator_mode
	// gauge, and LambdaCoordinating the invokes waiting for a fleet-wide
	// slot; nil (no --lambda-coordinator) exports neither gauge.
	LambdaCoordinatorMode func() string
	LambdaCoordinating    func() int64
}

// Telemetry is the proxy's Observer: it makes one span per proxied request
// and keeps the skewproxy_* metrics. It is safe for concurrent use.
type Telemetry struct {
	tracer   trace.Tracer
	clock    timesource.Clock
	inflight func() int64
	logger   *slog.Logger
	prop     propagation.TraceContext

	requests    metric.Int64Counter
	failures    metric.Int64Counter
	queueWait   metric.Float64Histogram
	leafHits    metric.Int64Counter
	leafMisses  metric.Int64Counter
	credFetches metric.Int64Counter
	upgrades    metric.Int64Counter
	ntpRTT      metric.Float64Histogram
	callbackReg metric.Registration

	coordWait      metric.Float64Histogram
	coordRTT       metric.Float64Histogram
	coordFallbacks metric.Int64Counter
	fleetReg       metric.Registration
}

var _ proxy.Observer = (*Telemetry)(nil)

// New builds the instruments and registers the gauge callbacks. Call Close
// to unregister the callbacks when the proxy stops.
func New(opts Options) (*Telemetry, error) {
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t := &Telemetry{
		tracer:   tp.Tracer(ScopeName),
		clock:    opts.Clock,
		inflight: opts.LambdaInflight,
		logger:   opts.Logger,
	}
	if t.logger == nil {
		t.logger = slog.New(slog.DiscardHandler)
	}
	if err := t.instruments(mp.Meter(ScopeName)); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if err := t.fleetInstruments(mp.Meter(ScopeName), opts); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return t, nil
}

// secondsBuckets suits waits from a millisecond to the 5-minute life of a
// signature.
var queueBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240, 300}

// rttBuckets suits NTP round trips, from the link-local Time Sync Service
// (well under a millisecond) to a distant public server.
var rttBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

func (t *Telemetry) instruments(m metric.Meter) error {
	var err error
	if t.requests, err = m.Int64Counter(MetricRequests,
		metric.WithDescription("Proxied AWS requests by service and outcome (ok, client_error, server_error, error or a failure class).")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricRequests, err)
	}
	if t.failures, err = m.Int64Counter(MetricFailures,
		metric.WithDescription("Classified AWS failure answers and proxy refusals by failure class, retried attempts included.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricFailures, err)
	}
	if t.queueWait, err = m.Float64Histogram(MetricQueueWait, metric.WithUnit("s"),
		metric.WithDescription("Time Lambda invokes waited in the proxy's admission queue."),
		metric.WithExplicitBucketBoundaries(queueBuckets...)); err != nil {
		return fmt.Errorf("histogram %s: %w", MetricQueueWait, err)
	}
	if t.leafHits, err = m.Int64Counter(MetricLeafCacheHits,
		metric.WithDescription("TLS leaf certificates served from the cache.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricLeafCacheHits, err)
	}
	if t.upgrades, err = m.Int64Counter(MetricSignatureUpgrades,
		metric.WithDescription("Requests signed with Signature Version 2 (or 1, 0) that the proxy signed again with SigV4, by signature_version.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricSignatureUpgrades, err)
	}
	if t.credFetches, err = m.Int64Counter(MetricCredentialsRefresh,
		metric.WithDescription("Fetches of the proxy's credentials from their provider, by outcome.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricCredentialsRefresh, err)
	}
	if t.leafMisses, err = m.Int64Counter(MetricLeafCacheMisses,
		metric.WithDescription("TLS leaf certificates that had to be issued.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricLeafCacheMisses, err)
	}
	if t.ntpRTT, err = m.Float64Histogram(MetricNTPRTT, metric.WithUnit("s"),
		metric.WithDescription("Round trip of NTP queries by source."),
		metric.WithExplicitBucketBoundaries(rttBuckets...)); err != nil {
		return fmt.Errorf("histogram %s: %w", MetricNTPRTT, err)
	}
	inflight, err := m.Int64ObservableGauge(MetricLambdaInflight, metric.WithUnit("{request}"),
		metric.WithDescription("Lambda invokes admitted and not yet answered."))
	if err != nil {
		return fmt.Errorf("gauge %s: %w", MetricLambdaInflight, err)
	}
	observables := []metric.Observable{inflight}
	var offset, uncertainty metric.Float64ObservableGauge
	if t.clock != nil {
		if offset, err = m.Float64ObservableGauge(MetricClockOffset, metric.WithUnit("s"),
			metric.WithDescription("Host clock minus true time (positive: host ahead).")); err != nil {
			return fmt.Errorf("gauge %s: %w", MetricClockOffset, err)
		}
		if uncertainty, err = m.Float64ObservableGauge(MetricClockUncertainty, metric.WithUnit("s"),
			metric.WithDescription("Bound on the error of the corrected clock.")); err != nil {
			return fmt.Errorf("gauge %s: %w", MetricClockUncertainty, err)
		}
		observables = append(observables, offset, uncertainty)
	}
	t.callbackReg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var n int64
		if t.inflight != nil {
			n = t.inflight()
		}
		o.ObserveInt64(inflight, n)
		if t.clock != nil {
			st := t.clock.Status()
			o.ObserveFloat64(offset, st.Offset.Seconds(), metric.WithAttributes(attribute.String("source", st.Source)))
			o.ObserveFloat64(uncertainty, st.Uncertainty.Seconds(), metric.WithAttributes(attribute.String("source", st.Source)))
		}
		return nil
	}, observables...)
	if err != nil {
		return fmt.Errorf("register gauge callback: %w", err)
	}
	return nil
}

// Close unregisters the gauge callbacks. It does not shut the providers
// down; their owner does.
func (t *Telemetry) Close() error {
	for _, reg := range []metric.Registration{t.callbackReg, t.fleetReg} {
		if reg == nil {
			continue
		}
		if err := reg.Unregister(); err != nil {
			return fmt.Errorf("telemetry: unregister callbacks: %w", err)
		}
	}
	return nil
}

// LeafCache counts one TLS leaf-certificate lookup; the CA calls it with
// hit=false when it had to issue a new leaf.
func (t *Telemetry) LeafCache(hit bool) {
	if hit {
		t.leafHits.Add(context.Background(), 1)
		return
	}
	t.leafMisses.Add(context.Background(), 1)
}

// CredentialsFetch counts one fetch of the proxy's credentials from their
// provider; err is its outcome (nil on success).
func (t *Telemetry) CredentialsFetch(err error) {
	outcome := "ok"
	switch {
	case signer.IsExpiredCredentials(err):
		outcome = "expired"
	case err != nil:
		outcome = "error"
	}
	t.credFetches.Add(context.Background(), 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// NTPSample records the round trip of one answered NTP query to source
// (e.g. "ntp://169.254.169.123").
func (t *Telemetry) NTPSample(source string, rtt time.Duration) {
	t.ntpRTT.Record(context.Background(), rtt.Seconds(), metric.WithAttributes(attribute.String("source", source)))
}

// Start begins the span of one intercepted request. It continues the
// client's W3C trace context (traceparent, tracestate) when the request
// carries one; otherwise the span is a child of whatever ctx holds.
func (t *Telemetry) Start(ctx context.Context, req *http.Request) (context.Context, proxy.RequestObserver) {
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(req.Header))
	attrs := []attribute.KeyValue{
		KeyRPCSystem.String(rpcSystem),
		KeyHTTPRequestMethod.String(req.Method),
	}
	if host := serverAddress(req); host != "" {
		attrs = append(attrs, KeyServerAddress.String(host))
	}
	ctx, span := t.tracer.Start(ctx, defaultSpanName,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrs...),
		t.timestamp())
	if span.IsRecording() {
		span.SetAttributes(t.clockAttrs()...)
	}
	presigned := isPresigned(req)
	return ctx, &requestObserver{t: t, ctx: ctx, span: span, service: ServiceID(""), maxAge: maxSignatureAge(req, presigned), presigned: presigned}
}

// timestamp dates a span start, end or event by the corrected clock, so
// traces line up with AWS's own logs whatever the host clock says (the
// OpenTelemetry SDK would read the host clock). Without a Clock it is a
// no-op option.
func (t *Telemetry) timestamp() trace.SpanEventOption {
	if t.clock == nil {
		return trace.WithTimestamp(time.Time{}) // zero: the SDK's own clock
	}
	return trace.WithTimestamp(t.clock.Now())
}

// defaultSpanName names the span of a request that was never classified.
const defaultSpanName = "AWS"

// clockAttrs reads the corrected clock's status for the skewproxy.clock.*
// attributes.
func (t *Telemetry) clockAttrs() []attribute.KeyValue {
	if t.clock == nil {
		return nil
	}
	st := t.clock.Status()
	return []attribute.KeyValue{
		KeyClockOffsetMS.Float64(ms(st.Offset)),
		KeyClockSource.String(st.Source),
		KeyClockUncertaintyMS.Float64(ms(st.Uncertainty)),
	}
}

// serverAddress is the request's host name without a port.
func serverAddress(req *http.Request) string {
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// ms expresses d in milliseconds, keeping sub-millisecond precision.
func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
