package main

// WebSocket through intercepted tunnels, through the built binary: an MQTT
// over WSS style handshake authenticated by a SigV4 presigned URL that the
// client signed with a clock 20 minutes off is signed again at send time,
// and the frames are relayed both ways.

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/coder/websocket"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// iotDataHost is an AWS IoT Core data endpoint (MQTT over WSS at /mqtt).
const iotDataHost = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"

// emptySHA256 is the payload hash of a handshake.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// startWebSocketEcho serves TLS on loopback: a handshake whose presigned
// query verifies with keys (5-minute window) is accepted and every message
// echoed; any other is refused 403. It counts the verified handshakes.
func startWebSocketEcho(t *testing.T, keys proxytest.Credentials) (srv *httptest.Server, caFile string, verified *atomic.Int32) {
	t.Helper()
	verified = new(atomic.Int32)
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := proxytest.VerifyWindow(r, nil, keys, time.Now(), 5*time.Minute, 5*time.Minute)
		if err != nil || !v.Presigned || v.Service != "iotdevicegateway" {
			http.Error(w, "signature refused", http.StatusForbidden)
			return
		}
		verified.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ws-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, verified
}

// presignedMQTTURL is the wss:// URL a device SDK makes, signed at at with
// the client's (placeholder) keys.
func presignedMQTTURL(t *testing.T, at time.Time) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+iotDataHost+"/mqtt", nil)
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder-secret"},
		req, emptySHA256, "iotdevicegateway", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return "wss://" + strings.TrimPrefix(signed, "https://")
}

// TestWebSocketE2EPresignedHandshakeResigned: a WebSocket client whose
// presigned URL is 20 minutes old (its clock is behind) connects through the
// proxy: the handshake reaches the server signed at true time with the
// proxy's keys, messages go both ways, and the same URL sent straight to
// the server is refused.
func TestWebSocketE2EPresignedHandshakeResigned(t *testing.T) {
	srv, caFile, verified := startWebSocketEcho(t, proxyKeys)
	p := startProxy(t, proxyOptions{
		Args: []string{"--resolve", iotDataHost + ":443=" + srv.URL, "--upstream-ca", caFile, "--no-time-bootstrap"},
		Env:  proxyCredsEnv(proxyKeys),
	})
	u := presignedMQTTURL(t, time.Now().Add(-20*time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: p.Client()})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial through the proxy: %v (status %d)\nproxy logs:\n%s", err, status, p.Logs())
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if string(got) != "echo: "+msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
	c.Close(websocket.StatusNormalClosure, "done")
	if n := verified.Load(); n != 1 {
		t.Errorf("server verified %d handshakes, want 1", n)
	}

	// Straight to the server (its address, the same signed URL): refused,
	// the signature is 20 minutes old and made with placeholder keys.
	direct := strings.Replace(u, iotDataHost, strings.TrimPrefix(srv.URL, "https://"), 1)
	_, dresp, err := websocket.Dial(ctx, direct, &websocket.DialOptions{HTTPClient: srv.Client(), Host: iotDataHost})
	if err == nil || dresp == nil || dresp.StatusCode != http.StatusForbidden {
		t.Errorf("direct dial with the client's own signature: %v, want 403", err)
	}
}

// TestWebSocketE2EUnsignedUpgradePassesThrough: a handshake with no
// signature is relayed as it came (the proxy adds none) and works.
func TestWebSocketE2EUnsignedUpgradePassesThrough(t *testing.T) {
	var sawAuth atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.URL.Query().Get("X-Amz-Signature") != "" {
			sawAuth.Store(true)
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, msg)
		}
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ws-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{
		Args: []string{"--resolve", iotDataHost + ":443=" + srv.URL, "--upstream-ca", caFile, "--no-time-bootstrap"},
		Env:  proxyCredsEnv(proxyKeys),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+iotDataHost+"/open", &websocket.DialOptions{HTTPClient: p.Client()})
	if err != nil {
		t.Fatalf("dial through the proxy: %v\nproxy logs:\n%s", err, p.Logs())
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q %v", got, err)
	}
	if sawAuth.Load() {
		t.Error("the proxy signed an upgrade that arrived unsigned")
	}
}
