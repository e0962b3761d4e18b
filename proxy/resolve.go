package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Resolver holds --resolve rules: it maps a (host, port) a client asked for
// to another base URL, like curl's --resolve, while the request keeps its
// Host header (and so its signature scope). Rules come from operator
// configuration only, never from a client. Exact host rules win over
// wildcard rules; among wildcards the longest domain wins; ties go to the
// first rule given. The zero value and nil have no rules.
type Resolver struct {
	rules []resolveRule
}

type resolveRule struct {
	host   string // normalised; wildcard rules keep the leading "*."
	port   int
	target *url.URL // scheme://host:port, no path
	raw    string
}

// ParseResolveRules parses rules of the form HOST:PORT=URL, for example
// "lambda.us-east-1.amazonaws.com:443=https://127.0.0.1:8443" or
// "*.s3.us-east-1.amazonaws.com:443=http://127.0.0.1:9000". URL must be
// http or https with a host and no path, query, fragment or credentials; its
// port defaults to the scheme's.
func ParseResolveRules(rules []string) (*Resolver, error) {
	r := &Resolver{}
	for _, raw := range rules {
		rule, err := parseResolveRule(raw)
		if err != nil {
			return nil, err
		}
		r.rules = append(r.rules, rule)
	}
	return r, nil
}

func parseResolveRule(raw string) (resolveRule, error) {
	bad := func(format string, args ...any) (resolveRule, error) {
		return resolveRule{}, fmt.Errorf("resolve rule %q: %s (want HOST:PORT=URL, e.g. sts.amazonaws.com:443=https://127.0.0.1:8443)", raw, fmt.Sprintf(format, args...))
	}
	left, right, ok := strings.Cut(strings.TrimSpace(raw), "=")
	if !ok {
		return bad("missing '='")
	}
	host, portStr, err := net.SplitHostPort(left)
	if err != nil {
		return bad("HOST:PORT: %v", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return bad("port %q is not a number from 1 to 65535", portStr)
	}
	hostPattern, err := normalizePattern(host)
	if err != nil {
		return bad("host: %v", err)
	}
	u, err := url.Parse(right)
	if err != nil {
		return bad("URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("URL scheme must be http or https, not %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("URL has no host")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return bad("URL must be a bare base URL (no credentials, path, query or fragment)")
	}
	tport := u.Port()
	if tport == "" {
		tport = defaultPort(u.Scheme)
	} else if n, err := strconv.Atoi(tport); err != nil || n < 1 || n > 65535 {
		return bad("URL port %q is not a number from 1 to 65535", tport)
	}
	target := &url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(u.Hostname(), tport)}
	return resolveRule{host: hostPattern, port: port, target: target, raw: raw}, nil
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// Lookup returns the base URL (scheme and host:port) that traffic for host
// on port goes to, and whether a rule matched.
func (r *Resolver) Lookup(host string, port int) (*url.URL, bool) {
	if r == nil {
		return nil, false
	}
	h := normalizeHost(host)
	var best *resolveRule
	for i := range r.rules {
		rule := &r.rules[i]
		if rule.port != port {
			continue
		}
		if rule.host == h {
			u := *rule.target
			return &u, true
		}
		if suffix, ok := strings.CutPrefix(rule.host, "*"); ok {
			prefix, ok := strings.CutSuffix(h, suffix)
			if !ok || prefix == "" || checkHostName(prefix) != nil {
				continue
			}
			if best == nil || len(rule.host) > len(best.host) {
				best = rule
			}
		}
	}
	if best == nil {
		return nil, false
	}
	u := *best.target
	return &u, true
}

// Hosts returns the host patterns the rules name (they are always
// intercepted).
func (r *Resolver) Hosts() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.rules))
	for _, rule := range r.rules {
		out = append(out, rule.host)
	}
	return out
}

// tlsTarget is the TLS server name and the address an intercepted request
// for host is sent to, as the upstream transport dials it (--resolve
// applied: an IP target is verified by that IP); ok is false when the
// request travels in plain HTTP.
func (p *Proxy) tlsTarget(req *http.Request, host string) (serverName, addr string, ok bool) {
	port := urlPort(req.URL)
	if rule, found := p.Resolve.Lookup(host, port); found {
		if rule.Scheme != "https" {
			return "", "", false
		}
		return tlsServerName(host, rule), rule.Host, true
	}
	if req.URL.Scheme != "https" {
		return "", "", false
	}
	return host, net.JoinHostPort(host, strconv.Itoa(port)), true
}
