// Package signer re-signs AWS requests: it parses the client's SigV4
// Authorization header or presigned query, derives the credential scope,
// decides the payload hash, re-signs with the proxy's credentials at a time
// handed in by the caller, rewrites aws-chunked bodies, presigns URLs and
// classifies AWS error answers.
//
// It knows nothing of sockets, listeners or the proxy's goroutines, and it
// never reads the wall clock to sign: the signing time is always an argument.
package signer
