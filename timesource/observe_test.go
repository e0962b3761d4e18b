package timesource

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func TestObserve(t *testing.T) {
	const exchange = 40 * time.Millisecond
	type step struct {
		// serverSkew is the server's time minus true time; source names the
		// observation.
		serverSkew time.Duration
		source     string
	}
	tests := []struct {
		name string
		// ntp, when set, syncs the clock to the fake NTP server first.
		ntp   bool
		steps []step
		// wantErr is Now() minus true time afterwards, within wantTol.
		wantErr    time.Duration
		wantTol    time.Duration
		wantSource string
	}{
		{
			name:       "unsynced clock adopts the first Date header",
			steps:      []step{{0, "http-date:sts.amazonaws.com"}},
			wantErr:    0,
			wantTol:    500*time.Millisecond + exchange/2,
			wantSource: "http-date:sts.amazonaws.com",
		},
		{
			name:       "agreeing Date header does not displace NTP",
			ntp:        true,
			steps:      []step{{300 * time.Millisecond, "http-date:s3.amazonaws.com"}},
			wantErr:    0,
			wantTol:    0,
			wantSource: "ntp://127.0.0.1:1123",
		},
		{
			name:       "skew error disagreeing with NTP corrects at once",
			ntp:        true,
			steps:      []step{{-7 * time.Minute, "skew-error:s3.amazonaws.com"}},
			wantErr:    -7 * time.Minute,
			wantTol:    500*time.Millisecond + exchange/2,
			wantSource: "skew-error:s3.amazonaws.com",
		},
		{
			name: "skew error corrects an established passive estimate",
			steps: []step{
				{0, "http-date:sts.amazonaws.com"},
				{5 * time.Minute, "skew-error:lambda.us-east-1.amazonaws.com"},
			},
			wantErr:    5 * time.Minute,
			wantTol:    500*time.Millisecond + exchange/2,
			wantSource: "skew-error:lambda.us-east-1.amazonaws.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w, f := newFake(t, -2*time.Hour, Config{})
			if tt.ntp {
				if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
					t.Fatal("NTP sample refused")
				}
			}
			for _, s := range tt.steps {
				sent := c.Now()
				w.Advance(exchange / 2)
				server := f.truth().Add(s.serverSkew).Truncate(time.Second)
				w.Advance(exchange / 2)
				c.Observe(Observation{Source: s.source, ServerTime: server, Precision: time.Second, Sent: sent, Received: c.Now()})
				w.Advance(time.Second)
			}
			st := c.Status()
			if !st.Synced || st.Source != tt.wantSource {
				t.Fatalf("Status = %+v, want synced to %s", st, tt.wantSource)
			}
			if got := c.Now().Sub(f.truth()); absDur(got-tt.wantErr) > tt.wantTol {
				t.Fatalf("Now() - truth = %v, want %v ± %v", got, tt.wantErr, tt.wantTol)
			}
			if absDur(c.Now().Sub(f.truth())-tt.wantErr) > st.Uncertainty+tt.wantTol {
				t.Fatalf("error beyond reported uncertainty %v", st.Uncertainty)
			}
		})
	}
}

func TestObservationSpanningBackwardCorrectionIsMapped(t *testing.T) {
	c, w, f := newFake(t, 0, Config{})
	if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
		t.Fatal("NTP sample refused")
	}
	sent := c.Now()
	w.Advance(10 * time.Millisecond)
	// A skew error moves the clock back 10 minutes mid-exchange ...
	s2 := c.Now()
	w.Advance(time.Millisecond)
	c.Observe(Observation{Source: "skew-error:x", ServerTime: f.truth().Add(-10 * time.Minute).Truncate(time.Second), Precision: time.Second, Sent: s2, Received: c.Now()})
	if c.Status().Source != "skew-error:x" {
		t.Fatalf("setup: skew error not adopted: %+v", c.Status())
	}
	// ... so this exchange's Sent and Received sit on different timelines:
	// at face value it lasted -10 minutes; mapped through its anchors, 21 ms.
	w.Advance(10 * time.Millisecond)
	c.Observe(Observation{Source: "http-date:y", ServerTime: f.truth().Add(time.Hour), Precision: time.Second, Sent: sent, Received: c.Now()})
	st := c.Status()
	if st.Source != "http-date:y" {
		t.Fatalf("disagreeing observation not adopted: %+v", st)
	}
	if want := 500*time.Millisecond + 21*time.Millisecond/2; absDur(st.Uncertainty-want) > time.Microsecond {
		t.Fatalf("Uncertainty = %v, want %v (a 21 ms exchange)", st.Uncertainty, want)
	}
}

