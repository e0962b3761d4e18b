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
	"sync/atomic"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// connectProxy is a minimal upstream CONNECT proxy that requires
// credentials and counts tunnels.
func connectProxy(t *testing.T, wantAuth, redirect string) (*url.URL, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if req.Header.Get("Proxy-Authorization") != wantAuth {
					io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
					return
				}
				to := req.Host
				if redirect != "" {
					to = redirect
				}
				up, err := net.Dial("tcp", to)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				n.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
				go io.Copy(up, br)
				io.Copy(c, up)
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String(), User: url.UserPassword("egress", "pw")}, &n
}

func TestBlindTunnelThroughUpstreamProxy(t *testing.T) {
	upstream, tunnels := connectProxy(t, "Basic ZWdyZXNzOnB3", "")
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) {
		p.TunnelDial = UpstreamTunnelDialer(upstream, nil, nil, 5*time.Second)
	}})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via egress") }))
	defer srv.Close()
	tr := h.clientTransport()
	defer tr.CloseIdleConnections()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "via egress" {
		t.Fatalf("body %q", body)
	}
	if tunnels.Load() != 1 {
		t.Fatalf("upstream proxy opened %d tunnels, want 1", tunnels.Load())
	}

	t.Run("refused by upstream proxy", func(t *testing.T) {
		bad := *upstream
		bad.User = url.UserPassword("egress", "wrong")
		dial := UpstreamTunnelDialer(&bad, nil, nil, time.Second)
		_, err := dial(t.Context(), "tcp", srv.Listener.Addr().String())
		if err == nil || !strings.Contains(err.Error(), "407") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestTransportThroughUpstreamProxy(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	// The egress proxy stands in for DNS: every tunnel goes to the fake.
	upstream, tunnels := connectProxy(t, "Basic ZWdyZXNzOnB3", fake.Addr())
	tr := NewTransport(TransportOptions{RootCAs: fake.CertPool(), UpstreamProxy: upstream})
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	// Unsigned, so the fake refuses it; what matters is the path it took
	// and that TLS was verified against sts.amazonaws.com.
	if tunnels.Load() != 1 || fake.Stats().Requests != 1 {
		t.Fatalf("tunnels %d, fake requests %d", tunnels.Load(), fake.Stats().Requests)
	}
}
