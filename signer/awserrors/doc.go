// Package awserrors says what an AWS error answer means: which failure
// class it is (Failure: a clock skew, an expired presigned URL or token, a
// signature mismatch, a throttle), the server time and window it quotes
// (Classify, for the proxy's retry and its clock), and what a person should
// do about it (Explain, for `skewproxy explain`).
//
// It is not a signer and imports none: the proxy, the Lambda limiter and
// the explain command use it on their own.
package awserrors