func TestAmbiguousObservationIsDropped(t *testing.T) {
	c, w, f := newFake(t, 0, Config{})
	f.answer = func(_ string, n int, r *ntp.Response) error {
		if n == 1 { // a better sample that moves the clock back 2 s
			r.RTT = 100 * time.Microsecond
			r.ClockOffset -= 2 * time.Second
		}
		return nil
	}
	c.queryOnce(context.Background(), c.sources[0])
	w.Advance(10 * time.Millisecond)
	sent := c.Now()
	w.Advance(time.Millisecond)
	c.queryOnce(context.Background(), c.sources[0])
	if c.cur.Load().gen != 2 {
		t.Fatalf("setup: backward correction not installed")
	}
	// Sent now reads the same as a moment 2 s after the correction: two
	// anchors explain it, 2 s apart.
	w.Advance(3 * time.Second)
	before := c.Status()
	c.Observe(Observation{Source: "skew-error:q", ServerTime: f.truth().Add(time.Hour), Precision: time.Second, Sent: sent, Received: c.Now()})
	if st := c.Status(); st.Source != before.Source {
		t.Fatalf("ambiguous observation used: %+v", st)
	}
}

func TestObservationReadingsFromEarlierAnchorAreMapped(t *testing.T) {
	// Sent is read before NTP syncs the clock (host time, 1 h ahead),
	// Received after: the exchange still maps to 20 ms on the monotonic clock.
	c, w, f := newFake(t, time.Hour, Config{})
	sent := c.Now()
	w.Advance(10 * time.Millisecond)
	if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
		t.Fatal("NTP sample refused")
	}
	w.Advance(10 * time.Millisecond)
	c.Observe(Observation{Source: "skew-error:z", ServerTime: f.truth().Add(-3 * time.Minute), Precision: time.Millisecond, Sent: sent, Received: c.Now()})
	st := c.Status()
	if st.Source != "skew-error:z" {
		t.Fatalf("Status = %+v, want the skew error adopted", st)
	}
	// RTT/2 + Precision/2 = 10 ms + 0.5 ms.
	if want := 10*time.Millisecond + 500*time.Microsecond; absDur(st.Uncertainty-want) > time.Microsecond {
		t.Fatalf("Uncertainty = %v, want %v (exchange mapped across anchors)", st.Uncertainty, want)
	}
}

