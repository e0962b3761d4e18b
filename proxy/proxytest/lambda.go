package proxytest

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// FunctionBehavior is how a fake Lambda function answers.
type FunctionBehavior struct {
	// Delay is how long an invocation runs before it answers (or, with
	// Stream, between the first part of the answer and the rest).
	Delay time.Duration
	// ReservedConcurrency, when > 0, is how many invocations may run at
	// once; beyond it the fake answers 429 TooManyRequestsException with
	// Reason ReservedFunctionConcurrentInvocationLimitExceeded.
	ReservedConcurrency int
	// Stream sends the answer in two parts: the first half of the payload
	// at once (flushed), the rest after Delay. For Invoke the body is
	// chunked; for InvokeWithResponseStream each part is a PayloadChunk
	// event. Without Stream the whole answer comes after Delay.
	Stream bool
	// Response, when non-nil, is the payload answered instead of an echo of
	// the request payload.
	Response []byte
	// FunctionError, when set, is sent as X-Amz-Function-Error (e.g.
	// "Unhandled") with status 200, as Lambda reports a function's error.
	FunctionError string
}

// The Lambda REST paths.
const (
	lambdaInvokePrefix = "/2015-03-31/functions/"
	lambdaInvokeSuffix = "/invocations"
	lambdaStreamPrefix = "/2021-11-15/functions/"
	lambdaStreamSuffix = "/response-streaming-invocations"
)

// serveLambda answers a Lambda request whose signature checked out and
// returns the operation and function name.
func (a *AWS) serveLambda(w http.ResponseWriter, r *http.Request, body []byte, reqID string) (op, fn string) {
	if id, ok := functionURLID(r.Host); ok {
		// A function URL: any method and path invokes the function
		// named by the URL id, answered like Invoke (the payload echoed).
		op, fn = "InvokeFunctionUrl", id
	} else if r.Method == http.MethodPost {
		if seg, ok := functionSegment(r.URL.Path, lambdaInvokePrefix, lambdaInvokeSuffix); ok {
			op, fn = "Invoke", functionName(seg)
		} else if seg, ok := functionSegment(r.URL.Path, lambdaStreamPrefix, lambdaStreamSuffix); ok {
			op, fn = "InvokeWithResponseStream", functionName(seg)
		}
	}
	if op == "" {
		awsError{status: 400, code: "UnknownOperationException", message: "Unknown operation"}.write(w, protoJSON, reqID)
		return "", ""
	}
	a.mu.Lock()
	b := a.functions[fn]
	a.mu.Unlock()

	switch r.Header.Get("X-Amz-Invocation-Type") {
	case "Event":
		w.WriteHeader(http.StatusAccepted)
		return op, fn
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
		return op, fn
	}
	release, reason := a.admit(fn, b.ReservedConcurrency)
	if release == nil {
		awsError{status: 429, code: "TooManyRequestsException", message: "Rate Exceeded.",
			jsonExtra: map[string]string{"Reason": reason, "Type": "User"}}.write(w, protoJSON, reqID)
		return op, fn
	}
	// The invocation ends when the function has run, just before its last
	// bytes are written: freed after the write, a client that had the
	// whole answer could send its next invoke before the fake counted
	// this one done, and be throttled for it on a loaded machine.
	var once sync.Once
	done := func() { once.Do(release) }
	defer done()

	payload := body
	if b.Response != nil {
		payload = b.Response
	}
	first, rest := payload, []byte(nil)
	if b.Stream {
		half := (len(payload) + 1) / 2
		first, rest = payload[:half], payload[half:]
	}
	ctx := r.Context()
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	if b.FunctionError != "" {
		w.Header().Set("X-Amz-Function-Error", b.FunctionError)
	}
	if op == "Invoke" || op == "InvokeFunctionUrl" {
		w.Header().Set("Content-Type", "application/json")
		if !b.Stream {
			if !sleep(ctx, b.Delay) {
				return op, fn
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			done()
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(first)
		flush(w)
		if b.Stream && sleep(ctx, b.Delay) {
			done()
			_, _ = w.Write(rest)
		}
		return op, fn
	}

	// InvokeWithResponseStream: event-stream framing.
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	if !b.Stream && !sleep(ctx, b.Delay) {
		return op, fn
	}
	w.WriteHeader(http.StatusOK)
	enc := eventstream.NewEncoder()
	send := func(eventType, contentType string, data []byte) {
		var h eventstream.Headers
		h.Set(":message-type", eventstream.StringValue("event"))
		h.Set(":event-type", eventstream.StringValue(eventType))
		h.Set(":content-type", eventstream.StringValue(contentType))
		_ = enc.Encode(w, eventstream.Message{Headers: h, Payload: data})
		flush(w)
	}
	send("PayloadChunk", "application/octet-stream", first)
	if b.Stream {
		if !sleep(ctx, b.Delay) {
			return op, fn
		}
		if len(rest) > 0 {
			send("PayloadChunk", "application/octet-stream", rest)
		}
	}
	complete := `{"ErrorCode":"` + b.FunctionError + `","ErrorDetails":"","LogResult":""}`
	done()
	send("InvokeComplete", "application/json", []byte(complete))
	return op, fn
}

// admit counts an invocation of fn in, or refuses it (release == nil) with
// the Lambda throttling reason.
func (a *AWS) admit(fn string, reserved int) (release func(), reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if reserved > 0 && a.inflight[fn] >= reserved {
		a.stats.Throttled++
		return nil, "ReservedFunctionConcurrentInvocationLimitExceeded"
	}
	if a.opts.AccountConcurrency > 0 && a.total >= a.opts.AccountConcurrency {
		a.stats.Throttled++
		return nil, "ConcurrentInvocationLimitExceeded"
	}
	a.inflight[fn]++
	a.total++
	a.stats.MaxInFlight[fn] = max(a.stats.MaxInFlight[fn], a.inflight[fn])
	a.stats.MaxInFlightTotal = max(a.stats.MaxInFlightTotal, a.total)
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.inflight[fn]--
		a.total--
	}, ""
}

// functionSegment returns the FunctionName path parameter between prefix
// and suffix: one non-empty path segment. The prefix and suffix must not
// overlap ("/2015-03-31/functions/invocations" names no function).
func functionSegment(path, prefix, suffix string) (string, bool) {
	if len(path) <= len(prefix)+len(suffix) || !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, suffix) {
		return "", false
	}
	seg := path[len(prefix) : len(path)-len(suffix)]
	return seg, !strings.Contains(seg, "/")
}

// functionName reduces a name, partial ARN or ARN (with or without a
// qualifier) to the function name.
func functionName(s string) string {
	if _, after, ok := strings.Cut(s, ":function:"); ok {
		s = after
	}
	name, _, _ := strings.Cut(s, ":")
	return name
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// functionURLID is the URL id of a function URL host
// (URL-ID.lambda-url.REGION.on.aws), the key of its FunctionBehavior.
func functionURLID(host string) (string, bool) {
	h := strings.ToLower(host)
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	id, rest, ok := strings.Cut(h, ".lambda-url.")
	if !ok || id == "" || !strings.HasSuffix(rest, ".on.aws") {
		return "", false
	}
	return id, true
}
