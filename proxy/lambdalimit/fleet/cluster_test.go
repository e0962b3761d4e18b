package fleet

import (
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet/fleettest"
)

// TestFleetCluster: on a three-node Redis Cluster every script runs (its
// keys share one hash slot), functions spread over the nodes, and the
// per-function and all-functions limits hold across two proxies.
func TestFleetCluster(t *testing.T) {
	start := time.Now()
	cl := fleettest.StartCluster(t)
	t.Logf("cluster of 3 up in %v", time.Since(start).Round(time.Millisecond))
	cfg := Config{
		URL:                 cl.URL(),
		Namespace:           "cluster",
		MaxInflight:         5,
		FunctionMaxInflight: map[string]int{"a": 2, "b": 2, "c": 2},
		LeaseTTL:            time.Second,
		Timeout:             500 * time.Millisecond,
		PollInterval:        50 * time.Millisecond,
		ProbeInterval:       100 * time.Millisecond,
		Clock:               time.Now,
	}
	p, q := newCoordinator(t, cfg), newCoordinator(t, cfg)
	if p.Mode() != lambdalimit.ModeShared {
		t.Fatalf("mode %v on the cluster: %s", p.Mode(), p.Detail())
	}
	var held []lambdalimit.Lease
	for i, fn := range []string{"a", "a", "b", "b", "c"} {
		held = append(held, mustAcquire(t, []*Coordinator{p, q}[i%2], fn))
	}
	for _, tc := range []struct {
		c  *Coordinator
		fn string
	}{{p, "a"}, {q, "c"}} {
		if l, err := acquire(t, tc.c, tc.fn, 150*time.Millisecond); err == nil {
			l.Release(0, nil)
			t.Fatalf("a slot of %s beyond the limits", tc.fn)
		}
	}
	ok200(held[0]) // frees one of a's and one of all
	l := mustAcquire(t, q, "a")
	ok200(l)
	for _, l := range held[1:] {
		ok200(l)
	}
	eventually(t, 2*time.Second, "leases released", func() bool { return p.Status().Leases == 0 && q.Status().Leases == 0 })
	if p.Mode() != lambdalimit.ModeShared || q.Mode() != lambdalimit.ModeShared {
		t.Errorf("modes %v %v after the run (%s)", p.Mode(), q.Mode(), p.Detail())
	}
}