func TestObserveIgnoresIncompleteObservations(t *testing.T) {
	tests := []struct {
		name string
		o    func(now time.Time) Observation
	}{
		{"no server time", func(now time.Time) Observation { return Observation{Sent: now, Received: now} }},
		{"no sent", func(now time.Time) Observation { return Observation{ServerTime: now, Received: now} }},
		{"received before sent", func(now time.Time) Observation {
			return Observation{ServerTime: now, Sent: now, Received: now.Add(-time.Second)}
		}},
		{"readings not from this clock", func(now time.Time) Observation {
			return Observation{ServerTime: now, Sent: now.Add(time.Hour), Received: now.Add(time.Hour)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := newFake(t, 0, Config{})
			c.Observe(tt.o(c.Now()))
			if st := c.Status(); st.Synced {
				t.Fatalf("synced from an unusable observation: %+v", st)
			}
		})
	}
}

func TestPassiveSourcesAreCapped(t *testing.T) {
	c, w, f := newFake(t, 0, Config{})
	for i := range 3 * maxPassive {
		sent := c.Now()
		w.Advance(time.Duration(1+i%5) * time.Millisecond)
		c.Observe(Observation{Source: fmt.Sprintf("http-date:b%d.s3.amazonaws.com", i), ServerTime: f.truth().Truncate(time.Second), Precision: time.Second, Sent: sent, Received: c.Now()})
	}
	c.mu.Lock()
	n := len(c.passive)
	_, kept := c.passive[c.cur.Load().s.source]
	c.mu.Unlock()
	if n > maxPassive || !kept {
		t.Fatalf("%d passive sources remembered (cap %d), estimate in force kept: %v", n, maxPassive, kept)
	}
}

func TestUnsyncedKeepsHostReadingInsideObservation(t *testing.T) {
	tests := []struct {
		name      string
		server    time.Duration // ServerTime minus the host-based reading
		wantShift time.Duration // how far Now moves
	}{
		// Date headers truncate to the second: true time is ServerTime+0.5s ± 0.5s.
		{name: "host inside the interval: no step", server: -900 * time.Millisecond, wantShift: 0},
		{name: "host at the interval's edge: no step", server: -time.Second, wantShift: 0},
		{name: "host outside the interval: step", server: 10 * time.Second, wantShift: 10*time.Second + 500*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := newFake(t, 0, Config{})
			before := c.Now()
			c.Observe(Observation{Source: "http-date:test", ServerTime: before.Add(tt.server), Precision: time.Second, Sent: before, Received: before})
			st := c.Status()
			if !st.Synced || st.Source != "http-date:test" {
				t.Fatalf("Status = %+v, want synced from the observation", st)
			}
			if got := c.Now().Sub(before); got != tt.wantShift {
				t.Fatalf("Now moved by %v, want %v", got, tt.wantShift)
			}
			if st.Uncertainty < 500*time.Millisecond || st.Uncertainty > 600*time.Millisecond {
				t.Fatalf("Uncertainty = %v, want about half the Date precision", st.Uncertainty)
			}
		})
	}
}

func TestObserveDropsSlowRoundTrips(t *testing.T) {
	tests := []struct {
		name       string
		maxRTT     time.Duration // Config.MaxObservationRTT; 0: the default
		rtt        time.Duration
		wantSynced bool
	}{
		{name: "fast exchange", rtt: 40 * time.Millisecond, wantSynced: true},
		{name: "exactly the default limit", rtt: DefaultMaxObservationRTT, wantSynced: true},
		{name: "just over the default limit", rtt: DefaultMaxObservationRTT + time.Millisecond},
		{name: "slow Lambda invoke", rtt: 30 * time.Second},
		{name: "under a custom limit", maxRTT: 100 * time.Millisecond, rtt: 90 * time.Millisecond, wantSynced: true},
		{name: "over a custom limit", maxRTT: 100 * time.Millisecond, rtt: 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w, f := newFake(t, time.Hour, Config{MaxObservationRTT: tt.maxRTT})
			sent := c.Now()
			w.Advance(tt.rtt)
			c.Observe(Observation{Source: "http-date:lambda.us-east-1.amazonaws.com", ServerTime: f.truth().Truncate(time.Second), Precision: time.Second, Sent: sent, Received: c.Now()})
			if st := c.Status(); st.Synced != tt.wantSynced {
				t.Fatalf("Status = %+v, want synced %v", st, tt.wantSynced)
			}
		})
	}
}

