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

type fixedClock struct{ st timesource.Status }

func (c fixedClock) Now() time.Time                 { return c.st.CorrectedTime }
func (c fixedClock) Status() timesource.Status      { return c.st }
func (c fixedClock) Observe(timesource.Observation) {}

func TestAdminHandler(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	synced := timesource.Status{Synced: true, Source: "ntp://169.254.169.123", CorrectedTime: now,
		Offset: -1500 * time.Millisecond, Uncertainty: 2 * time.Millisecond, LastSync: now.Add(-time.Minute)}
	unsynced := timesource.Status{Source: "host", CorrectedTime: now, Reason: "no NTP answer yet"}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("skewproxy_clock_offset_seconds 0\n")) })

	cases := []struct {
		name       string
		opts       AdminOptions
		path       string
		wantStatus int
		check      func(t *testing.T, body string)
	}{
		{"healthz", AdminOptions{Clock: fixedClock{unsynced}}, "/healthz", 200, func(t *testing.T, b string) {
			if strings.TrimSpace(b) != "ok" {
				t.Errorf("body %q", b)
			}
		}},
		{"readyz unsynced", AdminOptions{Clock: fixedClock{unsynced}}, "/readyz", 503, func(t *testing.T, b string) {
			var v map[string]any
			if json.Unmarshal([]byte(b), &v) != nil || v["ready"] != false || v["reason"] != "no NTP answer yet" {
				t.Errorf("body %s", b)
			}
		}},
		{"readyz synced", AdminOptions{Clock: fixedClock{synced}}, "/readyz", 200, nil},
		{"readyz without sync allowed", AdminOptions{Clock: fixedClock{unsynced}, ReadyWithoutSync: true}, "/readyz", 200, nil},
		{"status", AdminOptions{Clock: fixedClock{synced}, Lambda: func() any { return map[string]int{"inflight": 3, "queued": 2} }}, "/status", 200, func(t *testing.T, b string) {
			var v struct {
				Clock struct {
					Synced             bool     `json:"synced"`
					Source             string   `json:"source"`
					CorrectedTime      string   `json:"corrected_time"`
					OffsetSeconds      *float64 `json:"offset_seconds"`
					UncertaintySeconds *float64 `json:"uncertainty_seconds"`
					LastSync           string   `json:"last_sync"`
				} `json:"clock"`
				Lambda struct{ Inflight, Queued *int } `json:"lambda"`
			}
			if err := json.Unmarshal([]byte(b), &v); err != nil {
				t.Fatal(err)
			}
			c := v.Clock
			if !c.Synced || c.Source != "ntp://169.254.169.123" || c.CorrectedTime != "2026-05-01T12:00:00.123456789Z" ||
				c.OffsetSeconds == nil || *c.OffsetSeconds != -1.5 || c.UncertaintySeconds == nil || *c.UncertaintySeconds != 0.002 ||
				c.LastSync != "2026-05-01T11:59:00.123456789Z" {
				t.Errorf("clock %+v from %s", c, b)
			}
			if v.Lambda.Inflight == nil || *v.Lambda.Inflight != 3 || *v.Lambda.Queued != 2 {
				t.Errorf("lambda from %s", b)
			}
		}},
		{"status default lambda", AdminOptions{Clock: fixedClock{unsynced}}, "/status", 200, func(t *testing.T, b string) {
			if !strings.Contains(b, `"lambda":{"inflight":0,"queued":0}`) || !strings.Contains(b, `"last_sync":null`) {
				t.Errorf("body %s", b)
			}
		}},
		{"metrics", AdminOptions{Clock: fixedClock{synced}, Metrics: metrics}, "/metrics", 200, func(t *testing.T, b string) {
			if !strings.Contains(b, "skewproxy_clock_offset_seconds") {
				t.Errorf("body %q", b)
			}
		}},
		{"metrics absent", AdminOptions{Clock: fixedClock{synced}}, "/metrics", 404, nil},
		{"extra", AdminOptions{Clock: fixedClock{synced}, Extra: map[string]http.Handler{"/presign": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("presigned")) })}}, "/presign", 200, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(NewAdminHandler(tc.opts))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}
