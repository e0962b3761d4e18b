package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/timesource"
)

// relStatusClock is a Clock whose Status is fixed.
type relStatusClock struct{ st timesource.Status }

func (c relStatusClock) Now() time.Time                 { return time.Now() }
func (c relStatusClock) Status() timesource.Status      { return c.st }
func (c relStatusClock) Observe(timesource.Observation) {}

// TestReadyzFreshness: /readyz is 200 while the clock is synced and its
// uncertainty (which grows while every source is silent) is within
// MaxUncertainty, and 503 with a reason naming the last source otherwise.
func TestReadyzFreshness(t *testing.T) {
	cases := []struct {
		name   string
		st     timesource.Status
		max    time.Duration
		status int
		reason string
	}{
		{"never synced", timesource.Status{Source: "host", Reason: "no time source has answered yet: ntp://x: timeout"}, time.Minute, 503, "ntp://x: timeout"},
		{"synced, fresh NTP", timesource.Status{Synced: true, Source: "ntp://127.0.0.1:123", Uncertainty: 3 * time.Millisecond}, time.Minute, 200, ""},
		{"synced from a Date header after NTP died", timesource.Status{Synced: true, Source: "http-date:sts.amazonaws.com", Passive: true, Uncertainty: 600 * time.Millisecond}, time.Minute, 200, ""},
		{"every source silent too long", timesource.Status{Synced: true, Source: "ntp://127.0.0.1:123", Uncertainty: 61 * time.Second}, time.Minute, 503, "ntp://127.0.0.1:123"},
		{"no bound configured", timesource.Status{Synced: true, Source: "ntp://127.0.0.1:123", Uncertainty: time.Hour}, 0, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewAdminHandler(AdminOptions{Clock: relStatusClock{tc.st}, MaxUncertainty: tc.max})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			var body struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if rec.Code != tc.status || body.Ready != (tc.status == 200) || !strings.Contains(body.Reason, tc.reason) {
				t.Fatalf("/readyz %d %+v, want %d with reason containing %q", rec.Code, body, tc.status, tc.reason)
			}
		})
	}
}
