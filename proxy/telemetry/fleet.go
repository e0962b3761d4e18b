package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric instrument names of the fleet coordinator (--lambda-coordinator).
// Prometheus: skewproxy_lambda_coordination_wait_seconds,
// skewproxy_lambda_coordinator_rtt_seconds,
// skewproxy_lambda_coordinator_fallbacks_total,
// skewproxy_lambda_coordinator_mode, skewproxy_lambda_coordinating.
const (
	// MetricCoordinationWait is the time an invoke waited for a
	// fleet-wide slot after the local queue (skewproxy_queue_wait_seconds
	// covers both waits).
	MetricCoordinationWait = "skewproxy.lambda.coordination.wait"
	// MetricCoordinatorRTT is each Redis round trip, by op (acquire,
	// release, renew, heartbeat, drop) and outcome (ok, error).
	MetricCoordinatorRTT = "skewproxy.lambda.coordinator.rtt"
	// MetricCoordinatorFallbacks counts changes from shared limits to a
	// fallback, by mode entered (local, closed).
	MetricCoordinatorFallbacks = "skewproxy.lambda.coordinator.fallbacks"
	// MetricCoordinatorMode is 1 for the coordinator's current mode
	// (shared, local, closed) and 0 for the others.
	MetricCoordinatorMode = "skewproxy.lambda.coordinator.mode"
	// MetricLambdaCoordinating counts invokes past the local queue that
	// wait for a fleet-wide slot.
	MetricLambdaCoordinating = "skewproxy.lambda.coordinating"
)

// coordinatorModes are the values of the mode label.
var coordinatorModes = []string{"shared", "local", "closed"}

// redisBuckets suit Redis round trips: loopback (~0.1 ms) to a slow
// remote answer near the coordinator's timeout.
var redisBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// fleetInstruments makes the coordinator's instruments. Its gauges report
// only when Options.LambdaCoordinatorMode is set (a proxy without a
// coordinator exports none of them).
func (t *Telemetry) fleetInstruments(m metric.Meter, opts Options) error {
	var err error
	if t.coordWait, err = m.Float64Histogram(MetricCoordinationWait, metric.WithUnit("s"),
		metric.WithDescription("Time Lambda invokes waited for a fleet-wide slot from the coordinator, after the local queue."),
		metric.WithExplicitBucketBoundaries(queueBuckets...)); err != nil {
		return fmt.Errorf("histogram %s: %w", MetricCoordinationWait, err)
	}
	if t.coordRTT, err = m.Float64Histogram(MetricCoordinatorRTT, metric.WithUnit("s"),
		metric.WithDescription("Round trips to the Lambda coordinator's Redis, by operation and outcome."),
		metric.WithExplicitBucketBoundaries(redisBuckets...)); err != nil {
		return fmt.Errorf("histogram %s: %w", MetricCoordinatorRTT, err)
	}
	if t.coordFallbacks, err = m.Int64Counter(MetricCoordinatorFallbacks,
		metric.WithDescription("Changes of the Lambda coordinator from shared limits to a fallback, by mode entered.")); err != nil {
		return fmt.Errorf("counter %s: %w", MetricCoordinatorFallbacks, err)
	}
	if opts.LambdaCoordinatorMode == nil {
		return nil
	}
	mode, err := m.Int64ObservableGauge(MetricCoordinatorMode,
		metric.WithDescription("1 for the Lambda coordinator's current mode (shared, local, closed), 0 for the others."))
	if err != nil {
		return fmt.Errorf("gauge %s: %w", MetricCoordinatorMode, err)
	}
	coordinating, err := m.Int64ObservableGauge(MetricLambdaCoordinating, metric.WithUnit("{request}"),
		metric.WithDescription("Lambda invokes past the local queue waiting for a fleet-wide slot."))
	if err != nil {
		return fmt.Errorf("gauge %s: %w", MetricLambdaCoordinating, err)
	}
	current, waiting := opts.LambdaCoordinatorMode, opts.LambdaCoordinating
	t.fleetReg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := current()
		for _, name := range coordinatorModes {
			v := int64(0)
			if name == now {
				v = 1
			}
			o.ObserveInt64(mode, v, metric.WithAttributes(attribute.String("mode", name)))
		}
		var n int64
		if waiting != nil {
			n = waiting()
		}
		o.ObserveInt64(coordinating, n)
		return nil
	}, mode, coordinating)
	if err != nil {
		return fmt.Errorf("register coordinator gauge callback: %w", err)
	}
	return nil
}

// CoordinatorRoundTrip records one Redis round trip of the Lambda
// coordinator (fleet.Config.OnRoundTrip).
func (t *Telemetry) CoordinatorRoundTrip(op string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	t.coordRTT.Record(context.Background(), d.Seconds(),
		metric.WithAttributes(attribute.String("op", op), attribute.String("outcome", outcome)))
}

// CoordinationWait records how long one invoke waited for a fleet-wide
// slot (fleet.Config.OnWait).
func (t *Telemetry) CoordinationWait(d time.Duration) {
	t.coordWait.Record(context.Background(), d.Seconds())
}

// CoordinatorModeChanged counts a change of the coordinator's mode into a
// fallback (mode "local" or "closed"); a return to "shared" is not
// counted (the mode gauge shows it).
func (t *Telemetry) CoordinatorModeChanged(mode string) {
	if mode == "shared" {
		return
	}
	t.coordFallbacks.Add(context.Background(), 1, metric.WithAttributes(attribute.String("mode", mode)))
}
