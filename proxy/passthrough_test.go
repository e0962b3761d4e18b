package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingServer remembers the headers of the last request it got.
type recordingServer struct {
	mu   sync.Mutex
	last http.Header
	host string
}

func (s *recordingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.last = r.Header.Clone()
	s.host = r.Host
	s.mu.Unlock()
	w.Header().Set("X-Upstream", "yes")
	io.WriteString(w, "plain answer")
}

func (s *recordingServer) got() (http.Header, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.host
}

func TestNotInterceptedHostsNeverSigned(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	rec := &recordingServer{}
	plain := httptest.NewServer(rec)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(rec)
	defer tlsSrv.Close()

	const clientAuth = "AWS4-HMAC-SHA256 Credential=AKIDPLACEHOLDER/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef"
	newReq := func(target string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Host = "sts.amazonaws.com" // an AWS-looking Host to a non-AWS address
		req.Header.Set("Authorization", clientAuth)
		req.Header.Set("X-Amz-Date", "20260101T000000Z")
		req.Header.Set("Accept-Encoding", "gzip, br")
		req.Header.Set("X-Custom", "kept")
		return req
	}
	check := func(t *testing.T, resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "plain answer" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
		hdr, host := rec.got()
		if hdr.Get("Authorization") != clientAuth || hdr.Get("X-Amz-Date") != "20260101T000000Z" {
			t.Fatalf("client auth headers changed: %q %q", hdr.Get("Authorization"), hdr.Get("X-Amz-Date"))
		}
		if hdr.Get("Accept-Encoding") != "gzip, br" || hdr.Get("X-Custom") != "kept" || host != "sts.amazonaws.com" {
			t.Fatalf("headers not forwarded untouched: %v host %q", hdr, host)
		}
		for k, vs := range hdr {
			for _, v := range vs {
				if strings.Contains(v, proxyKeys.AccessKeyID) {
					t.Fatalf("proxy credentials in %s: %s", k, v)
				}
			}
		}
		if h.fake.Stats().Requests != 0 {
			t.Fatal("a non-intercepted request reached the AWS fake")
		}
	}

	t.Run("CONNECT blind tunnel", func(t *testing.T) {
		tr := h.clientTransport()
		defer tr.CloseIdleConnections()
		pool := x509.NewCertPool()
		pool.AddCert(tlsSrv.Certificate())
		tr.TLSClientConfig = &tls.Config{RootCAs: pool} // the real server's cert, not the proxy CA: never decrypted
		resp, err := (&http.Client{Transport: tr}).Do(newReq(tlsSrv.URL + "/x"))
		check(t, resp, err)
	})
	t.Run("absolute-form", func(t *testing.T) {
		// Written by hand: Go's client would put the Host header into the
		// request line. The request-target (127.0.0.1, not intercepted)
		// decides, whatever the Host header says.
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		target := plain.URL + "/x"
		raw := "GET " + target + " HTTP/1.1\r\nHost: sts.amazonaws.com\r\n" +
			"Authorization: " + clientAuth + "\r\nX-Amz-Date: 20260101T000000Z\r\n" +
			"Accept-Encoding: gzip, br\r\nX-Custom: kept\r\n" +
			"Connection: X-Hop\r\nX-Hop: must not pass\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n"
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "plain answer" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
		hdr, host := rec.got()
		if hdr.Get("Authorization") != clientAuth || hdr.Get("X-Amz-Date") != "20260101T000000Z" ||
			hdr.Get("Accept-Encoding") != "gzip, br" || hdr.Get("X-Custom") != "kept" {
			t.Fatalf("headers not forwarded untouched: %v", hdr)
		}
		if host != strings.TrimPrefix(plain.URL, "http://") {
			t.Fatalf("upstream Host %q", host)
		}
		if hdr.Get("X-Hop") != "" || hdr.Get("Keep-Alive") != "" || hdr.Get("Proxy-Connection") != "" {
			t.Fatalf("hop-by-hop headers forwarded: %v", hdr)
		}
		if h.fake.Stats().Requests != 0 {
			t.Fatal("a non-intercepted request reached the AWS fake")
		}
	})
}

