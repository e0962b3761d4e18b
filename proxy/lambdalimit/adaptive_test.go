package lambdalimit

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

func throttled() http.Header {
	return http.Header{"X-Amzn-Errortype": {"TooManyRequestsException"}, "Content-Type": {"application/json"}}
}

func effective(t *testing.T, l *Limiter, fn string) int {
	t.Helper()
	return l.Status().Functions[fn].EffectiveLimit
}

// admitN admits n invokes of fn that must all pass at once.
func admitN(t *testing.T, l *Limiter, fn string, n int) []func(int, http.Header) {
	t.Helper()
	rels := make([]func(int, http.Header), n)
	for i := range rels {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rel, waited, err := l.Admit(ctx, invokeReq(fn))
		cancel()
		if err != nil || waited != 0 {
			t.Fatalf("admission %d of %d for %s: waited %v, err %v", i+1, n, fn, waited, err)
		}
		rels[i] = rel
	}
	return rels
}

// mustQueue asserts that one more invoke of fn would not pass at once.
func mustQueue(t *testing.T, l *Limiter, fn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rel, _, err := l.Admit(ctx, invokeReq(fn))
	if err == nil {
		ok200(rel)
		t.Fatalf("an invoke of %s passed beyond its effective limit %d", fn, effective(t, l, fn))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context deadline", err)
	}
}

func TestAdaptiveDecreaseThenRecovery(t *testing.T) {
	l := New(Config{FunctionMaxInflight: map[string]int{"f": 8}, QueueTimeout: 10 * time.Second})
	rels := admitN(t, l, "f", 8)
	mustQueue(t, l, "f")

	rels[0](http.StatusTooManyRequests, throttled())
	if got := effective(t, l, "f"); got != 4 {
		t.Fatalf("after a 429 with 8 in flight: effective %d, want 4", got)
	}
	// The rest of the same window: no further halving.
	for _, rel := range rels[1:] {
		rel(http.StatusTooManyRequests, throttled())
	}
	if got := effective(t, l, "f"); got != 4 {
		t.Fatalf("after 8 throttles of one window: effective %d, want 4", got)
	}
	if st := l.Status().Functions["f"]; st.Limit != 8 || st.Inflight != 0 {
		t.Fatalf("status %+v", st)
	}

	// Additive recovery: one step per window of successes, up to the
	// configured limit and never beyond it.
	var steps []int
	for round := 0; round < 10 && len(steps) < 4; round++ {
		eff := effective(t, l, "f")
		rels := admitN(t, l, "f", eff)
		mustQueue(t, l, "f")
		for _, rel := range rels {
			ok200(rel)
		}
		steps = append(steps, effective(t, l, "f"))
	}
	want := []int{5, 6, 7, 8}
	for i := range want {
		if i >= len(steps) || steps[i] != want[i] {
			t.Fatalf("recovery steps %v, want %v", steps, want)
		}
	}
	rels = admitN(t, l, "f", 8)
	mustQueue(t, l, "f")
	for _, rel := range rels {
		ok200(rel)
	}
	if got := effective(t, l, "f"); got != 8 {
		t.Fatalf("after recovery effective %d, want the configured 8", got)
	}
}

func TestAdaptiveNextWindowDecreasesAgain(t *testing.T) {
	l := New(Config{FunctionMaxInflight: map[string]int{"f": 8}, QueueTimeout: 10 * time.Second})
	rels := admitN(t, l, "f", 8)
	rels[0](http.StatusTooManyRequests, throttled())
	for _, rel := range rels[1:] {
		rel(0, nil) // no answer: no change
	}
	rels = admitN(t, l, "f", 4) // admitted after the decrease
	rels[0](http.StatusTooManyRequests, throttled())
	if got := effective(t, l, "f"); got != 2 {
		t.Fatalf("second window throttle: effective %d, want 2", got)
	}
	for _, rel := range rels[1:] {
		rel(http.StatusTooManyRequests, throttled())
	}
	if got := effective(t, l, "f"); got != 2 {
		t.Fatalf("effective %d, want 2", got)
	}
	rels = admitN(t, l, "f", 2)
	rels[0](http.StatusTooManyRequests, throttled())
	rels[1](http.StatusTooManyRequests, throttled())
	rels = admitN(t, l, "f", 1)
	rels[0](http.StatusTooManyRequests, throttled())
	if got := effective(t, l, "f"); got != 1 {
		t.Fatalf("effective %d, want the floor 1", got)
	}
	mustQueueAfter(t, l, "f", 1)
}

// mustQueueAfter admits n of fn and asserts the next one queues.
func mustQueueAfter(t *testing.T, l *Limiter, fn string, n int) {
	t.Helper()
	rels := admitN(t, l, fn, n)
	mustQueue(t, l, fn)
	for _, rel := range rels {
		ok200(rel)
	}
}

