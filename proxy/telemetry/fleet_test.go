package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// scrapeFleet renders the metrics of a Telemetry fed by fill, as /metrics
// does.
func scrapeFleet(t *testing.T, opts Options, fill func(*Telemetry)) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	opts.MeterProvider = mp
	tel, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Close() })
	fill(tel)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// TestFleetCoordinatorMetrics: the coordinator's series, their Prometheus
// names, types and labels; none of the gauges without a coordinator.
func TestFleetCoordinatorMetrics(t *testing.T) {
	fams := scrapeFleet(t, Options{
		LambdaCoordinatorMode: func() string { return "local" },
		LambdaCoordinating:    func() int64 { return 7 },
	}, func(tel *Telemetry) {
		tel.CoordinatorRoundTrip("acquire", 300*time.Microsecond, nil)
		tel.CoordinatorRoundTrip("renew", 250*time.Millisecond, errors.New("i/o timeout"))
		tel.CoordinationWait(1500 * time.Millisecond)
		tel.CoordinatorModeChanged("local")
		tel.CoordinatorModeChanged("shared")
		tel.CoordinatorModeChanged("local")
	})
	tests := []struct {
		name   string
		typ    dto.MetricType
		labels map[string]string // label values of the sample checked
		value  float64           // counter or gauge value; histogram count
	}{
		{"skewproxy_lambda_coordinator_rtt_seconds", dto.MetricType_HISTOGRAM, map[string]string{"op": "acquire", "outcome": "ok"}, 1},
		{"skewproxy_lambda_coordinator_rtt_seconds", dto.MetricType_HISTOGRAM, map[string]string{"op": "renew", "outcome": "error"}, 1},
		{"skewproxy_lambda_coordination_wait_seconds", dto.MetricType_HISTOGRAM, nil, 1},
		{"skewproxy_lambda_coordinator_fallbacks_total", dto.MetricType_COUNTER, map[string]string{"mode": "local"}, 2},
		{"skewproxy_lambda_coordinator_mode", dto.MetricType_GAUGE, map[string]string{"mode": "local"}, 1},
		{"skewproxy_lambda_coordinator_mode", dto.MetricType_GAUGE, map[string]string{"mode": "shared"}, 0},
		{"skewproxy_lambda_coordinating", dto.MetricType_GAUGE, nil, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mf := fams[tc.name]
			if mf == nil {
				t.Fatalf("series %s missing", tc.name)
			}
			if mf.GetType() != tc.typ {
				t.Fatalf("type %v, want %v", mf.GetType(), tc.typ)
			}
			for _, m := range mf.GetMetric() {
				match := true
				for k, v := range tc.labels {
					found := false
					for _, lp := range m.GetLabel() {
						found = found || (lp.GetName() == k && lp.GetValue() == v)
					}
					match = match && found
				}
				if !match {
					continue
				}
				var got float64
				switch tc.typ {
				case dto.MetricType_HISTOGRAM:
					got = float64(m.GetHistogram().GetSampleCount())
				case dto.MetricType_COUNTER:
					got = m.GetCounter().GetValue()
				default:
					got = m.GetGauge().GetValue()
				}
				if got != tc.value {
					t.Errorf("%v = %v, want %v", tc.labels, got, tc.value)
				}
				return
			}
			t.Errorf("no sample with labels %v", tc.labels)
		})
	}

	without := scrapeFleet(t, Options{}, func(*Telemetry) {})
	for _, name := range []string{"skewproxy_lambda_coordinator_mode", "skewproxy_lambda_coordinating", "skewproxy_lambda_coordinator_fallbacks_total"} {
		if without[name] != nil {
			t.Errorf("%s exported without a coordinator", name)
		}
	}
}
