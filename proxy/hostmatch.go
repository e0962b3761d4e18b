package proxy

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// DefaultInterceptPatterns returns the host patterns intercepted when no
// --intercept flag is given: every AWS endpoint domain.
func DefaultInterceptPatterns() []string {
	return []string{"*.amazonaws.com", "*.amazonaws.com.cn", "*.api.aws", "*.on.aws"}
}

// HostMatcher decides whether a host is intercepted (TLS terminated and
// re-signed). A pattern is either an exact host name or "*." followed by a
// domain; "*." stands for one or more whole labels, so "*.amazonaws.com"
// matches "sts.amazonaws.com" and "a.b.amazonaws.com" but neither
// "amazonaws.com", "evilamazonaws.com" nor
// "lambda.us-east-1.amazonaws.com.evil.test". Matching is case-insensitive
// and ignores a port and a trailing dot. The zero value matches nothing.
type HostMatcher struct {
	exact    map[string]bool
	suffixes []string // each with a leading "."
	patterns []string
}

// ParseHostPatterns builds a HostMatcher from patterns.
func ParseHostPatterns(patterns []string) (*HostMatcher, error) {
	m := &HostMatcher{exact: make(map[string]bool)}
	for _, p := range patterns {
		norm, err := normalizePattern(p)
		if err != nil {
			return nil, err
		}
		if slices.Contains(m.patterns, norm) {
			continue
		}
		m.patterns = append(m.patterns, norm)
		if rest, ok := strings.CutPrefix(norm, "*."); ok {
			m.suffixes = append(m.suffixes, "."+rest)
		} else {
			m.exact[norm] = true
		}
	}
	return m, nil
}

func normalizePattern(p string) (string, error) {
	orig := p
	p = strings.ToLower(strings.TrimSpace(p))
	p = strings.TrimSuffix(p, ".")
	wild := strings.HasPrefix(p, "*.")
	name := strings.TrimPrefix(p, "*.")
	if name == "" {
		return "", fmt.Errorf("intercept pattern %q: empty host", orig)
	}
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		if wild {
			return "", fmt.Errorf("intercept pattern %q: a wildcard cannot cover an IP address", orig)
		}
		return ip.String(), nil
	}
	if err := checkHostName(name); err != nil {
		return "", fmt.Errorf("intercept pattern %q: %w", orig, err)
	}
	if wild {
		return "*." + name, nil
	}
	return name, nil
}

// checkHostName accepts lower-case DNS names made of letters, digits, '-'
// and '_' in non-empty labels.
func checkHostName(name string) error {
	if len(name) > 253 {
		return errors.New("host name too long")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return errors.New("label longer than 63 bytes")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("character %q not allowed (only one leading \"*.\" wildcard is)", r)
			}
		}
	}
	return nil
}

// normalizeHost strips a port, IPv6 brackets and a trailing dot and
// lower-cases host. It returns "" for an empty host.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimPrefix(host, "[")
	host = strings.TrimSuffix(host, "]")
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	// Only what could be an IP literal is parsed (canonical form, "::1"
	// for "0:0::1"): a failed parse allocates, and this runs several
	// times per request for host names.
	if couldBeIP(host) {
		if ip := net.ParseIP(host); ip != nil {
			return ip.String()
		}
	}
	return host
}

// Match reports whether host (optionally with a port) is intercepted.
func (m *HostMatcher) Match(host string) bool {
	if m == nil {
		return false
	}
	h := normalizeHost(host)
	if h == "" {
		return false
	}
	if m.exact[h] {
		return true
	}
	if net.ParseIP(h) != nil {
		return false
	}
	for _, s := range m.suffixes {
		prefix, ok := strings.CutSuffix(h, s)
		if !ok || prefix == "" {
			continue
		}
		if checkHostName(prefix) == nil {
			return true
		}
	}
	return false
}

// Patterns returns the normalised patterns in the order given.
func (m *HostMatcher) Patterns() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.patterns)
}

// couldBeIP reports whether s holds only characters of an IPv4 or IPv6
// literal.
func couldBeIP(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '.' || c == ':') {
			return false
		}
	}
	return s != ""
}