func TestAdaptiveWithoutConfiguredLimit(t *testing.T) {
	l := New(Config{QueueTimeout: 10 * time.Second})
	rels := admitN(t, l, "u", 10)
	if got := effective(t, l, "u"); got != 0 {
		t.Fatalf("effective %d before any throttle, want 0 (unlimited)", got)
	}
	rels[0](http.StatusTooManyRequests, throttled())
	if got := effective(t, l, "u"); got != 5 {
		t.Fatalf("after a 429 with 10 in flight: effective %d, want 5", got)
	}
	for _, rel := range rels[1:] {
		ok200(rel)
	}
	var steps []int
	for round := 0; round < 20 && effective(t, l, "u") != 0; round++ {
		eff := effective(t, l, "u")
		mustQueueAfter(t, l, "u", eff)
		steps = append(steps, effective(t, l, "u"))
	}
	if got := effective(t, l, "u"); got != 0 {
		t.Fatalf("never returned to unlimited: steps %v", steps)
	}
	if last := steps[len(steps)-2]; last != 10 {
		t.Errorf("steps %v: want unlimited right after 10 (the peak)", steps)
	}
	if _, ok := l.Status().Functions["u"]; ok {
		t.Errorf("an idle recovered function stays in the status")
	}
	for _, rel := range admitN(t, l, "u", 30) {
		ok200(rel)
	}
}

func TestAdaptiveReadsOnlyThrottles(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		errType  string
		decrease bool
	}{
		{name: "too many requests", status: 429, errType: "TooManyRequestsException", decrease: true},
		{name: "with coral url", status: 429, errType: "TooManyRequestsException:http://internal.amazon.com/coral/com.amazonaws.lambda/", decrease: true},
		{name: "with namespace", status: 429, errType: "com.amazonaws.lambda#TooManyRequestsException", decrease: true},
		{name: "429 without type", status: 429},
		{name: "429 other type", status: 429, errType: "ThrottlingException"},
		{name: "type on a 400", status: 400, errType: "TooManyRequestsException"},
		{name: "service error", status: 500, errType: "ServiceException"},
		{name: "unavailable", status: 503},
		{name: "no answer", status: 0},
		{name: "success", status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Config{FunctionMaxInflight: map[string]int{"f": 4}})
			rels := admitN(t, l, "f", 4)
			h := http.Header{}
			if tc.errType != "" {
				h.Set("X-Amzn-ErrorType", tc.errType)
			}
			rels[0](tc.status, h)
			want := 4
			if tc.decrease {
				want = 2
			}
			if got := effective(t, l, "f"); got != want {
				t.Errorf("effective %d, want %d", got, want)
			}
			for _, rel := range rels[1:] {
				rel(0, nil)
			}
		})
	}
}

func TestRetryAfterPausesFunction(t *testing.T) {
	l := New(Config{QueueTimeout: 10 * time.Second})
	rels := admitN(t, l, "p", 2)
	h := throttled()
	h.Set("Retry-After", "1")
	rels[0](http.StatusTooManyRequests, h)
	rels[1](0, nil)
	st := l.Status().Functions["p"]
	if st.PausedUntil == nil || time.Until(*st.PausedUntil) <= 0 || time.Until(*st.PausedUntil) > time.Second {
		t.Fatalf("status after Retry-After: %+v", st)
	}
	ok200(admitN(t, l, "other", 1)[0]) // other functions are not paused

	var wg sync.WaitGroup
	waits := make([]time.Duration, 2)
	for i := range waits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, waited, err := l.Admit(context.Background(), invokeReq("p"))
			if err != nil {
				t.Errorf("paused waiter: %v", err)
				return
			}
			waits[i] = waited
			ok200(rel)
		}()
	}
	eventually(t, "both queued", func() bool { return l.Queued() == 2 })
	wg.Wait()
	for _, w := range waits {
		if w < 800*time.Millisecond || w > 3*time.Second {
			t.Errorf("waited %v during a 1 s Retry-After pause", w)
		}
	}
	if l.Status().Functions["p"].PausedUntil != nil {
		t.Errorf("still paused: %+v", l.Status().Functions["p"])
	}
}

func TestRetryAfterCappedByQueueTimeout(t *testing.T) {
	const qt = 150 * time.Millisecond
	l := New(Config{QueueTimeout: qt})
	rel := admitN(t, l, "p", 1)[0]
	h := throttled()
	h.Set("Retry-After", "3600")
	before := time.Now()
	rel(http.StatusTooManyRequests, h)
	st := l.Status().Functions["p"]
	if st.PausedUntil == nil || st.PausedUntil.Sub(before) > qt+50*time.Millisecond {
		t.Fatalf("pause %+v not capped at the queue timeout %v", st.PausedUntil, qt)
	}
	eventually(t, "pause over", func() bool { return l.Status().Functions["p"].PausedUntil == nil })
	ok200(admitN(t, l, "p", 1)[0])
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 10 ", 10 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"999999", 0},
		{"soon", 0},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second},
		{"Sun, 01 Mar 2026 11:59:00 GMT", 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, func() time.Time { return now }); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
