package timesource

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// fakeWall is a WallClock whose wall clock can be stepped both ways while
// its monotonic clock advances independently (tailscale tstest style).
type fakeWall struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func newFakeWall(start time.Time) *fakeWall { return &fakeWall{wall: start, mono: time.Hour} }

func (f *fakeWall) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

func (f *fakeWall) Mono() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Advance moves both clocks forward by d, as time passing does.
func (f *fakeWall) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
	f.mono += d
}

// Step moves only the wall clock, as settimeofday does.
func (f *fakeWall) Step(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
}

// AdvanceMono moves only the monotonic clock (a stall or a suspend on a
// system whose monotonic clock counts it while the wall is stepped back).
func (f *fakeWall) AdvanceMono(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono += d
}

// fakeNTP answers NTP queries for a true time that advances with the fake
// monotonic clock: truth(mono) = trueAtZero + mono.
type fakeNTP struct {
	wall       *fakeWall
	trueAtZero time.Time

	mu sync.Mutex
	// answer, when set, edits the answer to the n-th query (from 0) of an
	// address, or returns an error.
	answer func(addr string, n int, r *ntp.Response) error
	calls  map[string]int
}

func newFakeNTP(w *fakeWall, truth time.Time) *fakeNTP {
	return &fakeNTP{wall: w, trueAtZero: truth.Add(-w.Mono()), calls: map[string]int{}}
}

// truth is the true time now.
func (f *fakeNTP) truth() time.Time { return f.trueAtZero.Add(f.wall.Mono()) }

func (f *fakeNTP) Calls(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[addr]
}

func (f *fakeNTP) Query(ctx context.Context, addr string, opt ntp.QueryOptions) (*ntp.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	n := f.calls[addr]
	f.calls[addr]++
	answer := f.answer
	f.mu.Unlock()
	truth := f.truth()
	r := &ntp.Response{
		ClockOffset:    truth.Sub(opt.GetSystemTime()),
		RTT:            2 * time.Millisecond,
		Stratum:        3,
		Version:        4,
		RootDelay:      time.Millisecond,
		RootDispersion: time.Millisecond,
		ReferenceTime:  truth.Add(-30 * time.Second),
		Time:           truth,
		Precision:      time.Microsecond,
	}
	if answer != nil {
		if err := answer(addr, n, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// logBuffer is a concurrency-safe log sink for asserting on log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startRun runs c until the test ends and checks that Run returns.
func startRun(t *testing.T, c *Corrected) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
	})
}

// waitReady waits for c to sync or fails the test after d.
func waitReady(t *testing.T, c *Corrected, d time.Duration) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(d):
		t.Fatalf("not synced within %v: %+v", d, c.Status())
	}
}

// eventually polls cond every 5 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
