package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// relFixture is a proxy on loopback for the reliability tests, usable from
// tests, benchmarks and fuzz targets alike. It never reaches beyond
// loopback: hosts without a resolve rule go to an upstream proxy that
// refuses, and blind tunnels may only reach loopback addresses.
type relFixture struct {
	tb    testing.TB
	fake  *proxytest.AWS // nil unless relOptions.noFake is false
	proxy *Proxy
	ca    *certs.Authority
	addr  string
	logs  *logBuffer
	stop  func() // cancels Serve and waits for it (idempotent)
}

type relOptions struct {
	noFake   bool     // no fake AWS (and no default resolve rules)
	resolve  []string // extra rules, before the default ones
	roots    *x509.CertPool
	tweak    func(*Proxy)
	topts    func(*TransportOptions)
	logLevel slog.Level
	keys     *proxytest.Credentials // the proxy's keys (default proxyKeys)
	maxBody  int64                  // signer.Options.MaxBufferedBody
	clock    timesource.Clock       // default: a testClock (it records every observation)
}

// relDeadAddr returns a loopback address nothing listens on.
func relDeadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func relStart(tb testing.TB, o relOptions) *relFixture {
	tb.Helper()
	f := &relFixture{tb: tb, logs: &logBuffer{}}
	rules := append([]string(nil), o.resolve...)
	roots := o.roots
	if roots == nil {
		roots = x509.NewCertPool()
	}
	keys := proxyKeys
	if o.keys != nil {
		keys = *o.keys
	}
	if !o.noFake {
		f.fake = proxytest.NewAWS(tb, proxytest.AWSOptions{Credentials: keys})
		rules = append(rules, "*.amazonaws.com:443="+f.fake.URL(), "*.amazonaws.com:80="+f.fake.URL())
		roots.AppendCertsFromPEM(f.fake.CertPEM())
	}
	res, err := ParseResolveRules(rules)
	if err != nil {
		tb.Fatal(err)
	}
	dead := &url.URL{Scheme: "http", Host: relDeadAddr(tb)}
	topts := TransportOptions{RootCAs: roots, Resolver: res, UpstreamProxy: dead, DialTimeout: 2 * time.Second}
	if o.topts != nil {
		o.topts(&topts)
	}
	ca, err := certs.LoadOrCreate(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	f.ca = ca
	sgn := signer.New(credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, keys.SessionToken), signer.Options{MaxBufferedBody: o.maxBody})
	var clock timesource.Clock = &testClock{}
	if o.clock != nil {
		clock = o.clock
	}
	f.proxy = &Proxy{
		Signer:       sgn,
		Clock:        clock,
		CA:           ca,
		Resolve:      res,
		Transport:    NewTransport(topts),
		TunnelDial:   relLoopbackOnlyDial,
		Logger:       slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: o.logLevel})),
		RetryOnSkew:  true,
		DrainTimeout: 5 * time.Second,
	}
	if o.tweak != nil {
		o.tweak(f.proxy)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.stop = serveProxy(tb, f.proxy, ln, f.logs)
	return f
}

// relLoopbackOnlyDial is a blind-tunnel dialer that refuses anything but a
// loopback IP address (no DNS, no internet from the tests).
func relLoopbackOnlyDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("test dialer: %s is not a loopback address", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (f *relFixture) caPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(f.ca.CertPEM())
	return p
}

// transport is a client transport through the proxy that trusts its CA.
func (f *relFixture) transport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyURL(&url.URL{Scheme: "http", Host: f.addr}),
		TLSClientConfig:       &tls.Config{RootCAs: f.caPool()},
		ResponseHeaderTimeout: 20 * time.Second,
		ExpectContinueTimeout: 5 * time.Second,
	}
}

func (f *relFixture) client() *http.Client {
	tr := f.transport()
	f.tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

const relSTSURL = "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"

// getOK does one signed STS request through c and fails unless it is a 200.
func (f *relFixture) getOK(tb testing.TB, c *http.Client) {
	tb.Helper()
	resp, err := c.Get(relSTSURL)
	if err != nil {
		tb.Fatalf("good request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("good request: %d %s (read error %v)", resp.StatusCode, body, err)
	}
}

// relConnect opens a raw connection to the proxy, CONNECTs to target and,
// with serverName set, completes TLS with the proxy's leaf. The connection
// has a 10 s deadline.
func (f *relFixture) relConnect(tb testing.TB, target, serverName string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("CONNECT %s: %v", target, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	if br.Buffered() > 0 {
		tb.Fatalf("CONNECT %s: %d unexpected bytes after the answer", target, br.Buffered())
	}
	if serverName == "" {
		return conn
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: f.caPool(), ServerName: serverName})
	if err := tc.Handshake(); err != nil {
		tb.Fatalf("TLS in tunnel: %v", err)
	}
	return tc
}

// relRecorded waits (up to 5 s) until fake has recorded n requests and
// returns them: the fake records a request after its handler returns,
// which may be just after the client has the whole answer.
func relRecorded(tb testing.TB, fake *proxytest.AWS, n int) []proxytest.Request {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := fake.Requests()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				tb.Fatalf("fake recorded %d requests, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// relReadsClosed reports whether conn is closed by the peer (EOF or reset)
// within d, discarding what it sends.
func relReadsClosed(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
