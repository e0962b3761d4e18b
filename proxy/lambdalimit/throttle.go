package lambdalimit

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// Reason is the Reason field of the proxy's own TooManyRequestsException
// (Lambda's ThrottleReason carries its own reasons in the same field).
type Reason string

// The reasons for which the proxy itself refuses an invoke.
const (
	// ReasonQueueTimeout: the request waited longer than Config.QueueTimeout.
	ReasonQueueTimeout Reason = "SkewproxyQueueTimeout"
	// ReasonQueueFull: the queue already held Config.MaxQueue requests.
	ReasonQueueFull Reason = "SkewproxyQueueFull"
	// ReasonCoordinatorUnavailable: the fleet's coordinator could not be
	// reached and its fallback is closed.
	ReasonCoordinatorUnavailable Reason = "SkewproxyCoordinatorUnavailable"
)

// Throttle is the limiter's refusal of an invoke. It satisfies
// proxy.Refusal: Answer is what Lambda answers for a
// throttled invoke (HTTP 429, x-amzn-ErrorType TooManyRequestsException,
// Retry-After, a JSON body with Type, message and Reason), so the SDKs
// decode it as their TooManyRequestsException and retry it as a throttle.
type Throttle struct {
	// Reason says why the proxy refused.
	Reason Reason
	// Function is the queue key of the refused invoke.
	Function string
	// Waited is how long the request was held before the refusal.
	Waited time.Duration
	// RetryAfter is the advice sent in Retry-After (rounded up to whole
	// seconds, at least 1).
	RetryAfter time.Duration
}

// Error describes the refusal (no secrets: the function name and times only).
func (t *Throttle) Error() string {
	switch t.Reason {
	case ReasonQueueFull:
		return fmt.Sprintf("lambdalimit: queue full, invoke of %q refused", t.Function)
	case ReasonCoordinatorUnavailable:
		return fmt.Sprintf("lambdalimit: coordinator unavailable, invoke of %q refused", t.Function)
	default:
		return fmt.Sprintf("lambdalimit: invoke of %q waited %s in the queue, refused", t.Function, t.Waited.Round(time.Millisecond))
	}
}

// Failure is the skewproxy.failure class of the refusal: queue_timeout.
func (t *Throttle) Failure() awserrors.Failure { return awserrors.FailureQueueTimeout }

// retryAfterSeconds is the Retry-After value: whole seconds, at least 1.
func (t *Throttle) retryAfterSeconds() int64 {
	s := int64(math.Ceil(t.RetryAfter.Seconds()))
	return max(s, 1)
}

// throttleBody is Lambda's TooManyRequestsException body shape.
type throttleBody struct {
	Type    string `json:"Type"`
	Message string `json:"message"`
	Reason  Reason `json:"Reason"`
}

// Answer is the complete 429 answer to the client, as Lambda words it.
func (t *Throttle) Answer() (status int, h http.Header, body []byte) {
	var msg string
	switch t.Reason {
	case ReasonQueueFull:
		msg = "Rate exceeded: the skewproxy Lambda invoke queue is full; retry later"
	case ReasonCoordinatorUnavailable:
		msg = "Rate exceeded: skewproxy cannot reach the fleet's Lambda concurrency coordinator; retry later"
	default:
		msg = fmt.Sprintf("Rate exceeded: the invoke waited %s in the skewproxy queue without a free concurrency slot; retry later",
			t.Waited.Round(time.Second))
	}
	body, err := json.Marshal(throttleBody{Type: "User", Message: msg, Reason: t.Reason})
	if err != nil { // cannot happen with these field types
		body = []byte(`{"Type":"User","message":"Rate exceeded"}`)
	}
	h = http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Errortype", "TooManyRequestsException")
	h.Set("Retry-After", strconv.FormatInt(t.retryAfterSeconds(), 10))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return http.StatusTooManyRequests, h, body
}
