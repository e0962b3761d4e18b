// Package lambdalimit holds Lambda invoke requests in the proxy until they
// may go upstream, so that a burst waits here, unsigned, instead of in the
// SDK where a queued request's signature ages and dies.
//
// A [Limiter] recognises Invoke and InvokeWithResponseStream requests
// ([Recognize]), keeps one FIFO queue per function, admits round-robin
// across functions when a slot frees (one flooding function cannot starve a
// trickle), enforces a total and a per-function in-flight limit, answers
// requests that waited too long or found the queue full with Lambda's own
// 429 TooManyRequestsException ([Throttle]), and adapts each function's
// effective limit to Lambda's own throttles (multiplicative decrease on a
// 429, additive increase on success, Retry-After honoured).
//
// With a [Coordinator] (Config.Coordinator; package lambdalimit/fleet keeps
// one in Redis) the limits are fleet-wide: an invoke still waits here, in
// the local queue, and then for a fleet-wide slot, oldest arrival first
// across the proxies; when the coordinator cannot be reached the Limiter
// keeps its share of the limits, ceil(limit / fleet size), or refuses.
//
// *Limiter satisfies proxy.Admitter structurally and *Throttle satisfies
// proxy.Refusal; this package does not import package proxy.
//
// It is not a rate limiter for other AWS services, it does not sign or send
// anything, and it does not know about sockets: the proxy calls Admit before
// it signs a request and calls the returned release once the upstream
// exchange is over.
package lambdalimit
