package timesource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// newFake returns a corrected clock on a fake wall clock whose host reading
// is hostSkew ahead of the fake NTP server's true time.
func newFake(t *testing.T, hostSkew time.Duration, cfg Config) (*Corrected, *fakeWall, *fakeNTP) {
	t.Helper()
	truth := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w := newFakeWall(truth.Add(hostSkew))
	f := newFakeNTP(w, truth)
	cfg.Wall = w
	cfg.Query = f.Query
	if cfg.Sources == nil {
		cfg.Sources = []string{"ntp://127.0.0.1:1123"}
	}
	return New(cfg), w, f
}

func TestUnsyncedFollowsHostClockWithOffset(t *testing.T) {
	c, w, _ := newFake(t, 0, Config{HostOffset: -20 * time.Minute})
	if got, want := c.Now(), w.Now().Add(-20*time.Minute); !got.Equal(want) {
		t.Fatalf("Now() = %v, want host+offset %v", got, want)
	}
	st := c.Status()
	if st.Synced || st.Source != "host" || st.Offset != 0 {
		t.Fatalf("Status = %+v, want unsynced host clock with zero offset", st)
	}
	if !strings.Contains(st.Reason, "no time source has answered yet: ntp://127.0.0.1:1123: no answer yet") {
		t.Fatalf("Reason = %q", st.Reason)
	}
	select {
	case <-c.Ready():
		t.Fatal("Ready closed before any answer")
	default:
	}
}

func TestNTPSampleSetsClock(t *testing.T) {
	const skew = 3 * time.Hour
	c, w, f := newFake(t, skew, Config{})
	ok, _ := c.queryOnce(context.Background(), c.sources[0])
	if !ok {
		t.Fatalf("sample refused: %+v", c.Status())
	}
	st := c.Status()
	if !st.Synced || st.Source != "ntp://127.0.0.1:1123" || st.Reason != "" || st.Passive {
		t.Fatalf("Status = %+v, want synced to the NTP source", st)
	}
	if !c.Now().Equal(f.truth()) {
		t.Fatalf("Now() = %v, want true time %v", c.Now(), f.truth())
	}
	if st.Offset != skew {
		t.Fatalf("Offset = %v, want %v", st.Offset, skew)
	}
	// RTT/2 + RootDelay/2 + RootDispersion = 1 + 0.5 + 1 ms.
	if want := 2500 * time.Microsecond; st.Uncertainty != want {
		t.Fatalf("Uncertainty = %v, want %v", st.Uncertainty, want)
	}
	w.Advance(1000 * time.Second) // drift allowance: 15 ppm of 1000 s = 15 ms
	st = c.Status()
	if want := 2500*time.Microsecond + 15*time.Millisecond; st.Uncertainty != want {
		t.Fatalf("Uncertainty after 1000 s = %v, want %v", st.Uncertainty, want)
	}
	if !c.Now().Equal(f.truth()) {
		t.Fatalf("Now() after 1000 s = %v, want %v", c.Now(), f.truth())
	}
	select {
	case <-c.Ready():
	default:
		t.Fatal("Ready not closed after a sample")
	}
}

