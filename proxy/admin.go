package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/skewproxy/skewproxy/timesource"
)

// AdminOptions configures the admin HTTP handler.
type AdminOptions struct {
	// Clock is reported by /status and gates /readyz (required).
	Clock timesource.Clock
	// Lambda returns the value of "lambda" in /status (it must marshal to
	// an object with "inflight" and "queued"). nil reports zeros.
	Lambda func() any
	// Metrics serves /metrics (Prometheus text). nil answers 404.
	Metrics http.Handler
	// Extra maps more paths to handlers (e.g. "/debug/pprof/"); a path
	// ending in "/" serves its subtree.
	Extra map[string]http.Handler
	// ReadyWithoutSync makes /readyz answer 200 even before the clock is
	// synced (for setups that deliberately run on the host clock).
	ReadyWithoutSync bool
	// ReadyDetail, when set, adds its fields to every /readyz answer
	// (e.g. "lambda_coordinator": the fleet coordinator's mode). They
	// inform; they do not change the status.
	ReadyDetail func() map[string]any
	// MaxUncertainty, when > 0, makes /readyz answer 503 while the clock's
	// uncertainty exceeds it: every source has been silent so long that
	// the drift since the last sample is no longer negligible. A synced
	// clock keeps signing either way; readiness only tells the platform.
	MaxUncertainty time.Duration
}

// NewAdminHandler returns the admin endpoints: GET /healthz (200 "ok" while
// the process runs), GET /readyz (200 while the clock is synced and, with
// MaxUncertainty, fresh enough; else 503 with a JSON reason), GET /status (the JSON design.md specifies: clock and lambda objects) and
// /metrics.
func NewAdminHandler(o AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := o.Clock.Status()
		if st.Synced && o.MaxUncertainty > 0 && st.Uncertainty > o.MaxUncertainty && !o.ReadyWithoutSync {
			writeJSON(w, http.StatusServiceUnavailable, withDetail(o, map[string]any{"ready": false,
				"reason": "clock uncertainty " + st.Uncertainty.Round(time.Millisecond).String() + " exceeds " + o.MaxUncertainty.String() +
					": no time source (" + st.Source + " last) has answered for too long"}))
			return
		}
		if st.Synced || o.ReadyWithoutSync {
			writeJSON(w, http.StatusOK, withDetail(o, map[string]any{"ready": true}))
			return
		}
		reason := st.Reason
		if reason == "" {
			reason = "no authoritative time source has answered yet"
		}
		writeJSON(w, http.StatusServiceUnavailable, withDetail(o, map[string]any{"ready": false, "reason": reason}))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, statusOf(o))
	})
	if o.Metrics != nil {
		mux.Handle("/metrics", o.Metrics)
	} else {
		mux.Handle("/metrics", http.NotFoundHandler())
	}
	for path, h := range o.Extra {
		if strings.HasPrefix(path, "/") && h != nil {
			mux.Handle(path, h)
		}
	}
	return mux
}

// withDetail adds o.ReadyDetail's fields to a /readyz answer (never over
// "ready" or "reason").
func withDetail(o AdminOptions, body map[string]any) map[string]any {
	if o.ReadyDetail == nil {
		return body
	}
	for k, v := range o.ReadyDetail() {
		if _, taken := body[k]; !taken {
			body[k] = v
		}
	}
	return body
}

// clockStatus is the "clock" object of /status.
type clockStatus struct {
	Synced             bool    `json:"synced"`
	Source             string  `json:"source"`
	CorrectedTime      string  `json:"corrected_time"`
	OffsetSeconds      float64 `json:"offset_seconds"`
	UncertaintySeconds float64 `json:"uncertainty_seconds"`
	LastSync           *string `json:"last_sync"`
	LeapSmeared        bool    `json:"leap_smeared"`
	Reason             string  `json:"reason,omitempty"`
}

type lambdaZero struct {
	Inflight int `json:"inflight"`
	Queued   int `json:"queued"`
}

func statusOf(o AdminOptions) map[string]any {
	st := o.Clock.Status()
	cs := clockStatus{
		Synced:             st.Synced,
		Source:             st.Source,
		CorrectedTime:      st.CorrectedTime.UTC().Format(time.RFC3339Nano),
		OffsetSeconds:      st.Offset.Seconds(),
		UncertaintySeconds: st.Uncertainty.Seconds(),
		LeapSmeared:        st.Smeared,
		Reason:             st.Reason,
	}
	if !st.LastSync.IsZero() {
		s := st.LastSync.UTC().Format(time.RFC3339Nano)
		cs.LastSync = &s
	}
	var lambda any = lambdaZero{}
	if o.Lambda != nil {
		if v := o.Lambda(); v != nil {
			lambda = v
		}
	}
	return map[string]any{"clock": cs, "lambda": lambda}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode status", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
