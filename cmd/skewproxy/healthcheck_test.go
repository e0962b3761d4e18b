package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// TestHealthcheckAgainstRunningProxy runs the release-built binary's
// healthcheck (what the image's HEALTHCHECK and the pod probes run) against
// running proxies: one synced to chrony, one with no time source.
func TestHealthcheckAgainstRunningProxy(t *testing.T) {
	creds := proxyCredsEnv(proxyKeys)
	synced := startProxy(t, proxyOptions{Args: []string{"--time-source", "ntp://" + ntptest.Start(t)}, Env: creds})
	synced.waitReady(t, 5*time.Second)
	unsynced := startProxy(t, proxyOptions{Args: []string{"--time-source", "ntp://127.0.0.1:1"}, Env: creds})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	addr := func(p *runningProxy) string { return strings.TrimPrefix(p.AdminURL, "http://") }
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "synced proxy is ready", args: []string{"--admin-listen", addr(synced)}, wantCode: 0, wantOut: "200"},
		{name: "unsynced proxy is not ready", args: []string{"--admin-listen", addr(unsynced)}, wantCode: 1, wantOut: "503"},
		{name: "unsynced proxy is alive", args: []string{"--admin-listen", addr(unsynced), "--path", "/healthz"}, wantCode: 0, wantOut: "200"},
		{name: "nothing listening", args: []string{"--admin-listen", closedAddr}, wantCode: 1},
		{name: "bad path", args: []string{"--admin-listen", addr(synced), "--path", "readyz"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := runBinary(t, "", nil, append([]string{"healthcheck"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, stderr, tt.wantCode, tt.wantOut)
			}
		})
	}
	// SKEWPROXY_ADMIN_LISTEN works as the flag does (images set env, not flags).
	if _, _, code := runBinary(t, "", []string{"SKEWPROXY_ADMIN_LISTEN=" + addr(synced)}, "healthcheck"); code != 0 {
		t.Errorf("healthcheck with SKEWPROXY_ADMIN_LISTEN: exit %d", code)
	}
}
