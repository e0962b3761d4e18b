package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// UpstreamTunnelDialer returns a Proxy.TunnelDial that opens blind tunnels
// through an upstream HTTP(S) proxy (--upstream-proxy) with CONNECT, sending
// Basic Proxy-Authorization when upstream carries user information. roots
// verifies an https:// upstream proxy (nil: system roots). timeout bounds
// the dial and the CONNECT exchange (default DefaultTunnelDialTimeout).
func UpstreamTunnelDialer(upstream *url.URL, roots *x509.CertPool, now func() time.Time, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if timeout <= 0 {
		timeout = DefaultTunnelDialTimeout
	}
	proxyAddr := upstream.Host
	if upstream.Port() == "" {
		proxyAddr = net.JoinHostPort(upstream.Hostname(), defaultPort(upstream.Scheme))
	}
	var auth string
	if upstream.User != nil {
		pw, _ := upstream.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(upstream.User.Username()+":"+pw))
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d := net.Dialer{KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(ctx, network, proxyAddr)
		if err != nil {
			return nil, fmt.Errorf("dial upstream proxy: %w", err)
		}
		if deadline, ok := ctx.Deadline(); ok {
			conn.SetDeadline(deadline)
		}
		if upstream.Scheme == "https" {
			tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: upstream.Hostname(), MinVersion: tls.VersionTLS12, Time: now})
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, &tlsError{host: upstream.Hostname(), err: err}
			}
			conn = tc
		}
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: make(http.Header)}
		if auth != "" {
			req.Header.Set("Proxy-Authorization", auth)
		}
		if err := req.Write(conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("CONNECT through upstream proxy: %w", err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("CONNECT through upstream proxy: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			conn.Close()
			return nil, fmt.Errorf("upstream proxy refused CONNECT to %s: %s", addr, resp.Status)
		}
		conn.SetDeadline(time.Time{})
		if br.Buffered() > 0 {
			return &bufferedConn{Conn: conn, r: br}, nil
		}
		return conn, nil
	}
}

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
