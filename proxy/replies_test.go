package proxy

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestDescribeUpstreamError(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"dns", &netDNSError, 502, "DNS lookup"},
		{"tls", &tlsError{host: "x", err: errors.New("boom")}, 502, "TLS handshake"},
		{"other", errors.New("weird"), 502, "failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := describeUpstreamError("sts.amazonaws.com", tc.err)
			if status != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "boom") {
				t.Errorf("got %d %q", status, msg)
			}
		})
	}
}

var netDNSError = net.DNSError{Err: "no such host", Name: "sts.amazonaws.com", IsNotFound: true}
