// Package signer re-signs AWS requests: it parses the client's SigV4
// Authorization header or presigned query, derives the credential scope,
// decides the payload hash, re-signs with the proxy's credentials at a time
// handed in by the caller, rewrites aws-chunked bodies and presigns URLs.
// What an AWS error answer means (its failure class, the server time it
// quotes, the advice of `skewproxy explain`) is sub-package awserrors.
//
// It knows nothing of sockets, listeners or the proxy's goroutines, and it
// never reads the wall clock to sign: the signing time is always an argument.
//
// # Two header signers
//
// aws-sdk-go-v2's aws/signer/v4 is the reference implementation, and the
// only signer for presigned URLs (Presign). For re-signing requests in the
// proxy's hot path it costs about 59 allocations and most of the time of a
// re-sign on its own, so Sign uses the package's own SigV4 header signer
// (fastsign.go): Prepare builds the time-independent part of the canonical
// request once; Sign adds X-Amz-Date and the session token, hashes it in a
// pooled buffer, takes the derived key from a bounded cache keyed without
// allocation, computes the HMAC on the stack and writes Authorization and
// X-Amz-Date as one string. Prepare plus Sign of a Lambda Invoke or an S3
// GetObject costs 10 to 12 allocations in all, against more than 100
// before.
//
// The fast signer is trusted because the tests prove it produces what the
// SDK signer produces, byte for byte on the wire: on every request of the
// AWS SigV4 test suite (with and without session tokens), on STS, Lambda
// and S3 requests captured from the real SDK clients, on thousands of
// random requests (a property test) and under a fuzz target. Requests it
// does not reproduce exactly (one header name under two spellings, a path
// that does not start with '/', a host holding '/' or '?', a year outside
// 0000-9999) go to the SDK signer. Options.UseSDKSigner sends every
// request through the SDK signer.
//
// # S3 Express One Zone
//
// CreateSession is signed with the proxy's credentials like any request;
// Prepared.ObserveAnswer keeps the session credentials of its answer in a
// bounded in-memory store, and requests carrying that session's
// x-amz-s3session-token are then signed with them (signing name
// s3express, no x-amz-security-token) until the session expires by the
// signing time. Requests with a token the signer does not hold are passed
// through with the client's own signature (express.go).
package signer
