package timesource

import (
	"strings"
	"testing"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantStr  string
		wantAddr string
		wantErr  string
	}{
		{name: "ipv4 default port", in: "ntp://169.254.169.123", wantStr: "ntp://169.254.169.123", wantAddr: "169.254.169.123:123"},
		{name: "ipv4 with port", in: "ntp://127.0.0.1:11123", wantStr: "ntp://127.0.0.1:11123", wantAddr: "127.0.0.1:11123"},
		{name: "ipv6 bracketed", in: "ntp://[fd00:ec2::123]", wantStr: "ntp://[fd00:ec2::123]", wantAddr: "[fd00:ec2::123]:123"},
		{name: "ipv6 with port", in: "ntp://[::1]:1123", wantStr: "ntp://[::1]:1123", wantAddr: "[::1]:1123"},
		{name: "host name", in: "ntp://time.aws.com", wantStr: "ntp://time.aws.com", wantAddr: "time.aws.com:123"},
		{name: "trailing slash", in: "ntp://time.aws.com/", wantStr: "ntp://time.aws.com", wantAddr: "time.aws.com:123"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "bare host", in: "169.254.169.123", wantErr: "missing scheme"},
		{name: "other scheme", in: "http://time.aws.com", wantErr: "unsupported scheme"},
		{name: "no host", in: "ntp://", wantErr: "missing host"},
		{name: "port zero", in: "ntp://h:0", wantErr: "bad port"},
		{name: "port too big", in: "ntp://h:99999", wantErr: "bad port"},
		{name: "port not a number", in: "ntp://h:abc", wantErr: "want ntp://HOST[:PORT]"},
		{name: "empty port", in: "ntp://h:", wantErr: "empty port"},
		{name: "unbracketed ipv6", in: "ntp://fd00:ec2::123", wantErr: "want ntp://HOST[:PORT]"},
		{name: "bad bracketed ipv6", in: "ntp://[fd00:zz::1]", wantErr: "want ntp://HOST[:PORT]"},
		{name: "path", in: "ntp://h/x", wantErr: "path"},
		{name: "ipv6 zone", in: "ntp://[fe80::1%25eth0]", wantErr: "no zone"},
		{name: "escaped host", in: "ntp://%25", wantErr: "bad host"},
		{name: "port leading zero normalised", in: "ntp://h:0123", wantStr: "ntp://h:123", wantAddr: "h:123"},
		{name: "user info", in: "ntp://u@h", wantErr: "user"},
		{name: "query", in: "ntp://h?x=1", wantErr: "query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSource(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseSource(%q) = %+v, want error containing %q", tt.in, s, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSource(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSource(%q): %v", tt.in, err)
			}
			if s.String() != tt.wantStr || s.Addr() != tt.wantAddr {
				t.Fatalf("ParseSource(%q) = %q / %q, want %q / %q", tt.in, s.String(), s.Addr(), tt.wantStr, tt.wantAddr)
			}
		})
	}
}

func TestParseSourcesReportsEveryBadEntry(t *testing.T) {
	got, err := ParseSources([]string{"ntp://a", "x", "ntp://b", "http://c"})
	if len(got) != 2 {
		t.Errorf("parsed %d sources, want 2", len(got))
	}
	if err == nil || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), `"http://c"`) {
		t.Errorf("error %v, want both bad entries named", err)
	}
}

func TestIsSmeared(t *testing.T) {
	tests := []struct {
		name string
		host string
		want bool
	}{
		{"aws ipv4", "169.254.169.123", true},
		{"aws ipv6 long form", "fd00:ec2:0:0:0:0:0:123", true},
		{"aws name any case", "Time.AWS.com", true},
		{"loopback", "127.0.0.1", false},
		{"pool", "pool.ntp.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isSmeared(tt.host, DefaultSmearedHosts); got != tt.want {
				t.Errorf("isSmeared(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}
