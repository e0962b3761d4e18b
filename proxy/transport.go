package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TransportOptions configures the upstream transport.
type TransportOptions struct {
	// RootCAs verifies upstream servers. nil means the system roots; to add
	// --upstream-ca roots, pass the system pool with them appended.
	RootCAs *x509.CertPool
	// UpstreamProxy, when set, is an HTTP(S) proxy (a corporate egress
	// proxy) every upstream request goes through, except requests that a
	// Resolver rule redirects. The proxy's own HTTPS_PROXY environment is
	// never read.
	UpstreamProxy *url.URL
	// Resolver redirects (host, port) to other addresses (--resolve).
	Resolver *Resolver
	// DialTimeout bounds a TCP connect (default 10s).
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds an upstream TLS handshake (default 10s).
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written (default 0: none, since Lambda invokes may run
	// for 15 minutes before answering).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle pooled connections (default 90s).
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is the pool size per upstream host (default 128).
	MaxIdleConnsPerHost int
	// Now is the clock upstream certificates' validity is judged by: the
	// corrected clock, so that a host clock hours or years off does not
	// fail every handshake. nil means the host clock (tests only).
	Now func() time.Time
}

// NewTransport returns the upstream transport: pooled keep-alive
// connections, HTTP/2 where the server offers it, TLS verified, no
// compression added (responses reach the client byte for byte), and no proxy
// taken from the environment.
//
// With a Resolver, the request URL keeps the original host (so connections
// are pooled per original host) and the dialer connects to the rule's target
// instead; the rule's scheme, not the request's, decides whether TLS is
// spoken on that connection (an https request to an http:// target travels
// in plain HTTP/1.1; an http request to an https:// target is wrapped in TLS). TLS to a redirected host is verified against the original
// host name (as curl --resolve does, which suits VPC endpoints and private
// DNS names) unless the rule's target is an IP address, in which case the
// certificate must carry that IP address (a test server or a local store
// addressed by IP).
func NewTransport(o TransportOptions) *http.Transport {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 128
	}
	d := &resolvingDialer{
		dialer:   &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		resolver: o.Resolver,
		tlsConfig: &tls.Config{
			RootCAs:    o.RootCAs,
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			Time:       o.Now,
		},
		handshakeTimeout: o.TLSHandshakeTimeout,
	}
	t := &http.Transport{
		DialContext:           d.DialContext,
		DialTLSContext:        d.DialTLSContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12, Time: o.Now},
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
		MaxIdleConns:          0, // no global cap; per host below
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		Proxy:                 nil,
	}
	if o.UpstreamProxy != nil {
		pu := *o.UpstreamProxy
		res := o.Resolver
		t.Proxy = func(req *http.Request) (*url.URL, error) {
			if _, ok := res.Lookup(req.URL.Hostname(), urlPort(req.URL)); ok {
				return nil, nil
			}
			return &pu, nil
		}
	}
	return t
}

func urlPort(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err == nil {
			return n
		}
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

type resolvingDialer struct {
	dialer           *net.Dialer
	resolver         *Resolver
	tlsConfig        *tls.Config
	handshakeTimeout time.Duration
}

// target returns the address to dial for addr and the matching rule's
// base URL, if any.
func (d *resolvingDialer) target(addr string) (dial string, rule *url.URL, ok bool) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, nil, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return addr, nil, false
	}
	u, found := d.resolver.Lookup(host, port)
	if !found {
		return addr, nil, false
	}
	return u.Host, u, true
}

// DialContext dials addr or its resolve target; a rule with an https target
// gets a TLS connection (HTTP/1.1).
func (d *resolvingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	to, rule, redirected := d.target(addr)
	if redirected && rule.Scheme == "https" {
		return d.dialTLS(ctx, network, addr, to, rule, []string{"http/1.1"})
	}
	return d.dialer.DialContext(ctx, network, to)
}

// DialTLSContext dials addr or its resolve target and completes a verified
// TLS handshake; a rule with an http target gets a plain connection.
func (d *resolvingDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	to, rule, redirected := d.target(addr)
	if redirected && rule.Scheme == "http" {
		return d.dialer.DialContext(ctx, network, to)
	}
	return d.dialTLS(ctx, network, addr, to, rule, []string{"h2", "http/1.1"})
}

func (d *resolvingDialer) dialTLS(ctx context.Context, network, addr, to string, rule *url.URL, protos []string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("upstream address %q: %w", addr, err)
	}
	serverName := tlsServerName(host, rule)
	conn, err := d.dialer.DialContext(ctx, network, to)
	if err != nil {
		return nil, err
	}
	cfg := d.tlsConfig.Clone()
	cfg.ServerName = serverName
	cfg.NextProtos = protos
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out: %w", err)
		}
		return nil, &tlsError{host: serverName, err: err}
	}
	return tc, nil
}

// tlsError marks a failed upstream TLS handshake.
type tlsError struct {
	host string
	err  error
}

func (e *tlsError) Error() string { return fmt.Sprintf("TLS handshake with %s: %v", e.host, e.err) }
func (e *tlsError) Unwrap() error { return e.err }

// tlsServerName is the name upstream TLS is verified against for host: the
// host itself, or the --resolve rule's target when that is an IP address
// (a test server or a local store addressed by IP).
func tlsServerName(host string, rule *url.URL) string {
	if rule != nil && net.ParseIP(rule.Hostname()) != nil {
		return rule.Hostname()
	}
	return host
}
