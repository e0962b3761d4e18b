package lambdalimit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestFairnessTrickleNotStarved: one function floods the queue with 200
// waiters while another sends one invoke every few milliseconds. In a single
// FIFO the trickle would wait behind the whole flood (queued flood × hold /
// slots); round-robin admission keeps its wait near one hold time.
func TestFairnessTrickleNotStarved(t *testing.T) {
	const (
		slots = 4
		flood = 200
		hold  = 5 * time.Millisecond
		bound = 100 * time.Millisecond
	)
	l := New(Config{MaxInflight: slots, QueueTimeout: 30 * time.Second})

	var floodWG sync.WaitGroup
	for range flood {
		floodWG.Add(1)
		go func() {
			defer floodWG.Done()
			rel, _, err := l.Admit(context.Background(), invokeReq("flood"))
			if err != nil {
				t.Errorf("flood: %v", err)
				return
			}
			time.Sleep(hold)
			ok200(rel)
		}()
	}
	eventually(t, "flood queued", func() bool { return l.Queued() >= flood-slots-10 })

	type sample struct {
		floodQueued int
		waited      time.Duration
	}
	var (
		mu      sync.Mutex
		samples []sample
		tWG     sync.WaitGroup
	)
	for l.Status().Functions["flood"].Queued > 0 {
		q := l.Status().Functions["flood"].Queued
		tWG.Add(1)
		go func() {
			defer tWG.Done()
			rel, waited, err := l.Admit(context.Background(), invokeReq("trickle"))
			if err != nil {
				t.Errorf("trickle: %v", err)
				return
			}
			mu.Lock()
			samples = append(samples, sample{q, waited})
			mu.Unlock()
			time.Sleep(hold)
			ok200(rel)
		}()
		time.Sleep(2 * hold)
	}
	floodWG.Wait()
	tWG.Wait()

	var deep, worst int
	var worstWait time.Duration
	for _, s := range samples {
		if s.floodQueued >= 100 { // FIFO would have held it >= 100*hold/slots = 125 ms
			deep++
		}
		if s.waited > worstWait {
			worstWait, worst = s.waited, s.floodQueued
		}
	}
	t.Logf("%d trickle invokes, %d behind >= 100 flood waiters; worst wait %v (flood queued %d)", len(samples), deep, worstWait, worst)
	if deep < 5 {
		t.Fatalf("only %d trickle invokes met a deep flood queue; the test proves nothing", deep)
	}
	if worstWait > bound {
		t.Errorf("trickle waited up to %v behind a flood, want <= %v", worstWait, bound)
	}
	if l.Inflight() != 0 || l.Queued() != 0 {
		t.Errorf("end: inflight %d queued %d", l.Inflight(), l.Queued())
	}
}