func TestAbsoluteFormInterceptedIsSigned(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp, err := h.client().Get("http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "123456789012") {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	if r := h.fake.Requests(); len(r) != 1 || r[0].Verified == nil {
		t.Fatalf("fake requests: %+v", r)
	}
}

func TestKeepAliveManyRequestsOneTunnel(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	for i := range 100 {
		resp, err := c.Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := h.accepts.Load(); n != 1 {
		t.Fatalf("100 requests used %d client connections, want 1", n)
	}
	if s := h.fake.Stats(); s.Verified != 100 {
		t.Fatalf("fake verified %d of 100", s.Verified)
	}
}

func TestExpectContinue(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client() // ExpectContinueTimeout 10s: a proxy that never says 100 stalls 10s
	payload := strings.Repeat("x", 256<<10)
	req, _ := http.NewRequest(http.MethodPost, "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/echo/invocations", strings.NewReader(payload))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || body != payload {
		t.Fatalf("answer %d, %d bytes", resp.StatusCode, len(body))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("upload with Expect: 100-continue took %v: the proxy did not answer 100", d)
	}
}

// TestStreamingResponseFlushes: a streamed answer reaches the client as it
// arrives on both paths, inside an intercepted tunnel (https) and as an
// absolute-form request through goproxy (http), by the one flush policy.
func TestStreamingResponseFlushes(t *testing.T) {
	for _, scheme := range []string{"https", "http"} {
		t.Run(scheme, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			const delay = 1500 * time.Millisecond
			h.fake.SetFunction("slow", proxytestStream(delay))
			c := h.client()
			req, _ := http.NewRequest(http.MethodPost, scheme+"://lambda.us-east-1.amazonaws.com/2015-03-31/functions/slow/invocations", strings.NewReader(`"0123456789abcdef"`))
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatal(err)
			}
			first := time.Since(start)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			total := time.Since(start)
			if first > delay/2 {
				t.Fatalf("first byte after %v: the proxy held the stream (upstream delay %v)", first, delay)
			}
			if total < delay {
				t.Fatalf("whole answer after %v, before the upstream finished", total)
			}
			if got := string(buf) + string(rest); got != `"0123456789abcdef"` {
				t.Fatalf("body %q", got)
			}
		})
	}
}

func TestUpstreamFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name    string
		opts    func(h *harnessOptions, fakeURL string)
		status  int
		message string
	}{
		{"connection refused", func(o *harnessOptions, _ string) {
			o.resolve = []string{"*.amazonaws.com:443=https://" + refusedAddr}
		}, http.StatusBadGateway, "refused the connection"},
		{"untrusted upstream certificate", func(o *harnessOptions, _ string) {
			o.transport = &TransportOptions{RootCAs: x509.NewCertPool()}
		}, http.StatusBadGateway, "unknown authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := harnessOptions{}
			tc.opts(&o, "")
			h := newHarness(t, o)
			resp, err := h.client().Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.message) {
				t.Fatalf("answer %d %s, want %d mentioning %q", resp.StatusCode, body, tc.status, tc.message)
			}
			if strings.Contains(body, "goroutine") || strings.Contains(body, proxyKeys.SecretAccessKey) {
				t.Fatalf("internal detail in body: %s", body)
			}
		})
	}
}

