package fleet

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet/fleettest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a Config with short times, for redis r, in a namespace of
// its own.
func testConfig(t testing.TB, r *fleettest.Redis) Config {
	return Config{
		URL:           r.URL(),
		Namespace:     "test/" + strings.ReplaceAll(t.Name(), "/", "_"),
		LeaseTTL:      time.Second,
		Timeout:       200 * time.Millisecond,
		PollInterval:  50 * time.Millisecond,
		ProbeInterval: 100 * time.Millisecond,
		Clock:         time.Now,
	}
}

// newCoordinator starts a coordinator closed by t.Cleanup.
func newCoordinator(t testing.TB, cfg Config) *Coordinator {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// acquire takes a slot of fn with ticket now, bounded by d.
func acquire(t testing.TB, c *Coordinator, fn string, d time.Duration) (lambdalimit.Lease, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Acquire(ctx, fn, time.Now())
}

// mustAcquire fails the test unless a shared slot comes within 5 s.
func mustAcquire(t testing.TB, c *Coordinator, fn string) lambdalimit.Lease {
	t.Helper()
	l, err := acquire(t, c, fn, 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", fn, err)
	}
	if !l.Shared() {
		t.Fatalf("Acquire(%s): local lease in mode %v", fn, c.Mode())
	}
	return l
}

// eventually polls cond every 10 ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ok200(l lambdalimit.Lease) { l.Release(http.StatusOK, http.Header{}) }

func throttled(retryAfter string) http.Header {
	h := http.Header{"X-Amzn-Errortype": {"TooManyRequestsException"}}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return h
}