func TestInvalidAnswersAreIgnored(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(r *ntp.Response) error
		wantErr string
	}{
		{name: "kiss code RATE", edit: func(r *ntp.Response) error { r.Stratum, r.KissCode = 0, "RATE"; return nil }, wantErr: "kiss of death"},
		{name: "stratum 0", edit: func(r *ntp.Response) error { r.Stratum = 0; return nil }, wantErr: "kiss of death"},
		{name: "stratum 16", edit: func(r *ntp.Response) error { r.Stratum = 16; return nil }, wantErr: "unusable stratum 16"},
		{name: "leap unsynchronized", edit: func(r *ntp.Response) error { r.Leap = ntp.LeapNotInSync; return nil }, wantErr: "not synchronized"},
		{name: "root dispersion beyond 16 s (Validate)", edit: func(r *ntp.Response) error { r.RootDispersion = 17 * time.Second; return nil }, wantErr: "invalid answer"},
		{name: "stale reference time (Validate)", edit: func(r *ntp.Response) error { r.ReferenceTime = r.Time.Add(-48 * time.Hour); return nil }, wantErr: "invalid answer"},
		{name: "transmit before reference (Validate)", edit: func(r *ntp.Response) error { r.ReferenceTime = r.Time.Add(time.Hour); return nil }, wantErr: "invalid answer"},
		{name: "negative round trip", edit: func(r *ntp.Response) error { r.RTT = -time.Millisecond; return nil }, wantErr: "negative"},
		{name: "network error", edit: func(*ntp.Response) error { return errors.New("read udp: i/o timeout") }, wantErr: "i/o timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, f := newFake(t, time.Hour, Config{})
			f.answer = func(_ string, _ int, r *ntp.Response) error {
				r.ClockOffset += 5 * time.Minute // a refused answer must not move the clock
				return tt.edit(r)
			}
			before := c.Now()
			if ok, _ := c.queryOnce(context.Background(), c.sources[0]); ok {
				t.Fatal("answer accepted")
			}
			st := c.Status()
			if st.Synced || st.Source != "host" {
				t.Fatalf("Status = %+v, want still unsynced", st)
			}
			if !strings.Contains(st.Reason, "ntp://127.0.0.1:1123: ") || !strings.Contains(st.Reason, tt.wantErr) {
				t.Fatalf("Reason = %q, want it to name the source and %q", st.Reason, tt.wantErr)
			}
			if got := c.Now(); !got.Equal(before) {
				t.Fatalf("Now moved from %v to %v", before, got)
			}
			if n := c.counts["ntp://127.0.0.1:1123"].rejected; n != 1 {
				t.Fatalf("rejected = %d, want 1", n)
			}
		})
	}
}

func TestClockFilterPicksMinimumDelaySample(t *testing.T) {
	// Each answer's offset error is tied to its delay: only the minimum-delay
	// answer carries the true time.
	rtts := []time.Duration{40, 25, 3, 30, 12, 50}
	c, w, f := newFake(t, 0, Config{})
	f.answer = func(_ string, n int, r *ntp.Response) error {
		r.RTT = rtts[n%len(rtts)] * time.Millisecond
		if r.RTT != 3*time.Millisecond {
			r.ClockOffset += r.RTT // asymmetric paths: error grows with delay
		}
		return nil
	}
	for i := range rtts {
		if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
			t.Fatalf("sample %d refused", i)
		}
		w.Advance(time.Second)
	}
	if got := c.Now(); !got.Equal(f.truth()) {
		t.Fatalf("Now() off true time by %v, want the minimum-delay sample (0)", got.Sub(f.truth()))
	}
	if got, want := c.Status().Uncertainty, 1500*time.Microsecond+500*time.Microsecond+time.Millisecond+time.Duration(float64(4*time.Second)*15e-6); got != want {
		t.Fatalf("Uncertainty = %v, want %v (3 ms sample, 4 s old)", got, want)
	}
	// Eight more high-delay samples push the 3 ms sample out of the filter.
	f.answer = func(_ string, _ int, r *ntp.Response) error {
		r.RTT = 20 * time.Millisecond
		r.ClockOffset += 7 * time.Millisecond
		return nil
	}
	for range filterSize {
		c.queryOnce(context.Background(), c.sources[0])
	}
	if got := c.Now().Sub(f.truth()); got != 7*time.Millisecond {
		t.Fatalf("after the filter rolled over Now() is off by %v, want 7ms", got)
	}
}