func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	// Keep a healthy tunnel open across the garbage.
	get := func() {
		t.Helper()
		resp, err := c.Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	get()
	garbage := []struct {
		name string
		send func(conn net.Conn)
	}{
		{"binary on the listener", func(conn net.Conn) { conn.Write([]byte("\x16\x03\x01\x00\xff\x00\x00garbage\r\n\r\n")) }},
		{"bad request line", func(conn net.Conn) { conn.Write([]byte("NOT HTTP AT ALL\r\n\r\n")) }},
		{"garbage inside intercepted tunnel", func(conn net.Conn) {
			conn.Write([]byte("CONNECT sts.amazonaws.com:443 HTTP/1.1\r\nHost: sts.amazonaws.com:443\r\n\r\n"))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				resp.Body.Close()
			}
			conn.Write([]byte("\x16\x03\x01\x00\x05hello-not-tls\r\n\r\n"))
		}},
		{"garbage after TLS in tunnel", func(conn net.Conn) {
			conn.Write([]byte("CONNECT sts.amazonaws.com:443 HTTP/1.1\r\nHost: sts.amazonaws.com:443\r\n\r\n"))
			br := bufio.NewReader(conn)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				resp.Body.Close()
			}
			tc := tls.Client(conn, &tls.Config{RootCAs: h.caPool(), ServerName: "sts.amazonaws.com"})
			if err := tc.Handshake(); err != nil {
				t.Errorf("handshake: %v", err)
				return
			}
			tc.Write([]byte("\x00\x01\x02 garbage\r\n\r\n"))
			io.Copy(io.Discard, tc)
		}},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			g.send(conn)
			// The proxy must close this connection (possibly after a 400).
			_, err = io.Copy(io.Discard, conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the proxy kept a garbage connection open")
			}
			get()
		})
	}
}

func TestProxyAuth(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.ProxyAuth = "user:s3cret" }})
	target := "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
	cases := []struct {
		name   string
		user   *url.Userinfo
		status int
	}{
		{"none", nil, 0},
		{"wrong password", url.UserPassword("user", "nope"), 0},
		{"right", url.UserPassword("user", "s3cret"), 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := h.clientTransport()
			defer tr.CloseIdleConnections()
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: h.addr, User: tc.user})
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(target)
			if tc.status == 0 {
				// Go reports a refused CONNECT as an error naming the status.
				if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
					t.Fatalf("err = %v, want 407", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != tc.status {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("absolute-form 407 challenge", func(t *testing.T) {
		tr := h.clientTransport()
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://sts.amazonaws.com/")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic") {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
	})
	if strings.Contains(h.logs.String(), "s3cret") {
		t.Fatal("proxy password in the log")
	}
}

func TestTunnelHostMismatchRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("CONNECT sts.amazonaws.com:443 HTTP/1.1\r\nHost: sts.amazonaws.com:443\r\n\r\n"))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: h.caPool(), ServerName: "sts.amazonaws.com"})
	req, _ := http.NewRequest(http.MethodGet, "https://evil.test/?Action=GetCallerIdentity", nil)
	req.Host = "evil.test"
	if err := req.Write(tc); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("status %d, want 421", resp.StatusCode)
	}
	if h.fake.Stats().Requests != 0 {
		t.Fatal("a request for another host went upstream signed")
	}
}

func TestInterceptedKeepsClientHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	req, _ := http.NewRequest(http.MethodGet, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("User-Agent", "app/1.0")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "dropped")
	resp, err := h.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	eventually(t, "the fake to record the request", func() bool { return len(h.fake.Requests()) == 1 })
	got := h.fake.Requests()[0].Header
	if got.Get("Accept-Encoding") != "identity" || got.Get("X-Custom") != "kept" || got.Get("User-Agent") != "app/1.0" {
		t.Fatalf("client headers changed: %v", got)
	}
	if got.Get("X-Hop") != "" {
		t.Fatalf("header named in Connection forwarded: %v", got)
	}
}

