package main

// Lambda admission across functions through the real binary: one noisy
// function does not starve the others, and each function has its own queue.

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// TestLambdaE2EFairness: function "flood" sends 100 invokes at once and
// function "trickle" one every 200 ms, sharing a single slot
// (--lambda-max-inflight 1). The trickle's invokes are admitted in turn
// (round-robin across functions), not behind the whole flood.
func TestLambdaE2EFairness(t *testing.T) {
	const (
		flood   = "flood"
		trickle = "trickle"
		nFlood  = 100
		nTrick  = 5
		delay   = 50 * time.Millisecond
	)
	_, p := lambdaE2EStart(t, proxytest.AWSOptions{
		Functions: map[string]proxytest.FunctionBehavior{flood: {Delay: delay}, trickle: {Delay: delay}},
	}, "", "--lambda-max-inflight", "1")
	floodClient := lambdaE2EClient(p, nFlood)
	trickleClient := lambdaE2EClient(p, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// One connection for the trickle, set up before the flood.
	if _, err := lambdaE2EInvoke(ctx, trickleClient, trickle); err != nil {
		t.Fatalf("warm-up invoke: %v", err)
	}

	type floodResult struct {
		errs []error
		took time.Duration
	}
	floodDone := make(chan floodResult, 1)
	go func() {
		errs, took := lambdaE2EBurst(ctx, floodClient, flood, nFlood)
		floodDone <- floodResult{errs, took}
	}()
	lambdaE2EWaitStatus(t, p, 20*time.Second, "the flood queued", func(s lambdaE2EStatus) bool { return s.Functions[flood].Queued >= nFlood/2 })

	var worst time.Duration
	var waits []time.Duration
	for i := range nTrick {
		took, err := lambdaE2EInvoke(ctx, trickleClient, trickle)
		if err != nil {
			t.Fatalf("trickle invoke %d: %v", i, err)
		}
		waits = append(waits, took.Round(time.Millisecond))
		worst = max(worst, took)
		time.Sleep(200 * time.Millisecond)
	}
	st, err := lambdaE2EGetStatus(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	stillQueued := st.Functions[flood].Queued

	fr := <-floodDone
	for i, err := range fr.errs {
		if err != nil {
			t.Fatalf("flood invoke %d: %v", i, err)
		}
	}
	t.Logf("flood: %d invokes in %v; trickle latencies %v (worst %v); flood still queued after the trickle: %d",
		nFlood, fr.took.Round(time.Millisecond), waits, worst.Round(time.Millisecond), stillQueued)
	if stillQueued == 0 {
		t.Error("the flood had drained before the trickle ended: the test proves nothing")
	}
	if fr.took < nFlood*delay {
		t.Errorf("flood took %v with one slot, less than %v", fr.took, nFlood*delay)
	}
	// Round-robin: a trickle invoke waits for at most the flood invoke in
	// flight, then runs: a few delays, not the flood's seconds.
	if bound := min(time.Second, fr.took/5); worst > bound {
		t.Errorf("worst trickle invoke took %v, want under %v (flood total %v)", worst, bound, fr.took)
	}
}

// TestLambdaE2EOneQueuePerFunction: with --lambda-function-max-inflight
// slow=1, an invoke of the same function by full ARN with a qualifier waits
// behind an invoke by bare name (one function, one queue), while an Event
// invoke of it and an invoke of another function pass at once.
func TestLambdaE2EOneQueuePerFunction(t *testing.T) {
	const (
		fn    = "slow"
		arn   = "arn:aws:lambda:us-east-1:" + proxytest.AccountID + ":function:slow:prod"
		delay = 1500 * time.Millisecond
	)
	fake, p := lambdaE2EStart(t, proxytest.AWSOptions{
		Functions: map[string]proxytest.FunctionBehavior{fn: {Delay: delay}},
	}, "", "--lambda-function-max-inflight", "slow=1")
	c := lambdaE2EClient(p, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	byName := make(chan error, 1)
	go func() { _, err := lambdaE2EInvoke(ctx, c, fn); byName <- err }()
	lambdaE2EWaitStatus(t, p, 10*time.Second, "invoke by name in flight", func(s lambdaE2EStatus) bool { return s.Functions[fn].Inflight == 1 })

	type timed struct {
		took time.Duration
		err  error
	}
	byARN := make(chan timed, 1)
	go func() { took, err := lambdaE2EInvoke(ctx, c, arn); byARN <- timed{took, err} }()
	st := lambdaE2EWaitStatus(t, p, 10*time.Second, "invoke by ARN queued under the function's name", func(s lambdaE2EStatus) bool { return s.Functions[fn].Queued == 1 })
	if len(st.Functions) != 1 {
		t.Errorf("/status functions = %+v, want only %q", st.Functions, fn)
	}

	start := time.Now()
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
	if err != nil {
		t.Fatalf("Event invoke: %v", err)
	}
	if took := time.Since(start); out.StatusCode != http.StatusAccepted || took > delay/2 {
		t.Errorf("Event invoke: status %d after %v, want 202 at once (not held)", out.StatusCode, took)
	}
	if took, err := lambdaE2EInvoke(ctx, c, "other"); err != nil || took > delay/2 {
		t.Errorf("invoke of another function: %v after %v, want success at once", err, took)
	}

	if err := <-byName; err != nil {
		t.Fatalf("invoke by name: %v", err)
	}
	r := <-byARN
	if r.err != nil {
		t.Fatalf("invoke by ARN: %v", r.err)
	}
	t.Logf("invoke by ARN took %v behind the one by name (function delay %v)", r.took.Round(time.Millisecond), delay)
	if r.took < delay*3/2 {
		t.Errorf("invoke by ARN took %v: it did not wait for the one by name", r.took)
	}
	if got := fake.Stats().MaxInFlight[fn]; got != 1 {
		t.Errorf("fake max in flight of %s = %d, want 1", fn, got)
	}
}
