package proxy

import (
	"strings"
	"testing"
)

func TestResolverLookup(t *testing.T) {
	r, err := ParseResolveRules([]string{
		"*.s3.us-east-1.amazonaws.com:443=http://127.0.0.1:9000",
		"*.amazonaws.com:443=https://127.0.0.1:8443",
		"sts.amazonaws.com:443=https://127.0.0.1:9443/",
		"s3.us-east-1.amazonaws.com:80=http://localhost",
		"[::1]:443=https://[::1]:8443",
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		host string
		port int
		want string // "" = no rule
	}{
		{"exact wins over wildcard", "sts.amazonaws.com", 443, "https://127.0.0.1:9443"},
		{"exact case and dot", "STS.amazonaws.com.", 443, "https://127.0.0.1:9443"},
		{"longest wildcard", "bucket.s3.us-east-1.amazonaws.com", 443, "http://127.0.0.1:9000"},
		{"shorter wildcard", "lambda.us-east-1.amazonaws.com", 443, "https://127.0.0.1:8443"},
		{"port must match", "lambda.us-east-1.amazonaws.com", 80, ""},
		{"default target port", "s3.us-east-1.amazonaws.com", 80, "http://localhost:80"},
		{"wildcard needs a label", "s3.us-east-1.amazonaws.com", 443, "https://127.0.0.1:8443"},
		{"suffix attack", "sts.amazonaws.com.evil.test", 443, ""},
		{"ipv6", "::1", 443, "https://[::1]:8443"},
		{"unrelated", "example.test", 443, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, ok := r.Lookup(tc.host, tc.port)
			got := ""
			if ok {
				got = u.String()
			}
			if got != tc.want {
				t.Errorf("Lookup(%q, %d) = %q, want %q", tc.host, tc.port, got, tc.want)
			}
		})
	}
	if got := r.Hosts(); len(got) != 5 || got[0] != "*.s3.us-east-1.amazonaws.com" {
		t.Errorf("Hosts() = %v", got)
	}
}

func TestParseResolveRulesErrors(t *testing.T) {
	cases := []struct {
		name, rule, want string
	}{
		{"no equals", "sts.amazonaws.com:443", "missing '='"},
		{"no port", "sts.amazonaws.com=https://127.0.0.1", "HOST:PORT"},
		{"bad port", "sts.amazonaws.com:99999=https://127.0.0.1", "port"},
		{"bad scheme", "sts.amazonaws.com:443=ftp://127.0.0.1", "scheme"},
		{"no url host", "sts.amazonaws.com:443=https://", "no host"},
		{"path", "sts.amazonaws.com:443=https://127.0.0.1/x", "bare base URL"},
		{"credentials", "sts.amazonaws.com:443=https://u:p@127.0.0.1", "bare base URL"},
		{"query", "sts.amazonaws.com:443=https://127.0.0.1?a=b", "bare base URL"},
		{"bad host", "st s.amazonaws.com:443=https://127.0.0.1", "host"},
		{"wildcard in middle", "a.*.com:443=https://127.0.0.1", "host"},
		{"bad url port", "sts.amazonaws.com:443=https://127.0.0.1:0", "port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseResolveRules([]string{tc.rule})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "HOST:PORT=URL") {
				t.Errorf("error %q does not show the expected form", err)
			}
		})
	}
}

func FuzzParseResolveRules(f *testing.F) {
	for _, s := range []string{
		"*.s3.us-east-1.amazonaws.com:443=http://127.0.0.1:9000",
		"sts.amazonaws.com:443=https://127.0.0.1:8443",
		"[::1]:443=https://[::1]:8443",
		"a:1=http://b", "=", ":=:", "x:443=https://u@h/p?q#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rule string) {
		r, err := ParseResolveRules([]string{rule})
		if err != nil {
			return
		}
		for _, h := range r.Hosts() {
			if _, err := ParseHostPatterns([]string{h}); err != nil {
				t.Fatalf("rule %q gave host %q that is not a valid pattern: %v", rule, h, err)
			}
		}
		u := r.rules[0].target
		if (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Path != "" || u.User != nil {
			t.Fatalf("rule %q gave target %#v", rule, u)
		}
	})
}