// TestBlindTunnelDialFailureAnswer: a CONNECT to a host that is not
// intercepted and cannot be reached gets the proxy's own short 502, not
// the dial error's text (addresses, syscalls).
func TestBlindTunnelDialFailureAnswer(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	h := newHarness(t, harnessOptions{})
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "CONNECT "+dead+" HTTP/1.1\r\nHost: "+dead+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Skewproxy-Error") != "UpstreamError" {
		t.Fatalf("answer %d %v %q, want the proxy's 502 UpstreamError", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(body, "refused the connection") || strings.Contains(body, "dial tcp") || strings.Contains(body, "connect:") {
		t.Fatalf("body %q: want a short message without the raw dial error", body)
	}
	if !strings.Contains(h.logs.String(), "blind tunnel not opened") {
		t.Errorf("no log line for the failed tunnel")
	}
}

// TestProxyAnswersDatedByCorrectedClock: an answer the proxy makes itself
// carries a Date from the corrected clock, on both paths, never the host's
// (SDKs correct their own clock from it).
func TestProxyAnswersDatedByCorrectedClock(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	for _, scheme := range []string{"https", "http"} {
		t.Run(scheme, func(t *testing.T) {
			h := newHarness(t, harnessOptions{resolve: []string{"*.amazonaws.com:443=https://" + dead, "*.amazonaws.com:80=https://" + dead}})
			const ahead = 3 * time.Hour
			h.clock.offset.Store(int64(ahead))
			resp, err := h.client().Get(scheme + "://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d, want the proxy's 502", resp.StatusCode)
			}
			date, err := http.ParseTime(resp.Header.Get("Date"))
			if err != nil {
				t.Fatalf("Date %q: %v", resp.Header.Get("Date"), err)
			}
			if d := date.Sub(time.Now().Add(ahead)); d > 2*time.Second || d < -2*time.Second {
				t.Errorf("Date %v is %v off the corrected clock", date, d)
			}
		})
	}
}

// recordingTransport answers 200 and remembers the URLs and Host headers
// it was asked to send.
type recordingTransport struct {
	mu   sync.Mutex
	sent []*http.Request
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	r.mu.Lock()
	r.sent = append(r.sent, req)
	r.mu.Unlock()
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Length": {"0"}}, Body: http.NoBody, Request: req}, nil
}

// TestPlainHTTPUpgradedToHTTPS: an intercepted http:// request goes
// upstream over HTTPS (port 80 becomes 443, the Host without :80), unless
// UpstreamPlainHTTP is set, a --resolve rule covers the host and port, or
// the URL names a non-default port.
func TestPlainHTTPUpgradedToHTTPS(t *testing.T) {
	cases := []struct {
		name     string
		url      string
		plain    bool
		resolve  []string
		wantURL  string
		wantHost string
	}{
		{"upgraded", "http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", false, nil,
			"https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", "sts.amazonaws.com"},
		{"explicit port 80 upgraded", "http://sts.amazonaws.com:80/?Action=GetCallerIdentity&Version=2011-06-15", false, nil,
			"https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", "sts.amazonaws.com"},
		{"kept plain by UpstreamPlainHTTP", "http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", true, nil,
			"http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", "sts.amazonaws.com"},
		{"a --resolve rule for port 80 decides", "http://s3.amazonaws.com/bucket/key", false, []string{"s3.amazonaws.com:80=http://127.0.0.1:9"},
			"http://s3.amazonaws.com/bucket/key", "s3.amazonaws.com"},
		{"non-default port kept", "http://sts.amazonaws.com:8080/?Action=GetCallerIdentity&Version=2011-06-15", false, nil,
			"http://sts.amazonaws.com:8080/?Action=GetCallerIdentity&Version=2011-06-15", "sts.amazonaws.com:8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingTransport{}
			resolve := tc.resolve
			if resolve == nil {
				resolve = []string{"unrelated.amazonaws.com:443=https://127.0.0.1:9"}
			}
			h := newHarness(t, harnessOptions{resolve: resolve, tweak: func(p *Proxy) {
				p.Transport = rec
				p.UpstreamPlainHTTP = tc.plain
			}})
			resp, err := h.client().Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if len(rec.sent) != 1 {
				t.Fatalf("%d requests sent upstream, want 1", len(rec.sent))
			}
			out := rec.sent[0]
			if out.URL.String() != tc.wantURL || out.Host != tc.wantHost {
				t.Errorf("sent %s Host %q, want %s Host %q", out.URL, out.Host, tc.wantURL, tc.wantHost)
			}
		})
	}
}
