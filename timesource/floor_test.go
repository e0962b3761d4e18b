package timesource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func TestCheckPlausible(t *testing.T) {
	build := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		t         time.Time
		notBefore time.Time
		wantErr   string // empty: accepted
	}{
		{name: "no floor, ordinary time", t: build},
		{name: "no floor, the epoch", t: time.Unix(0, 0)},
		{name: "no floor, just before 2200", t: latestWithoutFloor.Add(-time.Second)},
		{name: "no floor, after 2200", t: latestWithoutFloor.Add(time.Second), wantErr: "after the latest plausible time 2200-01-01T00:00:00Z"},
		{name: "at the floor", t: build, notBefore: build},
		{name: "one second before the floor", t: build.Add(-time.Second), notBefore: build, wantErr: "before the build-time floor 2026-03-01T00:00:00Z"},
		{name: "NTP era 0 wrapped to 1900", t: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), notBefore: build, wantErr: "before the build-time floor"},
		{name: "99 years after the floor", t: build.AddDate(99, 0, 0), notBefore: build},
		{name: "just past 100 years after the floor", t: build.AddDate(100, 0, 0).Add(time.Second), notBefore: build, wantErr: "after the latest plausible time 2126-03-01T00:00:00Z"},
		{name: "floor far back: 2200 is fine", t: latestWithoutFloor.Add(time.Hour), notBefore: time.Date(2150, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPlausible(tt.t, tt.notBefore)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkPlausible(%v, %v) = %v, want nil", tt.t, tt.notBefore, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errImplausibleTime) {
				t.Fatalf("checkPlausible(%v, %v) = %v, want errImplausibleTime saying %q", tt.t, tt.notBefore, err, tt.wantErr)
			}
		})
	}
}

func TestNTPAnswerOutsideFloorIsRejected(t *testing.T) {
	truth := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // newFake's true time
	tests := []struct {
		name      string
		notBefore time.Time
		// shift moves the server's time away from the truth.
		shift   time.Duration
		wantErr string // empty: accepted
	}{
		{name: "after the floor", notBefore: truth.Add(-24 * time.Hour)},
		{name: "no floor", notBefore: time.Time{}},
		{name: "before the floor", notBefore: truth.Add(24 * time.Hour), wantErr: "before the build-time floor"},
		{name: "more than 100 years after the floor", notBefore: truth.AddDate(-101, 0, 0), wantErr: "after the latest plausible time"},
		{name: "no floor, after 2200", shift: latestWithoutFloor.Sub(truth) + time.Hour, wantErr: "after the latest plausible time 2200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			c, _, f := newFake(t, time.Hour, Config{NotBefore: tt.notBefore, Logger: logs.Logger()})
			f.answer = func(_ string, _ int, r *ntp.Response) error {
				r.ClockOffset += tt.shift
				return nil
			}
			before := c.Now()
			ok, _ := c.queryOnce(context.Background(), c.sources[0])
			st := c.Status()
			if tt.wantErr == "" {
				if !ok || !st.Synced || !c.Now().Equal(f.truth()) {
					t.Fatalf("answer refused: ok %v, Status %+v", ok, st)
				}
				return
			}
			if ok || st.Synced {
				t.Fatalf("answer accepted: Status %+v", st)
			}
			if !strings.Contains(st.Reason, "ntp://127.0.0.1:1123: implausible time") || !strings.Contains(st.Reason, tt.wantErr) {
				t.Fatalf("Reason = %q, want it to name the source and %q", st.Reason, tt.wantErr)
			}
			if got := c.Now(); !got.Equal(before) {
				t.Fatalf("Now moved from %v to %v", before, got)
			}
			if n := c.counts["ntp://127.0.0.1:1123"].rejected; n != 1 {
				t.Fatalf("rejected = %d, want 1", n)
			}
			line := logLine(logs.String(), "time source answered an implausible time")
			for _, want := range []string{"level=WARN", "source=ntp://127.0.0.1:1123", "server_time=", "not_before=", "latest="} {
				if !strings.Contains(line, want) {
					t.Fatalf("log line %q lacks %q", line, want)
				}
			}
			// The same refusal again is not worth another warning.
			c.queryOnce(context.Background(), c.sources[0])
			if n := strings.Count(logs.String(), "level=WARN msg=\"time source answered an implausible time\""); n != 1 {
				t.Fatalf("%d warnings after two refusals, want 1:\n%s", n, logs.String())
			}
		})
	}
}

func TestObservationOutsideFloorIsDropped(t *testing.T) {
	truth := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		notBefore  time.Time
		serverTime time.Time
		wantSynced bool
	}{
		{name: "after the floor", notBefore: truth.Add(-time.Hour), serverTime: truth, wantSynced: true},
		{name: "before the floor", notBefore: truth.Add(time.Hour), serverTime: truth},
		{name: "more than 100 years after the floor", notBefore: truth, serverTime: truth.AddDate(101, 0, 0)},
		{name: "no floor, after 2200", serverTime: latestWithoutFloor.AddDate(1, 0, 0)},
		{name: "no floor, 1990", serverTime: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), wantSynced: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			c, w, _ := newFake(t, 0, Config{NotBefore: tt.notBefore, Logger: logs.Logger()})
			sent := c.Now()
			w.Advance(10 * time.Millisecond)
			c.Observe(Observation{Source: "http-date:s3.amazonaws.com", ServerTime: tt.serverTime, Precision: time.Second, Sent: sent, Received: c.Now()})
			st := c.Status()
			if st.Synced != tt.wantSynced {
				t.Fatalf("Status = %+v, want synced %v", st, tt.wantSynced)
			}
			warned := strings.Contains(logLine(logs.String(), "observation ignored: implausible server time"), "level=WARN")
			if warned == tt.wantSynced {
				t.Fatalf("implausible-time warning logged: %v, want %v:\n%s", warned, !tt.wantSynced, logs.String())
			}
		})
	}
}

// logLine returns the first line of logs containing msg, or "".
func logLine(logs, msg string) string {
	for line := range strings.Lines(logs) {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}
