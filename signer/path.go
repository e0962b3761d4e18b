package signer

// The canonical path and query of a request, as SigV4 signs them: the
// escaped path on the wire (S3: escaped once, never normalised; other
// services: dot segments and double slashes removed, escaped twice by the
// SDK's rules), and the sorted, strictly escaped query.

import (
	"net/url"
	"sort"
	"strings"
)

// wirePath is the escaped path that goes on the wire for u: the path part
// of u.Opaque when set (as the aws signer reads it), else u.EscapedPath().
func wirePath(u *url.URL) string {
	p := ""
	if u.Opaque != "" {
		o := u.Opaque
		if i := strings.IndexByte(o, '?'); i >= 0 {
			o = o[:i]
		}
		if rest, ok := strings.CutPrefix(o, "//"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				p = rest[i:]
			}
		} else {
			p = o
		}
	} else {
		p = escapedPath(u)
	}
	if p == "" {
		p = "/"
	}
	return p
}

// escapedPath is u.EscapedPath() without its allocation in the common
// case of a RawPath (a path with escapes, e.g. an S3 key with a space):
// when RawPath holds only unreserved bytes, '/' and valid %XX escapes and
// decodes to Path, EscapedPath returns RawPath, and so does this; every
// other URL goes to EscapedPath itself.
func escapedPath(u *url.URL) string {
	if u.RawPath != "" && rawPathDecodesTo(u.RawPath, u.Path) {
		return u.RawPath
	}
	return u.EscapedPath()
}

// rawPathDecodesTo reports whether raw consists of unreserved bytes, '/'
// and %XX escapes only, and percent-decodes to path.
func rawPathDecodesTo(raw, path string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case isUnreserved(c) || c == '/':
		case c == '%' && i+2 < len(raw) && isHexDigit(raw[i+1]) && isHexDigit(raw[i+2]):
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		default:
			return false
		}
		if j >= len(path) || path[j] != c {
			return false
		}
		j++
	}
	return j == len(path)
}

// normalizePath removes "." and ".." segments and empty segments from an
// escaped path, as non-S3 services (and botocore, the JS SDK and
// aws-c-auth) do before building the canonical URI. The leading slash and
// a trailing slash are kept.
func normalizePath(p string) string {
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	segs := make([]string, 0, 8)
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	var b strings.Builder
	if strings.HasPrefix(p, "/") {
		b.WriteByte('/')
	}
	b.WriteString(strings.Join(segs, "/"))
	if len(segs) > 0 && strings.HasSuffix(p, "/") {
		b.WriteByte('/')
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// canonicalQuery encodes q the SigV4 way: each name and value escaped
// (space as %20), pairs sorted after encoding.
func canonicalQuery(q url.Values) string {
	type pair struct{ k, v string }
	pairs := make([]pair, 0, len(q))
	for k, vs := range q {
		ek := queryEscape(k)
		for _, v := range vs {
			pairs = append(pairs, pair{ek, queryEscape(v)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
