package proxy

import (
	"context"
	"net"
	"sync/atomic"
)

// clientConn is what the proxy remembers about one client connection (the
// listener's, or the TLS connection inside an intercepted tunnel) across
// its requests.
type clientConn struct {
	// legacyLogged is set once a request on this connection was logged as
	// upgraded from a pre-SigV4 signature (logged once per connection).
	legacyLogged atomic.Bool
}

// clientConnKey carries the *clientConn in a request's context.
type clientConnKey struct{}

// withClientConn is an http.Server ConnContext: each connection gets its
// own clientConn.
func withClientConn(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, clientConnKey{}, &clientConn{})
}

// clientConnOf returns the connection's state, or a fresh one when the
// request did not come through a proxy server (tests calling the pipeline
// directly).
func clientConnOf(ctx context.Context) *clientConn {
	if c, ok := ctx.Value(clientConnKey{}).(*clientConn); ok {
		return c
	}
	return &clientConn{}
}
