package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"
)

// timing is the spread of one kind of timed operation.
type timing struct {
	N   int
	P50 time.Duration
	P90 time.Duration
}

func newTiming(d []time.Duration) timing {
	slices.Sort(d)
	return timing{N: len(d), P50: percentile(d, 0.5), P90: percentile(d, 0.9)}
}

// handshakeResult is the handshake rows: first contact with a new host,
// full and resumed handshakes, through skewproxy and straight to the
// endpoint.
type handshakeResult struct {
	ProxyNewHost   timing  // CONNECT + leaf issue + full handshake + first request (new upstream connection too)
	DirectNewConn  timing  // dial + full handshake + first request, straight to the endpoint
	ProxyFull      timing  // CONNECT + full handshake, leaf cached
	ProxyResumed   timing  // CONNECT + resumed handshake (ClientSessionCache)
	ProxyResumedOK float64 // fraction of ProxyResumed handshakes that did resume
	DirectFull     timing
	DirectResumed  timing
	DirectResOK    float64
}

// dialer opens a raw connection to a TLS server for host: straight to an
// address, or through an HTTP CONNECT proxy.
type dialer func(ctx context.Context, host string) (net.Conn, error)

func directDialer(addr string) dialer {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// connectDialer asks the proxy at proxyAddr to CONNECT to host:443.
func connectDialer(proxyAddr string) dialer {
	return func(ctx context.Context, host string) (net.Conn, error) {
		return dialConnect(ctx, proxyAddr, net.JoinHostPort(host, "443"))
	}
}

// dialConnect opens a CONNECT tunnel to target through the proxy.
func dialConnect(ctx context.Context, proxyAddr, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("dial proxy: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		c.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	// The proxy sends nothing after its answer until the client speaks
	// TLS, so a buffered reader loses no bytes here.
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNECT answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// handshake dials and completes a TLS handshake for host with cfg.
func handshake(ctx context.Context, dial dialer, host string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := dial(ctx, host)
	if err != nil {
		return nil, err
	}
	c := cfg.Clone()
	c.ServerName = host
	tc := tls.Client(raw, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", host, err)
	}
	return tc, nil
}

// invokeOn sends one signed Invoke on an open TLS connection and reads the
// answer (which also takes in the TLS 1.3 session tickets the server sent).
func invokeOn(tc *tls.Conn, host string, hdr http.Header) error {
	req, err := http.NewRequest(http.MethodPost, "https://"+host+invokePath, bytes.NewReader(invokePayload))
	if err != nil {
		return err
	}
	req.Header = hdr.Clone()
	if err := req.Write(tc); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// firstRequests times n first requests, each on a new connection to a new
// host name given by hostFor(i): dial, handshake, one Invoke.
func firstRequests(ctx context.Context, dial dialer, cfg *tls.Config, n int, hostFor func(int) string) (timing, error) {
	var d []time.Duration
	for i := range n {
		host := hostFor(i)
		hdr, err := signedInvokeHeaders(host, time.Now())
		if err != nil {
			return timing{}, err
		}
		t0 := time.Now()
		tc, err := handshake(ctx, dial, host, cfg)
		if err != nil {
			return timing{}, err
		}
		err = invokeOn(tc, host, hdr)
		el := time.Since(t0)
		tc.Close()
		if err != nil {
			return timing{}, fmt.Errorf("first request to %s: %w", host, err)
		}
		d = append(d, el)
	}
	return newTiming(d), nil
}

// handshakes times n handshakes to host. With resume, every handshake uses
// one ClientSessionCache (primed by one untimed connection) and a request
// after each handshake takes in a fresh ticket; it returns the fraction of
// handshakes that resumed.
func handshakes(ctx context.Context, dial dialer, base *tls.Config, host string, n int, resume bool) (timing, float64, error) {
	hdr, err := signedInvokeHeaders(host, time.Now())
	if err != nil {
		return timing{}, 0, err
	}
	cfg := base.Clone()
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
		tc, err := handshake(ctx, dial, host, cfg)
		if err != nil {
			return timing{}, 0, err
		}
		err = invokeOn(tc, host, hdr)
		tc.Close()
		if err != nil {
			return timing{}, 0, err
		}
	}
	var d []time.Duration
	resumed := 0
	for range n {
		c := cfg
		if !resume {
			c = base.Clone() // no session cache: a full handshake
		}
		t0 := time.Now()
		tc, err := handshake(ctx, dial, host, c)
		if err != nil {
			return timing{}, 0, err
		}
		d = append(d, time.Since(t0))
		if tc.ConnectionState().DidResume {
			resumed++
		}
		if resume {
			err = invokeOn(tc, host, hdr)
		}
		tc.Close()
		if err != nil {
			return timing{}, 0, err
		}
	}
	return newTiming(d), float64(resumed) / float64(n), nil
}

// measureHandshakes fills the handshake rows.
func measureHandshakes(ctx context.Context, sp *skewproxyProc, ep *endpointProc, n int) (*handshakeResult, error) {
	if n < 1 {
		return nil, errors.New("no handshakes asked for")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	viaProxy := connectDialer(sp.ProxyURL.Host)
	direct := directDialer(ep.Addr)
	proxyCfg := &tls.Config{RootCAs: sp.CAPool, NextProtos: []string{"http/1.1"}}
	directCfg := &tls.Config{RootCAs: ep.Pool, NextProtos: []string{"http/1.1"}}
	run := time.Now().UnixNano() % 1e6
	hostFor := func(i int) string { return fmt.Sprintf("h%d-%d.%s", run, i, lambdaHost) }

	var h handshakeResult
	var err error
	if h.ProxyNewHost, err = firstRequests(ctx, viaProxy, proxyCfg, n, hostFor); err != nil {
		return nil, fmt.Errorf("through skewproxy: %w", err)
	}
	if h.DirectNewConn, err = firstRequests(ctx, direct, directCfg, n, hostFor); err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	if h.ProxyFull, _, err = handshakes(ctx, viaProxy, proxyCfg, lambdaHost, n, false); err != nil {
		return nil, fmt.Errorf("through skewproxy: %w", err)
	}
	if h.ProxyResumed, h.ProxyResumedOK, err = handshakes(ctx, viaProxy, proxyCfg, lambdaHost, n, true); err != nil {
		return nil, fmt.Errorf("through skewproxy: %w", err)
	}
	if h.DirectFull, _, err = handshakes(ctx, direct, directCfg, lambdaHost, n, false); err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	if h.DirectResumed, h.DirectResOK, err = handshakes(ctx, direct, directCfg, lambdaHost, n, true); err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	return &h, nil
}
