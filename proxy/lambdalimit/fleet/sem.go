package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

// globalSem names the all-functions semaphore in wait (no Lambda function
// is named "": Recognize requires a name).
const globalSem = ""

// sem is this proxy's side of one Redis semaphore: the local waiters for
// it, oldest ticket first, and whether a pump goroutine is asking Redis on
// their behalf. Only the oldest waiter is registered in Redis at a time;
// the pump grants in order, one round trip per grant. Guarded by
// Coordinator.mu, except wake.
type sem struct {
	name  string // function, or globalSem
	keys  semKeys
	limit int
	wake  chan struct{} // 1-buffered: a release happened, or the head changed

	waiting    []*contender
	pumping    bool
	registered string // waiter id registered in Redis, "" = none
}

// semStatus is what Redis said at the last attempt on a semaphore.
type semStatus struct {
	held, eff int64
	at        time.Time // corrected clock
}

func newSem(name string, keys semKeys, limit int) *sem {
	return &sem{name: name, keys: keys, limit: limit, wake: make(chan struct{}, 1)}
}

// poke wakes the pump without blocking.
func (s *sem) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// contender is one Acquire waiting for a semaphore.
type contender struct {
	id     string
	ticket int64 // corrected wall time of arrival, µs
	done   chan grant
}

// grant is the answer to a contender: a Redis slot (shared), a local one
// (fell back while waiting), or an error.
type grant struct {
	shared bool
	epoch  int64
	err    error
}

// insert puts ct among the waiters by ticket (then id) and reports whether
// it is now the head.
func (s *sem) insert(ct *contender) bool {
	i, _ := slices.BinarySearchFunc(s.waiting, ct, func(a, b *contender) int {
		if a.ticket != b.ticket {
			if a.ticket < b.ticket {
				return -1
			}
			return 1
		}
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	s.waiting = slices.Insert(s.waiting, i, ct)
	return i == 0
}

// remove takes ct out of the waiters; false if it is not there (granted).
func (s *sem) remove(ct *contender) bool {
	i := slices.Index(s.waiting, ct)
	if i < 0 {
		return false
	}
	s.waiting = slices.Delete(s.waiting, i, i+1)
	return true
}

// wait queues ct for the semaphore of fn (globalSem: all functions) and
// blocks until the pump answers or ctx ends. On ctx's end a slot granted
// in the meantime is given back.
func (c *Coordinator) wait(ctx context.Context, fn string, limit int, ct *contender) grant {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return grant{err: errStopped}
	}
	if c.Mode() != lambdalimit.ModeShared {
		c.mu.Unlock()
		return grant{}
	}
	s := c.gsem
	if fn != globalSem {
		if s = c.sems[fn]; s == nil {
			s = newSem(fn, c.fnKeys(fn), limit)
			c.sems[fn] = s
		}
	}
	head := s.insert(ct)
	if !s.pumping {
		s.pumping = true
		c.wg.Add(1)
		go c.pump(s)
	} else if head {
		s.poke() // register the older ticket now
	}
	c.mu.Unlock()

	select {
	case g := <-ct.done:
		return g
	case <-ctx.Done():
	}
	c.mu.Lock()
	if s.remove(ct) {
		s.poke() // the pump drops its registration
		c.mu.Unlock()
		return grant{err: fmt.Errorf("fleet: waiting for a slot of %q: %w", fn, context.Cause(ctx))}
	}
	c.mu.Unlock()
	if g := <-ct.done; g.err == nil && g.shared {
		c.giveBack(s, ct.id)
	}
	return grant{err: fmt.Errorf("fleet: waiting for a slot of %q: %w", fn, context.Cause(ctx))}
}

// giveBack releases a slot of s granted to a waiter that had left.
func (c *Coordinator) giveBack(s *sem, id string) {
	c.releaseShared(&lease{c: c, id: id, fn: s.keys, fnName: s.name, fnLimit: s.limit}, "-", 0, false)
}

// pump asks Redis for slots on behalf of s's waiters, oldest first, until
// none is left, the coordinator falls back, or it stops.
func (c *Coordinator) pump(s *sem) {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if c.stopped || c.Mode() != lambdalimit.ModeShared {
			g := grant{}
			if c.stopped {
				g.err = errStopped
			}
			for _, ct := range s.waiting {
				ct.done <- g
			}
			s.waiting, s.pumping, s.registered = nil, false, ""
			c.forget(s)
			c.mu.Unlock()
			return
		}
		if len(s.waiting) == 0 {
			reg := s.registered
			s.pumping, s.registered = false, ""
			c.forget(s)
			c.mu.Unlock()
			if reg != "" {
				if err := c.run(dropScript, "drop", []string{s.keys.waiters, s.keys.waitExp}, reg); err != nil {
					c.fallBack(err)
				}
			}
			return
		}
		head := s.waiting[0]
		drop := ""
		if s.registered != "" && s.registered != head.id {
			drop = s.registered
		}
		s.registered = head.id
		c.mu.Unlock()

		v, err := c.call(acquireScript, "acquire", s.keys.list(), head.id, head.ticket, s.limit,
			c.cfg.LeaseTTL.Milliseconds(), c.cfg.waitTTL.Milliseconds(), drop, c.cfg.keyTTL.Milliseconds())
		if err != nil {
			c.fallBack(err)
			continue
		}
		res, err := parseAcquire(v)
		if err != nil {
			c.fallBack(err)
			continue
		}
		c.mu.Lock()
		c.last[s.name] = semStatus{held: res.held, eff: res.eff, at: c.cfg.Clock()}
		if res.granted {
			s.registered = ""
			if s.remove(head) {
				head.done <- grant{shared: true, epoch: res.epoch}
				c.mu.Unlock()
			} else {
				c.mu.Unlock()
				c.giveBack(s, head.id) // it left while Redis granted
			}
			continue
		}
		c.mu.Unlock()
		d := c.cfg.PollInterval/2 + rand.N(c.cfg.PollInterval/2+1)
		if res.pause > 0 {
			d = res.pause + time.Millisecond
		}
		timer.Reset(d)
		select {
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		case <-c.stop:
		}
	}
}

// forget drops an idle function semaphore (caller holds c.mu).
func (c *Coordinator) forget(s *sem) {
	if s.name != globalSem && c.sems[s.name] == s && len(s.waiting) == 0 {
		delete(c.sems, s.name)
	}
}

// acquireResult is acquireScript's answer.
type acquireResult struct {
	granted   bool
	held, eff int64
	epoch     int64
	pause     time.Duration
}

func parseAcquire(v any) (acquireResult, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 5 {
		return acquireResult{}, fmt.Errorf("fleet: acquire script answered %T %v", v, v)
	}
	n := make([]int64, 5)
	for i, x := range a {
		if n[i], ok = x.(int64); !ok {
			return acquireResult{}, fmt.Errorf("fleet: acquire script answered %v", v)
		}
	}
	return acquireResult{granted: n[0] == 1, held: n[1], eff: n[2], epoch: n[3], pause: time.Duration(n[4]) * time.Millisecond}, nil
}
