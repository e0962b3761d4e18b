package timesource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultSmearedHosts are the NTP hosts assumed to smear leap seconds: the
// Amazon Time Sync Service on its link-local IPv4 and IPv6 addresses and its
// public name.
var DefaultSmearedHosts = []string{"169.254.169.123", "fd00:ec2::123", "time.aws.com"}

// defaultNTPPort is the NTP port used when a source names none.
const defaultNTPPort = 123

// Source is one parsed --time-source value.
type Source struct {
	// Host is the host name or IP address, without brackets.
	Host string
	// Port is the UDP port (123 unless the URL names one).
	Port int
	// raw is the canonical text, e.g. "ntp://[fd00:ec2::123]".
	raw string
}

// String returns the canonical form of the source, as Status().Source
// reports it: "ntp://HOST" or "ntp://HOST:PORT" when a port was given.
func (s Source) String() string { return s.raw }

// Addr returns "host:port" for dialing (IPv6 addresses bracketed).
func (s Source) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// ParseSource parses "ntp://HOST[:PORT]", including bracketed IPv6 hosts
// such as "ntp://[fd00:ec2::123]". Anything else (another scheme, a path,
// user info, a bad port) is an error that says what was expected.
func ParseSource(s string) (Source, error) {
	const want = "want ntp://HOST[:PORT]"
	if strings.TrimSpace(s) == "" {
		return Source{}, fmt.Errorf("time source %q: empty: %s", s, want)
	}
	if !strings.Contains(s, "://") {
		return Source{}, fmt.Errorf("time source %q: missing scheme: %s", s, want)
	}
	u, err := url.Parse(s)
	if err != nil {
		return Source{}, fmt.Errorf("time source %q: %s: %w", s, want, err)
	}
	if u.Scheme != "ntp" {
		return Source{}, fmt.Errorf("time source %q: unsupported scheme %q: %s", s, u.Scheme, want)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Source{}, fmt.Errorf("time source %q: unexpected user, path, query or fragment: %s", s, want)
	}
	host := u.Hostname()
	if host == "" {
		return Source{}, fmt.Errorf("time source %q: missing host: %s", s, want)
	}
	if strings.Contains(host, ":") {
		if !strings.HasPrefix(u.Host, "[") || net.ParseIP(host) == nil {
			return Source{}, fmt.Errorf("time source %q: bad IPv6 address %q (bracket it, no zone): %s", s, host, want)
		}
	} else if !validHostName(host) {
		return Source{}, fmt.Errorf("time source %q: bad host %q: %s", s, host, want)
	}
	port := defaultNTPPort
	raw := "ntp://" + u.Host
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strings.HasPrefix(p, "+") {
			return Source{}, fmt.Errorf("time source %q: bad port %q: %s", s, p, want)
		}
		port = n
		raw = "ntp://" + net.JoinHostPort(host, strconv.Itoa(n))
	} else if strings.HasSuffix(u.Host, ":") {
		return Source{}, fmt.Errorf("time source %q: empty port: %s", s, want)
	}
	return Source{Host: host, Port: port, raw: raw}, nil
}

// ParseSources parses an ordered --time-source list; it reports every bad
// entry, not only the first.
func ParseSources(ss []string) ([]Source, error) {
	out := make([]Source, 0, len(ss))
	var errs []error
	for _, s := range ss {
		src, err := ParseSource(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, src)
	}
	return out, errors.Join(errs...)
}

// validHostName reports whether h is an IPv4 address or a DNS name made
// of letters, digits, '-', '_' and '.'.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// isSmeared reports whether host is in the list of leap-smearing hosts.
func isSmeared(host string, smeared []string) bool {
	for _, h := range smeared {
		if strings.EqualFold(h, host) {
			return true
		}
		if a, b := net.ParseIP(h), net.ParseIP(host); a != nil && b != nil && a.Equal(b) {
			return true
		}
	}
	return false
}
