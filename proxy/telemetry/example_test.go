package telemetry_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/proxy/telemetry"
	"github.com/skewproxy/skewproxy/signer/awserrors"
	"github.com/skewproxy/skewproxy/timesource"
)

// The proxy calls Start for each intercepted request and reports the
// request's progress to the returned observer; the span ends with End.
func ExampleNew() {
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(telemetry.Options{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		Clock:          timesource.NewHostClock(0),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Close()

	req := httptest.NewRequest("POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", nil)
	_, o := tel.Start(context.Background(), req)
	o.Classified(proxy.RequestInfo{Service: "lambda", Region: "us-east-1", Operation: "Invoke"})
	o.Queued()
	o.Dequeued(1200 * time.Millisecond)
	o.Signed(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
	o.End(429, nil, awserrors.Classification{Failure: awserrors.FailureThrottled}, nil)

	s := rec.Ended()[0]
	fmt.Println(s.Name(), s.Status().Code)
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case telemetry.KeyRPCService, telemetry.KeyQueueAgeMS, telemetry.KeyFailure, telemetry.KeyClockSource:
			fmt.Printf("%s=%v\n", kv.Key, kv.Value.String())
		}
	}
	// Output:
	// Lambda.Invoke Error
	// skewproxy.clock.source=host
	// rpc.service=Lambda
	// skewproxy.queue.age_ms=1200
	// skewproxy.failure=throttled
}
