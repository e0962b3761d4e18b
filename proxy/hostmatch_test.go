package proxy

import (
	"strings"
	"testing"
)

func TestHostMatcher(t *testing.T) {
	m, err := ParseHostPatterns(append(DefaultInterceptPatterns(), "minio.local", "127.0.0.1", "[::1]"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		host string
		want bool
	}{
		{"regional service", "lambda.us-east-1.amazonaws.com", true},
		{"with port", "lambda.us-east-1.amazonaws.com:443", true},
		{"upper case", "STS.AmazonAWS.com", true},
		{"trailing dot", "sts.amazonaws.com.", true},
		{"trailing dot and port", "sts.amazonaws.com.:443", true},
		{"many labels", "bucket.name.s3.us-east-1.amazonaws.com", true},
		{"china", "s3.cn-north-1.amazonaws.com.cn", true},
		{"api.aws", "lambda.us-east-1.api.aws", true},
		{"exact host", "minio.local:9000", true},
		{"ip exact", "127.0.0.1:8443", true},
		{"ipv6 exact", "[::1]:443", true},
		{"bare domain", "amazonaws.com", false},
		{"suffix attack", "lambda.us-east-1.amazonaws.com.evil.test", false},
		{"no label boundary", "evilamazonaws.com", false},
		{"no label boundary deeper", "x.evilamazonaws.com", false},
		{"empty label", "a..amazonaws.com", false},
		{"leading dot", ".amazonaws.com", false},
		{"other ip", "10.0.0.1", false},
		{"empty", "", false},
		{"port only", ":443", false},
		{"exact is not wildcard", "x.minio.local", false},
		{"cn without wildcard target", "amazonaws.com.cn", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Match(tc.host); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
	var nilMatcher *HostMatcher
	if nilMatcher.Match("sts.amazonaws.com") {
		t.Error("nil matcher matched")
	}
}

func TestParseHostPatternsErrors(t *testing.T) {
	for _, p := range []string{"", "*.", "*", "a.*.com", "*.*.com", "exa mple.com", "a..b", "*.10.0.0.1", "http://x.com"} {
		t.Run(p, func(t *testing.T) {
			if _, err := ParseHostPatterns([]string{p}); err == nil {
				t.Errorf("pattern %q accepted", p)
			}
		})
	}
}

func FuzzHostMatcher(f *testing.F) {
	for _, s := range []string{"sts.amazonaws.com", "lambda.us-east-1.amazonaws.com.evil.test", "evilamazonaws.com", "A.AMAZONAWS.COM.:443", "[::1]:1", "..amazonaws.com"} {
		f.Add(s)
	}
	m, err := ParseHostPatterns([]string{"*.amazonaws.com"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !m.Match(host) {
			return
		}
		// Anything matched must end, on a label boundary, in amazonaws.com.
		h := normalizeHost(host)
		if !strings.HasSuffix(h, ".amazonaws.com") || len(h) <= len(".amazonaws.com") {
			t.Fatalf("Match(%q) true for normalised %q", host, h)
		}
		if strings.Contains(h, "..") || strings.ContainsAny(h, "/ @:?#") {
			t.Fatalf("Match(%q) true for malformed %q", host, h)
		}
	})
}