func TestWallStepDoesNotMoveClock(t *testing.T) {
	tests := []struct {
		name string
		// disturb changes the fake clocks; wantOffset is Status().Offset
		// once the disturbance is absorbed.
		disturb    func(w *fakeWall)
		wantOffset time.Duration
	}{
		{name: "wall stepped forward 1h", disturb: func(w *fakeWall) { w.Step(time.Hour) }, wantOffset: time.Hour},
		{name: "wall stepped back 1h", disturb: func(w *fakeWall) { w.Step(-time.Hour) }, wantOffset: -time.Hour},
		{name: "monotonic gap (suspend counted by mono)", disturb: func(w *fakeWall) { w.Advance(time.Hour) }, wantOffset: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w, f := newFake(t, 0, Config{
				CheckInterval: 5 * time.Millisecond,
				MinPoll:       time.Hour, // only bursts query
				BurstSamples:  1,
			})
			startRun(t, c)
			waitReady(t, c, 2*time.Second)
			addr := "127.0.0.1:1123"
			calls := f.Calls(addr)
			before := c.Now()
			beforeMono := w.Mono()
			tt.disturb(w)
			moved := c.Now().Sub(before) - (w.Mono() - beforeMono)
			if u := c.Status().Uncertainty; absDur(moved) > u {
				t.Fatalf("Now moved %v beyond elapsed monotonic time; uncertainty %v", moved, u)
			}
			eventually(t, 2*time.Second, "a resample after the disturbance", func() bool {
				return c.Resamples() >= 1 && f.Calls(addr) > calls
			})
			eventually(t, 2*time.Second, "the fresh sample to be installed", func() bool {
				return c.Status().Uncertainty < 10*time.Millisecond
			})
			if got := c.Now(); !got.Equal(f.truth()) {
				t.Fatalf("Now() off true time by %v after resample", got.Sub(f.truth()))
			}
			if st := c.Status(); st.Offset != tt.wantOffset || !st.Synced {
				t.Fatalf("Status = %+v, want synced with offset %v", st, tt.wantOffset)
			}
		})
	}
}

func TestWallStepWidensUncertaintyUntilResampled(t *testing.T) {
	c, w, f := newFake(t, 0, Config{})
	if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
		t.Fatal("sample refused")
	}
	w.Step(-time.Hour)
	c.disturb(time.Hour, "test step")
	st := c.Status()
	if st.Uncertainty < time.Hour || !st.Synced {
		t.Fatalf("Status after a 1h step = %+v, want synced with uncertainty ≥ 1h", st)
	}
	if !c.Now().Equal(f.truth()) {
		t.Fatalf("Now() moved by the step: off by %v", c.Now().Sub(f.truth()))
	}
	if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
		t.Fatal("resample refused")
	}
	if st := c.Status(); st.Uncertainty >= 10*time.Millisecond || st.Offset != -time.Hour {
		t.Fatalf("Status after resample = %+v", st)
	}
}

func TestUnsyncedClockFollowsDetectedHostStep(t *testing.T) {
	c, w, _ := newFake(t, 0, Config{Sources: []string{}, CheckInterval: 5 * time.Millisecond})
	startRun(t, c)
	w.Step(-10 * time.Minute)
	eventually(t, 2*time.Second, "the unsynced clock to follow the host step", func() bool {
		return c.Now().Equal(w.Now())
	})
	if st := c.Status(); st.Synced || st.Reason == "" {
		t.Fatalf("Status = %+v, want unsynced with a reason", st)
	}
}