func TestObservationUncertaintyWidensTheEstimate(t *testing.T) {
	const rtt = 20 * time.Millisecond
	tests := []struct {
		name  string
		extra time.Duration // Observation.Uncertainty
		want  time.Duration // Status().Uncertainty: rtt/2 + Precision/2 + extra
	}{
		{name: "none", extra: 0, want: rtt/2 + 500*time.Millisecond},
		{name: "bootstrap HTTPS Date", extra: httpsDateUncertainty, want: rtt/2 + 500*time.Millisecond + 2*time.Second},
		{name: "negative adds none", extra: -time.Hour, want: rtt/2 + 500*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w, f := newFake(t, 10*time.Minute, Config{})
			sent := c.Now()
			w.Advance(rtt)
			c.Observe(Observation{Source: "https-date:x", ServerTime: f.truth().Truncate(time.Second), Precision: time.Second, Uncertainty: tt.extra, Sent: sent, Received: c.Now()})
			st := c.Status()
			// The drift allowance of the sample's 10 ms age adds 150 ns.
			if !st.Synced || absDur(st.Uncertainty-tt.want) > time.Microsecond {
				t.Fatalf("Status = %+v, want synced with uncertainty %v", st, tt.want)
			}
			if err := c.Now().Sub(f.truth()); absDur(err) > st.Uncertainty {
				t.Fatalf("Now() - truth = %v, beyond the reported uncertainty %v", err, st.Uncertainty)
			}
		})
	}
}

func TestNTPReplacesBootstrapObservation(t *testing.T) {
	tests := []struct {
		name string
		// bootstrapErr is the bootstrap Date minus true time (within its
		// 2 s uncertainty).
		bootstrapErr time.Duration
		// run polls through Run instead of calling queryOnce.
		run bool
	}{
		{name: "exact bootstrap, one query", bootstrapErr: 0},
		{name: "bootstrap 1.5 s behind, one query", bootstrapErr: -1500 * time.Millisecond},
		{name: "bootstrap 1.5 s ahead, polling Run", bootstrapErr: 1500 * time.Millisecond, run: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The host is ten years behind; NTP does not answer at first.
			c, w, f := newFake(t, -10*365*24*time.Hour, Config{BurstSamples: 1, BurstGap: time.Millisecond, MinPoll: 50 * time.Millisecond})
			var fail atomic.Bool
			fail.Store(true)
			f.answer = func(string, int, *ntp.Response) error {
				if fail.Load() {
					return errors.New("read udp: i/o timeout")
				}
				return nil
			}
			if tt.run {
				startRun(t, c)
			} else if ok, _ := c.queryOnce(context.Background(), c.sources[0]); ok {
				t.Fatal("setup: NTP answered")
			}

			sent := c.Now()
			w.Advance(30 * time.Millisecond)
			c.Observe(Observation{Source: "https-date:sts.amazonaws.com", ServerTime: f.truth().Add(tt.bootstrapErr).Truncate(time.Second),
				Precision: time.Second, Uncertainty: httpsDateUncertainty, Sent: sent, Received: c.Now()})
			st := c.Status()
			if !st.Synced || !st.Passive || st.Source != "https-date:sts.amazonaws.com" {
				t.Fatalf("Status after the bootstrap = %+v, want synced to it", st)
			}
			if err := c.Now().Sub(f.truth()); absDur(err) > st.Uncertainty {
				t.Fatalf("bootstrap: Now() - truth = %v beyond its uncertainty %v", err, st.Uncertainty)
			}

			fail.Store(false)
			if tt.run {
				eventually(t, 10*time.Second, "NTP to replace the bootstrap", func() bool {
					return c.Status().Source == "ntp://127.0.0.1:1123"
				})
			} else if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
				t.Fatalf("NTP answer refused: %+v", c.Status())
			}
			st = c.Status()
			if !st.Synced || st.Passive || st.Source != "ntp://127.0.0.1:1123" || st.Uncertainty > 10*time.Millisecond {
				t.Fatalf("Status after NTP answered = %+v, want NTP with millisecond uncertainty", st)
			}
			if got := c.Now(); !got.Equal(f.truth()) {
				t.Fatalf("Now() off true time by %v after NTP answered", got.Sub(f.truth()))
			}
		})
	}
}
