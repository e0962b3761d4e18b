// Package proxy is skewproxy's forward proxy: it terminates CONNECT tunnels
// to AWS endpoints with leaves from its own CA, re-signs every request in
// them with the proxy's credentials at the moment the request leaves (the
// signing time read from a corrected clock after every wait inside the
// proxy), retries once after a clock-skew failure, and streams the answer
// back. Tunnels to any other host are relayed byte for byte, never
// decrypted or signed. It also holds the upstream transport, the host
// matcher and --resolve rules, and the admin HTTP endpoints.
//
// The main type is Proxy, configured through documented fields in the
// manner of httputil.ReverseProxy and run with Serve. It is built on
// github.com/elazarl/goproxy, with goproxy's built-in CA, default transport
// (which skips TLS verification and reads HTTPS_PROXY), header stripping
// and verbose logging all replaced; intercepted tunnels do not use
// goproxy's MITM loop at all but a net/http server per tunnel, so that the
// listener's limits (header size, read-header and idle timeouts) hold
// inside them too.
//
// It is not a SigV4 implementation (package signer parses and signs), not a
// clock (package timesource), not a general-purpose HTTP proxy with caching
// or content filtering, and it never signs a request for a host outside the
// intercept patterns.
package proxy
