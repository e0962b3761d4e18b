package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// bareProxy is the baseline of issue 22: a forward proxy made of plain
// net/http and nothing else, no signing. Absolute-form http:// requests are
// forwarded with an http.Transport (keep-alive, pooled). A CONNECT is
// answered 200, the hijacked connection is handed to one http.Server that
// terminates TLS with a fixed leaf from the forwarder's own CA, and the
// requests inside are forwarded over HTTPS with the same transport: what a
// minimal MITM forwarder does. Its cost per request is what Go's generic
// net/http path costs when it only forwards.
type bareProxy struct {
	tr      *http.Transport
	tunnels *connListener // CONNECTed connections, served by inner
	inner   *http.Server  // TLS + HTTP/1.1 inside the tunnels
}

// hopHeaders are the hop-by-hop headers a proxy does not forward.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// newBareProxy forwards with upstream roots roots; resolve maps a dialed
// host:port to another address (the loopback endpoint).
func newBareProxy(leaf tls.Certificate, roots *x509.CertPool, resolve map[string]string) *bareProxy {
	var d net.Dialer
	p := &bareProxy{tunnels: newConnListener()}
	p.tr = &http.Transport{ // as skewproxy's upstream transport: pooled, HTTP/2 where offered
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := resolve[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}
	p.inner = &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.forward(w, r, true) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"http/1.1"}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go func() { _ = p.inner.ServeTLS(p.tunnels, "", "") }()
	return p
}

func (p *bareProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		p.forward(w, r, false)
		return
	}
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	p.tunnels.push(c)
}

// forward sends r upstream (to https://Host for a request inside a
// tunnel, else to its absolute URL) and copies the answer back.
func (p *bareProxy) forward(w http.ResponseWriter, r *http.Request, tunneled bool) {
	out := r.Clone(r.Context())
	if tunneled {
		out.URL.Scheme, out.URL.Host = "https", r.Host
	}
	out.RequestURI, out.Close = "", false
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// Close stops the inner server and drops pooled upstream connections.
func (p *bareProxy) Close() error {
	err := p.inner.Close()
	p.tr.CloseIdleConnections()
	return err
}

// connListener is a net.Listener whose connections are pushed to it (the
// hijacked CONNECT tunnels).
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept, or closes it if the listener is closed.
func (l *connListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// parseResolve parses a --resolve value "HOST:PORT=ADDR" into m.
func parseResolve(m map[string]string, v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("--resolve %q: want HOST:PORT=ADDR", v)
	}
	for _, hp := range []string{from, to} {
		if h, port, err := net.SplitHostPort(hp); err != nil || h == "" || port == "" {
			return fmt.Errorf("--resolve %q: %q is not HOST:PORT", v, hp)
		}
	}
	m[from] = to
	return nil
}

// runBareProxy is `skewbench bare-proxy`: serve the bare forwarder on a
// free loopback port until interrupted. Its first line on stdout is JSON
// {"addr": "127.0.0.1:PORT", "ca": "FILE"} (the CA its leaf chains to).
func runBareProxy(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("bare-proxy", flag.ContinueOnError)
	dir := fs.String("dir", os.TempDir(), "directory for bare-proxy-ca.pem")
	upstreamCA := fs.String("upstream-ca", "", "PEM file of roots that verify HTTPS upstreams (default: system roots)")
	resolve := map[string]string{}
	fs.Func("resolve", "`HOST:PORT=ADDR`: dial ADDR for HOST:PORT (repeatable)", func(v string) error { return parseResolve(resolve, v) })
	if err := fs.Parse(args); err != nil {
		return err
	}
	var roots *x509.CertPool
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil {
			return fmt.Errorf("--upstream-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return errors.New("--upstream-ca: no PEM certificate")
		}
	}
	pki, err := newPKI(benchNames)
	if err != nil {
		return err
	}
	caFile, err := pki.writeCA(*dir, "bare-proxy-ca.pem")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bare-proxy listen: %w", err)
	}
	p := newBareProxy(pki.Leaf, roots, resolve)
	defer p.Close()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if err := json.NewEncoder(stdout).Encode(selfInfo{Addr: ln.Addr().String(), CA: caFile}); err != nil {
		return err
	}
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

// startBareProxy runs `skewbench bare-proxy` forwarding to the endpoint:
// HTTPS for lambdaHost:443 and plain HTTP for lambdaHost:80, as skewproxy's
// --resolve rules do.
func startBareProxy(dir string, ep *endpointProc) (*peerProxy, error) {
	c, info, pool, err := startSelf("bare-proxy", "bare-proxy", "--dir", dir, "--upstream-ca", ep.CAFile,
		"--resolve", lambdaHost+":443="+ep.Addr, "--resolve", lambdaHost+":80="+ep.PlainAddr)
	if err != nil {
		return nil, err
	}
	return &peerProxy{child: c, URL: &url.URL{Scheme: "http", Host: info.Addr}, CAPool: pool}, nil
}
