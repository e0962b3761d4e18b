package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// relTrap is a loopback HTTP server that records every request it gets.
type relTrap struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func relStartTrap(t *testing.T, tlsServer bool, h http.HandlerFunc) *relTrap {
	t.Helper()
	tr := &relTrap{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, r.Clone(r.Context()))
		tr.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "trap")
	})
	if tlsServer {
		tr.Server = httptest.NewTLSServer(handler)
	} else {
		tr.Server = httptest.NewServer(handler)
	}
	t.Cleanup(tr.Close)
	return tr
}

func (tr *relTrap) requests() []*http.Request {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]*http.Request(nil), tr.reqs...)
}

// assertNoProxyCredential fails if any request carries the proxy's key.
func relAssertNoProxyCredential(t *testing.T, where string, reqs []*http.Request) {
	t.Helper()
	for _, r := range reqs {
		all := fmt.Sprint(r.Header) + r.URL.RawQuery
		if strings.Contains(all, proxyKeys.AccessKeyID) {
			t.Fatalf("%s got the proxy's credential: %s %s %v", where, r.Method, r.URL, r.Header)
		}
	}
}

// TestRedirectsNeverFollowed: an upstream 302 to a host that is not
// intercepted reaches the client as it is; the proxy never requests the
// Location, and when the client follows it through the proxy, the proxy's
// credentials do not go with it.
func TestRedirectsNeverFollowed(t *testing.T) {
	trap := relStartTrap(t, false, nil)
	location := trap.URL + "/steal?from=redirect"
	redirector := relStartTrap(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(http.StatusFound)
	})
	roots := x509.NewCertPool()
	roots.AddCert(redirector.Certificate())
	fx := relStart(t, relOptions{
		noFake:  true,
		roots:   roots,
		resolve: []string{"sts.amazonaws.com:443=" + redirector.URL},
		// Hosts without a rule are dialled directly, so a request the
		// proxy made to the trap would arrive.
		topts: func(o *TransportOptions) { o.UpstreamProxy = nil },
	})

	// A client that does not follow: the 302 arrives untouched.
	resp, err := fx.client().Get(relSTSURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != location {
		t.Fatalf("answer %d Location %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), location)
	}
	if got := redirector.requests(); len(got) != 1 || !strings.Contains(got[0].Header.Get("Authorization"), proxyKeys.AccessKeyID) {
		t.Fatalf("the intercepted host did not get one request signed by the proxy: %v", got)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(trap.requests()); n != 0 {
		t.Fatalf("the proxy followed the redirect: the Location got %d requests", n)
	}

	// A client that follows, through the proxy (even for loopback): the
	// follow-up is plain forwarding, never signed.
	tr := fx.transport()
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: fx.addr})
	defer tr.CloseIdleConnections()
	follow := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req := relClientSigned(t, http.MethodGet, relSTSURL, "")
	resp, err = follow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "trap" {
		t.Fatalf("followed redirect: %d %q", resp.StatusCode, body)
	}
	got := trap.requests()
	if len(got) != 1 {
		t.Fatalf("trap got %d requests, want the client's one", len(got))
	}
	relAssertNoProxyCredential(t, "the redirect target", got)
	// Go drops the client's Authorization on a redirect to another host;
	// the proxy must not have put one back.
	if got[0].Header.Get("Authorization") != "" {
		t.Fatalf("the redirect target got a signed request: %v", got[0].Header)
	}
}

