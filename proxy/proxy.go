package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// Preparer turns an intercepted request into one that can be signed (and
// signed again on a retry). *signer.Signer implements it.
type Preparer interface {
	Prepare(req *http.Request) (*signer.Prepared, error)
}

// Default timeouts and limits.
const (
	DefaultReadHeaderTimeout = 30 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultDrainTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes    = 1 << 20
	DefaultTunnelDialTimeout = 10 * time.Second
	// maxRefusing bounds the goroutines answering 503 to connections
	// beyond MaxClientConns; past it, excess connections are just closed.
	maxRefusing = 64
)

// Proxy is skewproxy's forward proxy. CONNECT tunnels to intercepted hosts
// are terminated with a leaf from CA and every request inside them is
// re-signed with the proxy's credentials at the moment it is sent; CONNECT
// tunnels to any other host are relayed byte for byte; absolute-form
// http:// requests are re-signed when their host is intercepted and
// forwarded untouched otherwise.
//
// Set the fields before calling Serve and do not change them afterwards.
type Proxy struct {
	// Signer prepares and signs intercepted requests (required).
	Signer Preparer
	// Clock is the time every signature is read from (required).
	Clock timesource.Clock
	// CA issues the leaf certificates of intercepted tunnels (required).
	CA *certs.Authority

	// Intercept selects the hosts whose traffic is re-signed. nil means
	// DefaultInterceptPatterns. Hosts named by Resolve rules are always
	// intercepted as well. Nothing else is ever signed.
	Intercept *HostMatcher
	// Resolve redirects intercepted hosts to other addresses (--resolve).
	// It must be the same Resolver the Transport was built with; the proxy
	// uses it only to widen Intercept.
	Resolve *Resolver
	// Transport sends requests upstream. nil means
	// NewTransport(TransportOptions{Resolver: Resolve}).
	Transport http.RoundTripper
	// TunnelDial dials the destination of a blind (not intercepted)
	// CONNECT tunnel. nil means a direct TCP dial with
	// DefaultTunnelDialTimeout; it never reads HTTPS_PROXY.
	TunnelDial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Admitter holds intercepted requests before they are signed (the
	// Lambda invoke limiter). nil admits every request at once.
	Admitter Admitter
	// Observer follows intercepted requests for telemetry. nil records
	// nothing.
	Observer Observer
	// Logger receives one info line per request and debug detail. nil
	// discards. No secret, token, signature or Authorization value is ever
	// passed to it.
	Logger *slog.Logger

	// ProxyAuth, when not empty, is "user:pass": clients must send it as
	// Basic Proxy-Authorization or get a 407.
	ProxyAuth string
	// RetryOnSkew re-signs and resends a request once after a clock-skew
	// failure when its body can be replayed. The CLI sets it to true.
	RetryOnSkew bool
	// RequireSync answers 503 instead of signing while Clock is not synced.
	RequireSync bool
	// UpstreamPlainHTTP keeps intercepted http:// requests (absolute-form,
	// from clients that never learned TLS) on plain HTTP upstream. By
	// default they are sent over HTTPS, verified, so that neither their
	// data nor the proxy's signature crosses the network in clear text. A
	// --resolve rule for the request's host and port decides by its own
	// target's scheme either way.
	UpstreamPlainHTTP bool
	// Allow limits the services and regions the proxy signs for
	// (--allow-service, --allow-region); the zero value allows all. A
	// request outside it gets a 403 AccessDenied and is never sent.
	Allow Allowlist
	// TimeBootstrap, when set, is asked before an intercepted request is
	// signed while the clock has no source, to learn the time from the
	// HTTPS server the request goes to. nil: the clock waits for NTP or
	// for the Date of an answer.
	TimeBootstrap TimeBootstrapper

	// ReadHeaderTimeout bounds reading a request's headers, on the
	// listener and inside intercepted tunnels, and the client's TLS
	// handshake in a tunnel (default DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection, plain or
	// intercepted tunnel, that waits this long for its next request, and a
	// tunnel client that stalls this long while sending a body or reading
	// an answer (default DefaultIdleTimeout). Waiting for the upstream to
	// answer is not idle. Blind tunnels have no idle limit.
	IdleTimeout time.Duration
	// MaxHeaderBytes limits request headers on the listener and inside
	// intercepted tunnels; larger requests get a 431 (default
	// DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// MaxClientConns limits open client connections (tunnels included).
	// A connection beyond it gets a 503 answer and is closed; the listener
	// keeps accepting. 0 means no limit.
	MaxClientConns int
	// DrainTimeout bounds how long Serve waits for in-flight requests after
	// its context is done (default DefaultDrainTimeout).
	DrainTimeout time.Duration

	initOnce sync.Once
	initErr  error
	e        *engine
}

// engine is the running proxy: the state built from the Proxy's fields on
// first use (matcher, transport, handler, connection and tunnel tracking).
type engine struct {
	p         *Proxy
	log       *slog.Logger
	intercept *HostMatcher
	transport http.RoundTripper
	handler   http.Handler
	conns     *connSet
	authValue string // expected Proxy-Authorization value
	// tunnelErrorLog is the ErrorLog of every tunnel's http.Server (one
	// shared logger rather than one per tunnel).
	tunnelErrorLog *log.Logger
	copyBufs       *sync.Pool // writeResponse's copy buffers

	active   atomic.Int64 // requests in the pipeline
	draining atomic.Bool
	tunnelMu sync.Mutex
	stopped  bool           // no new tunnels (under tunnelMu)
	tunnels  sync.WaitGroup // intercepted tunnels being served
	refusals sync.WaitGroup // goroutines answering 503 to excess connections
	refusing atomic.Int64
	hardCtx  context.Context // cancelled when the drain gives up
	hardStop context.CancelFunc
}

func (p *Proxy) init() (*engine, error) {
	p.initOnce.Do(func() { p.e, p.initErr = p.build() })
	return p.e, p.initErr
}

func (p *Proxy) build() (*engine, error) {
	switch {
	case p.Signer == nil:
		return nil, errors.New("proxy: Signer is required")
	case p.Clock == nil:
		return nil, errors.New("proxy: Clock is required")
	case p.CA == nil:
		return nil, errors.New("proxy: CA is required")
	}
	e := &engine{p: p, log: p.Logger, conns: newConnSet()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.copyBufs = newCopyBufPool()
	e.tunnelErrorLog = slog.NewLogLogger(redactingHandler{e.log.Handler()}, slog.LevelDebug)
	patterns := DefaultInterceptPatterns()
	if p.Intercept != nil {
		patterns = p.Intercept.Patterns()
	}
	m, err := ParseHostPatterns(append(patterns, p.Resolve.Hosts()...))
	if err != nil {
		return nil, fmt.Errorf("proxy: intercept patterns: %w", err)
	}
	e.intercept = m
	e.transport = p.Transport
	if e.transport == nil {
		e.transport = NewTransport(TransportOptions{Resolver: p.Resolve})
	}
	if p.ProxyAuth != "" {
		e.authValue = "Basic " + base64.StdEncoding.EncodeToString([]byte(p.ProxyAuth))
	}
	e.hardCtx, e.hardStop = context.WithCancel(context.Background())
	e.handler = e.newHandler()
	return e, nil
}

func (e *engine) readHeaderTimeout() time.Duration {
	if e.p.ReadHeaderTimeout > 0 {
		return e.p.ReadHeaderTimeout
	}
	return DefaultReadHeaderTimeout
}

func (e *engine) maxHeaderBytes() int {
	if e.p.MaxHeaderBytes > 0 {
		return e.p.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (e *engine) idleTimeout() time.Duration {
	if e.p.IdleTimeout > 0 {
		return e.p.IdleTimeout
	}
	return DefaultIdleTimeout
}

// newHandler wires goproxy: proxy auth in front, CONNECT dispatch by
// Intercept, and the pipeline as the round tripper of every request.
func (e *engine) newHandler() http.Handler {
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = goproxyLogger{log: e.log}
	// goproxy strips Accept-Encoding and Proxy-* headers by default; the
	// pipeline removes exactly the hop-by-hop headers itself.
	gp.KeepHeader = true
	gp.KeepAcceptEncoding = true
	gp.AllowHTTP2 = false
	// goproxy's default transport skips TLS verification and reads
	// HTTPS_PROXY; it must never be used. Every request gets
	// ctx.RoundTripper below, and this one refuses as a safety net.
	gp.Tr = &http.Transport{Proxy: nil, DialContext: refuseDial}
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = e.tunnelDial
	// A blind tunnel whose destination cannot be reached gets our own
	// answer, not goproxy's raw dial error text.
	gp.ConnectionErrHandler = e.tunnelDialFailed
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "skewproxy is a forward proxy: send absolute-form or CONNECT requests (admin endpoints are on the admin listener)", http.StatusBadRequest)
	})
	pipeline := goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		return e.roundTrip(req, nil), nil
	})
	// Intercepted CONNECTs never reach goproxy (serveIntercepted runs
	// them); goproxy relays the other tunnels byte for byte.
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if e.intercept.Match(host) {
			return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
		}
		return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, host
	})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = pipeline
		return r, nil
	})
	return e.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			if host := r.URL.Host; host != "" && e.intercept.Match(host) {
				e.serveIntercepted(w, r)
				return
			}
			gp.ServeHTTP(w, r)
			return
		}
		// goproxy copies the answer with io.Copy and flushes only event
		// streams: the pipeline flushes when the upstream pauses
		// (flushOnPause), through this writer's controller.
		gp.ServeHTTP(w, withClientFlush(r, http.NewResponseController(w).Flush))
	}))
}