func TestPollSchedule(t *testing.T) {
	type q struct{ ok, stable bool }
	s := time.Second
	tests := []struct {
		name    string
		queries []q
		want    []time.Duration
	}{
		{name: "never answering backs off to min poll",
			queries: []q{{}, {}, {}, {}, {}, {}, {}},
			want:    []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 16 * s, 16 * s}},
		{name: "stable source doubles up to max poll",
			queries: []q{{true, false}, {true, true}, {true, true}, {true, true}, {true, true}},
			want:    []time.Duration{16 * s, 32 * s, 64 * s, 64 * s, 64 * s}},
		{name: "failure after answering drops to min poll",
			queries: []q{{true, true}, {true, true}, {false, false}, {true, true}},
			want:    []time.Duration{32 * s, 64 * s, 16 * s, 32 * s}},
		{name: "disagreeing answer drops to min poll",
			queries: []q{{true, true}, {true, true}, {true, false}},
			want:    []time.Duration{32 * s, 64 * s, 16 * s}},
		{name: "late first answer switches to polling",
			queries: []q{{}, {}, {true, false}, {true, true}},
			want:    []time.Duration{s, 2 * s, 16 * s, 32 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pollSchedule{min: 16 * s, max: 64 * s}
			for i, qq := range tt.queries {
				if got := p.next(qq.ok, qq.stable); got != tt.want[i] {
					t.Fatalf("query %d: wait %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
	t.Run("disturbance resets to min poll", func(t *testing.T) {
		p := pollSchedule{min: 16 * s, max: 64 * s}
		p.next(true, true)
		p.next(true, true)
		p.disturbed()
		if got := p.next(true, true); got != 32*s {
			t.Fatalf("after a disturbance: wait %v, want 32s (16s doubled once)", got)
		}
	})
}

func TestPollingContinuesAfterBurst(t *testing.T) {
	c, _, f := newFake(t, 0, Config{MinPoll: 10 * time.Millisecond, MaxPoll: 20 * time.Millisecond, BurstSamples: 2, BurstGap: time.Millisecond})
	startRun(t, c)
	waitReady(t, c, 2*time.Second)
	eventually(t, 5*time.Second, "regular polls after the burst", func() bool {
		return f.Calls("127.0.0.1:1123") >= 5
	})
}

func TestSmearedSwitchIsLogged(t *testing.T) {
	var logs logBuffer
	c, _, f := newFake(t, 0, Config{
		Sources: []string{"ntp://169.254.169.123", "ntp://127.0.0.1:1123"},
		Logger:  logs.Logger(),
	})
	f.answer = func(addr string, _ int, r *ntp.Response) error {
		if addr == "127.0.0.1:1123" {
			r.RTT = 200 * time.Microsecond
		} else {
			r.RTT = 10 * time.Millisecond
		}
		return nil
	}
	c.queryOnce(context.Background(), c.sources[0])
	if st := c.Status(); !st.Smeared || st.Source != "ntp://169.254.169.123" {
		t.Fatalf("Status = %+v, want smeared Amazon source", st)
	}
	c.queryOnce(context.Background(), c.sources[1])
	if st := c.Status(); st.Smeared || st.Source != "ntp://127.0.0.1:1123" {
		t.Fatalf("Status = %+v, want the lower-uncertainty unsmeared source", st)
	}
	if !strings.Contains(logs.String(), "switching between leap-smeared and unsmeared time") {
		t.Fatalf("switch not logged:\n%s", logs.String())
	}
}

func TestNowIsAllocationFree(t *testing.T) {
	c, _, _ := newFake(t, 0, Config{})
	c.queryOnce(context.Background(), c.sources[0])
	if n := testing.AllocsPerRun(1000, func() { _ = c.Now() }); n != 0 {
		t.Fatalf("Now allocates %v times per call", n)
	}
}

func BenchmarkNow(b *testing.B) {
	c := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Now()
	}
}

func BenchmarkNowParallel(b *testing.B) {
	c := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = c.Now()
		}
	})
}

func TestOnSampleReportsAcceptedRoundTrips(t *testing.T) {
	var got []time.Duration
	var sources []string
	var c *Corrected
	c, _, _ = newFake(t, time.Minute, Config{OnSample: func(source string, rtt time.Duration) {
		sources = append(sources, source)
		got = append(got, rtt)
		_ = c.Status() // called outside the lock: this must not deadlock
	}})
	if ok, _ := c.queryOnce(context.Background(), c.sources[0]); !ok {
		t.Fatalf("sample refused: %+v", c.Status())
	}
	if len(got) != 1 || got[0] != 2*time.Millisecond || sources[0] != "ntp://127.0.0.1:1123" {
		t.Fatalf("OnSample calls = %v %v, want one 2ms round trip from ntp://127.0.0.1:1123", sources, got)
	}
}