// TestClientCannotSteerSignedTraffic: nothing a client puts in its request
// line, Host header or CONNECT target makes the proxy sign for a host that
// is not intercepted, or send signed traffic for one host to the --resolve
// target of another.
func TestClientCannotSteerSignedTraffic(t *testing.T) {
	trap := relStartTrap(t, false, nil)
	trapHost := strings.TrimPrefix(trap.URL, "http://")
	fx := relStart(t, relOptions{
		resolve: []string{"lambda.us-east-1.amazonaws.com:443=" + trap.URL},
		topts:   func(o *TransportOptions) { o.UpstreamProxy = nil },
	})
	inTunnel := func(target, serverName, requestLine, host string) func(t *testing.T) int {
		return func(t *testing.T) int {
			c := fx.relConnect(t, target, serverName)
			fmt.Fprintf(c, "%s\r\nHost: %s\r\nX-Amz-Date: 20250101T000000Z\r\n\r\n", requestLine, host)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
	}
	onListener := func(raw string) func(t *testing.T) int {
		return func(t *testing.T) int {
			c, err := net.Dial("tcp", fx.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
	}
	sts := "GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1"
	cases := []struct {
		name   string
		run    func(t *testing.T) int
		status int // 0: any
	}{
		{"tunnel to sts, Host of another intercepted host", inTunnel("sts.amazonaws.com:443", "sts.amazonaws.com", sts, "lambda.us-east-1.amazonaws.com"), http.StatusMisdirectedRequest},
		{"tunnel to sts, Host of the resolve target", inTunnel("sts.amazonaws.com:443", "sts.amazonaws.com", sts, trapHost), http.StatusMisdirectedRequest},
		{"tunnel to sts, absolute-form URL of another host", inTunnel("sts.amazonaws.com:443", "sts.amazonaws.com",
			"GET https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations HTTP/1.1", "sts.amazonaws.com"), http.StatusMisdirectedRequest},
		{"tunnel to sts, absolute-form URL of the trap", inTunnel("sts.amazonaws.com:443", "sts.amazonaws.com",
			"GET http://"+trapHost+"/ HTTP/1.1", "sts.amazonaws.com"), http.StatusMisdirectedRequest},
		{"absolute-form to the trap with an AWS Host header", onListener("GET http://" + trapHost + "/x HTTP/1.1\r\nHost: sts.amazonaws.com\r\n\r\n"), 0},
		{"absolute-form with AWS user info", onListener("GET http://sts.amazonaws.com@" + trapHost + "/y HTTP/1.1\r\nHost: sts.amazonaws.com\r\n\r\n"), 0},
		{"absolute-form to sts with the trap as Host", onListener("GET http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: " + trapHost + "\r\n\r\n"), http.StatusOK},
		{"blind tunnel to the trap, AWS request inside", inTunnel(trapHost, "", sts, "sts.amazonaws.com"), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status := tc.run(t)
			if tc.status != 0 && status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			relAssertNoProxyCredential(t, "the trap (a resolve target and a non-intercepted host)", trap.requests())
		})
	}
	// The only signed requests that left went to the fake, for sts.
	for _, r := range relRecorded(t, fx.fake, 1) {
		if r.Host != "sts.amazonaws.com" || r.Verified == nil {
			t.Errorf("fake got %s %s for %s (verified %v)", r.Method, r.Path, r.Host, r.Verified != nil)
		}
	}
	if len(trap.requests()) == 0 {
		t.Error("the trap saw no request: the unsigned cases did not reach it")
	}
}

// TestClientSecurityTokenNeverForwarded: the client's own
// X-Amz-Security-Token is dropped; the proxy sends its own token, if any.
func TestClientSecurityTokenNeverForwarded(t *testing.T) {
	withToken := proxyKeys
	withToken.SessionToken = "proxy-session-token"
	cases := []struct {
		name string
		keys *proxytest.Credentials
		want string
	}{
		{"proxy keys without a token", nil, ""},
		{"proxy keys with a token", &withToken, "proxy-session-token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := relStart(t, relOptions{keys: tc.keys})
			req := relClientSigned(t, http.MethodGet, relSTSURL, "client-session-token")
			resp, err := fx.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got := relRecorded(t, fx.fake, 1)[0].Header
			if v := got.Values("X-Amz-Security-Token"); len(v) > 1 || got.Get("X-Amz-Security-Token") != tc.want {
				t.Fatalf("upstream X-Amz-Security-Token %q, want %q", v, tc.want)
			}
		})
	}
}

// relClientSigned is a request signed by a client with placeholder keys
// (and a session token of its own when token is set), as an SDK sends it.
func relClientSigned(t *testing.T, method, rawURL, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder-secret", SessionToken: token}
	const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, emptyHash, "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if token != "" && req.Header.Get("X-Amz-Security-Token") != token {
		t.Fatalf("client request without its token: %v", req.Header)
	}
	return req
}

// TestClientSecurityTokenInQueryNeverForwarded: a client's
// X-Amz-Security-Token in the query string of a request that is not
// presigned (a presigned URL is the client's own signature and passes
// through whole) must not reach AWS next to the proxy's signature either.
//
// Known bug (signer, not proxy): signer.Prepare keeps the parameter and
// signs it into the canonical query, so this test fails until the signer
// drops X-Amz-Security-Token from the query of requests it re-signs.
func TestClientSecurityTokenInQueryNeverForwarded(t *testing.T) {
	fx := relStart(t, relOptions{})
	req := relClientSigned(t, http.MethodGet, relSTSURL+"&X-Amz-Security-Token=client-session-token", "")
	resp, err := fx.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if r := relRecorded(t, fx.fake, 1)[0]; strings.Contains(r.RawQuery, "client-session-token") {
		t.Fatalf("the client's session token went upstream in the query: %q", r.RawQuery)
	}
}