// tunnelDialFailed answers a CONNECT whose destination could not be
// dialed: a short 502/504 saying what failed, with the detail in the log
// only (goproxy would send the dial error's text, addresses and all).
func (e *engine) tunnelDialFailed(w io.Writer, gctx *goproxy.ProxyCtx, err error) {
	host := ""
	if gctx != nil && gctx.Req != nil {
		host = normalizeHost(gctx.Req.Host)
	}
	status, msg := describeUpstreamError(host, err)
	e.log.Info("blind tunnel not opened", "host", host, "status", status, "err", redactText(err.Error()))
	resp := reply(nil, "", status, "UpstreamError", msg)
	resp.Close = true
	if werr := resp.Write(w); werr != nil {
		e.log.Debug("answering a failed CONNECT", "host", host, "err", werr)
	}
}

func refuseDial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("proxy: goproxy's own transport is disabled")
}

func (e *engine) tunnelDial(req *http.Request, network, addr string) (net.Conn, error) {
	ctx := req.Context()
	if e.p.TunnelDial != nil {
		return e.p.TunnelDial(ctx, network, addr)
	}
	d := net.Dialer{Timeout: DefaultTunnelDialTimeout, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// Serve accepts proxy clients on ln until ctx is done, then stops
// accepting, lets in-flight requests finish for at most DrainTimeout,
// aborts what is left, closes every client connection and returns nil. It
// returns an error when the configuration is incomplete or ln fails.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	e, err := p.init()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           e.handler,
		ConnContext:       withClientConn,
		ReadHeaderTimeout: e.readHeaderTimeout(),
		IdleTimeout:       e.idleTimeout(),
		MaxHeaderBytes:    e.maxHeaderBytes(),
		ErrorLog:          slog.NewLogLogger(redactingHandler{e.log.Handler()}, slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() {
		errc <- srv.Serve(&trackingListener{Listener: ln, set: e.conns, max: p.MaxClientConns, refuse: e.refuseConn})
	}()
	select {
	case err := <-errc:
		e.hardStop()
		e.conns.closeAll()
		e.waitTunnels()
		e.refusals.Wait()
		return fmt.Errorf("proxy: serve: %w", err)
	case <-ctx.Done():
	}
	drain := p.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	e.draining.Store(true)
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Stops accepting, closes idle plain connections and waits for
		// plain requests; hijacked tunnels are not its business.
		srv.Shutdown(dctx)
	}()
	e.waitIdle(dctx)
	wg.Wait()
	if n := e.active.Load(); n > 0 {
		e.log.Warn("drain timeout: aborting in-flight requests", "inflight", n, "drain_timeout", drain)
	}
	e.hardStop()
	srv.Close()
	e.conns.closeAll()
	<-errc
	e.waitTunnels()
	e.refusals.Wait()
	if ci, ok := e.transport.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
	return nil
}

// startTunnel registers a tunnel goroutine; false once Serve is stopping.
func (e *engine) startTunnel() bool {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	if e.stopped {
		return false
	}
	e.tunnels.Add(1)
	return true
}

// waitTunnels refuses new tunnels and waits for the running ones (their
// connections are closed by then).
func (e *engine) waitTunnels() {
	e.tunnelMu.Lock()
	e.stopped = true
	e.tunnelMu.Unlock()
	e.tunnels.Wait()
}

// waitIdle waits until no request is in the pipeline or ctx is done.
func (e *engine) waitIdle(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for e.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ParseUpstreamProxy parses a --upstream-proxy URL (http or https).
func ParseUpstreamProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream proxy %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	return u, nil
}

// Inflight returns how many requests are in the proxy's pipeline (from
// arrival until the client has the whole answer). It is 0 before Serve.
func (p *Proxy) Inflight() int64 {
	e, err := p.init()
	if err != nil {
		return 0
	}
	return e.active.Load()
}
