package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// The proxy's real keys (the fake AWS accepts only these) and the
// placeholder keys a client holds.
var (
	proxyKeys  = proxytest.Credentials{AccessKeyID: "AKIDPROXYEXAMPLE", SecretAccessKey: "proxy/secret/key/EXAMPLE"}
	clientKeys = credentials.NewStaticCredentialsProvider("AKIDPLACEHOLDER", "placeholder-secret", "")
)

// testClock is a Clock with a settable offset from the host clock that
// records observations.
type testClock struct {
	offset atomic.Int64
	synced atomic.Bool

	mu  sync.Mutex
	obs []timesource.Observation
}

func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Status() timesource.Status {
	if c.synced.Load() {
		return timesource.Status{Synced: true, Source: "test", CorrectedTime: c.Now(), LastSync: c.Now()}
	}
	return timesource.Status{Source: "host", CorrectedTime: c.Now(), Reason: "test clock not synced"}
}
func (c *testClock) Observe(o timesource.Observation) {
	c.mu.Lock()
	c.obs = append(c.obs, o)
	c.mu.Unlock()
}
func (c *testClock) observations() []timesource.Observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]timesource.Observation(nil), c.obs...)
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	t       *testing.T
	fake    *proxytest.AWS
	proxy   *Proxy
	clock   *testClock
	ca      *certs.Authority
	addr    string // proxy listener host:port
	accepts *atomic.Int64
	logs    *logBuffer
	stop    func() // cancels Serve and waits for it
}

type harnessOptions struct {
	fake      proxytest.AWSOptions
	resolve   []string // default: *.amazonaws.com:443 to the fake
	transport *TransportOptions
	tweak     func(*Proxy)
	// keys the proxy signs with (default proxyKeys).
	keys *proxytest.Credentials
}

// newHarness starts a fake AWS endpoint and a proxy that sends every
// *.amazonaws.com request to it.
func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, clock: &testClock{}, logs: &logBuffer{}, accepts: new(atomic.Int64)}
	if o.fake.Credentials == (proxytest.Credentials{}) {
		o.fake.Credentials = proxyKeys
	}
	h.fake = proxytest.NewAWS(t, o.fake)
	rules := o.resolve
	if rules == nil {
		rules = []string{"*.amazonaws.com:443=" + h.fake.URL(), "*.amazonaws.com:80=" + h.fake.URL()}
	}
	res, err := ParseResolveRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	topts := TransportOptions{RootCAs: h.fake.CertPool()}
	if o.transport != nil {
		topts = *o.transport
	}
	topts.Resolver = res
	ca, err := certs.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	keys := proxyKeys
	if o.keys != nil {
		keys = *o.keys
	}
	sgn := signer.New(credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, keys.SessionToken), signer.Options{})
	h.proxy = &Proxy{
		Signer:       sgn,
		Clock:        h.clock,
		CA:           ca,
		Resolve:      res,
		Transport:    NewTransport(topts),
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryOnSkew:  true,
		DrainTimeout: 5 * time.Second,
	}
	if o.tweak != nil {
		o.tweak(h.proxy)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.stop = serveProxy(t, h.proxy, &countingListener{Listener: ln, n: h.accepts}, h.logs)
	return h
}

// serveProxy serves p on ln until the returned stop is called (idempotent;
// also at cleanup, which prints the proxy's log if the test failed). stop
// cancels Serve, waits for it, and closes the proxy's idle upstream
// connections.
func serveProxy(tb testing.TB, p *Proxy, ln net.Listener, logs *logBuffer) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				tb.Error("Serve did not return after its context was cancelled")
			}
			if tr, ok := p.Transport.(*http.Transport); ok {
				tr.CloseIdleConnections()
			}
		})
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			tb.Logf("proxy log:\n%s", logs.String())
		}
	})
	return stop
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// caPool trusts the proxy's CA.
func (h *harness) caPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(h.ca.CertPEM())
	return p
}

// clientTransport is a client transport that uses the proxy and trusts its
// CA, as HTTPS_PROXY plus SSL_CERT_FILE would arrange.
func (h *harness) clientTransport() *http.Transport {
	u := &url.URL{Scheme: "http", Host: h.addr}
	return &http.Transport{
		Proxy:                 http.ProxyURL(u),
		TLSClientConfig:       &tls.Config{RootCAs: h.caPool()},
		ExpectContinueTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
	}
}

func (h *harness) client() *http.Client {
	tr := h.clientTransport()
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// eventually polls cond for up to 5 seconds (the proxy finishes an exchange
// when it has closed the answer's body, just after the client has it).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func proxytestStream(delay time.Duration) proxytest.FunctionBehavior {
	return proxytest.FunctionBehavior{Delay: delay, Stream: true}
}
