package signer

import (
	"io"
	"net/http"
	"net/url"
	"strings"
)

// prepState is everything Prepare decides about a request that is
// re-signed (not presigned). It lives inside the Prepared, so that one
// allocation holds the lot: the hot path of the proxy is Prepare then Sign.
type prepState struct {
	s     *Signer
	auth  Authorization
	names [12]string // backing of auth.SignedHeaders for most requests
	plan  signPlan
	body  body
	// getBody is the outgoing GetBody of a buffered body, made once.
	getBody func() (io.ReadCloser, error)
	// tmpl is the outgoing request without Header and Body; Sign copies it.
	tmpl http.Request
	url  url.URL // tmpl's URL
	// hdrs is the outgoing header set without Authorization, X-Amz-Date and
	// X-Amz-Security-Token: a snapshot taken by Prepare, so that a later
	// change to the incoming request does not change what Sign sends.
	hdrs    []headerKV
	hdrBuf  [12]headerKV
	hashVal [1]string // value of an added X-Amz-Content-Sha256
	// express is set for a request carrying the token of an S3 Express
	// session the signer knows: Sign signs with the session's credentials.
	express *expressPlan
}

// headerKV is one header of the outgoing request, its key as received.
type headerKV struct {
	key  string
	vals []string
}

// signedHeader is one header to sign: its lower-case name and the index
// in prepState.hdrs of the one key that carries it.
type signedHeader struct {
	name string
	hdr  int
}

// setTemplate builds the outgoing request template and header snapshot
// from req: absolute URL, Host set, no RequestURI, no body, the client's
// signing headers left out and X-Amz-Content-Sha256 added when required.
func (st *prepState) setTemplate(req *http.Request, host string, pl payload) {
	st.tmpl = *req
	st.url = *req.URL
	if st.url.Scheme == "" {
		st.url.Scheme = "https"
	}
	if st.url.Host == "" {
		st.url.Host = host
	}
	t := &st.tmpl
	t.URL = &st.url
	t.Host = host
	t.RequestURI = ""
	t.Body, t.GetBody = nil, nil
	t.Header = nil
	t.Trailer = req.Trailer.Clone() // the server fills req.Trailer while the body streams

	st.hdrs = st.hdrBuf[:0]
	for k, v := range req.Header {
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "X-Amz-Date") ||
			strings.EqualFold(k, "X-Amz-Security-Token") || (pl.addHashHeader && k == "X-Amz-Content-Sha256") {
			continue
		}
		st.hdrs = append(st.hdrs, headerKV{key: k, vals: v})
	}
	if pl.addHashHeader {
		st.hashVal[0] = pl.hash
		st.hdrs = append(st.hdrs, headerKV{key: "X-Amz-Content-Sha256", vals: st.hashVal[:1:1]})
	}
}

// lookup finds the header named name (lower-case) in the snapshot: the
// index of the first key that matches and how many keys match.
func (st *prepState) lookup(name string) (first, n int) {
	for i, kv := range st.hdrs {
		if strings.EqualFold(kv.key, name) {
			if n == 0 {
				first = i
			}
			n++
		}
	}
	return first, n
}

// connectionToken reports whether the Connection header names name.
func (st *prepState) connectionToken(name string) bool {
	for _, kv := range st.hdrs {
		if !strings.EqualFold(kv.key, "Connection") {
			continue
		}
		for _, v := range kv.vals {
			for v != "" {
				var tok string
				tok, v, _ = strings.Cut(v, ",")
				if strings.EqualFold(strings.TrimSpace(tok), name) {
					return true
				}
			}
		}
	}
	return false
}

// chooseSignedHeaders picks the headers to sign into st.plan.signed: the
// client's own SignedHeaders when it signed, else every x-amz-* header plus
// content-type and content-md5. x-amz-content-sha256 is always signed when
// present; hop-by-hop headers never are. A name carried by two keys that
// differ only in case makes the request sdkOnly (the SDK signer merges
// them; the fast signer does not).
func (st *prepState) chooseSignedHeaders(auth *Authorization) {
	plan := &st.plan
	plan.signed = plan.signedBuf[:0]
	if auth != nil {
		for _, n := range auth.SignedHeaders {
			st.maybeSign(n)
		}
	} else {
		for _, kv := range st.hdrs {
			n := strings.ToLower(kv.key)
			if strings.HasPrefix(n, "x-amz-") || n == "content-type" || n == "content-md5" {
				st.maybeSign(n)
			}
		}
	}
	st.maybeSign("x-amz-content-sha256")
	if st.express != nil {
		st.maybeSign("x-amz-s3session-token") // as the SDKs sign it
	}
	// Insertion sort: a few names, and no allocation.
	s := plan.signed
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].name < s[j-1].name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// maybeSign adds the lower-case name n to the signed set when the request
// carries it and it may be signed.
func (st *prepState) maybeSign(n string) {
	plan := &st.plan
	if IsHopByHop(n) || isNeverSigned(n) || strings.HasPrefix(n, "proxy-") {
		return
	}
	for _, sg := range plan.signed {
		if sg.name == n {
			return
		}
	}
	first, count := st.lookup(n)
	if count == 0 || st.connectionToken(n) {
		return
	}
	if count > 1 {
		plan.sdkOnly = true
	}
	plan.signed = append(plan.signed, signedHeader{name: n, hdr: first})
}

// isUnreserved reports whether c is an RFC 3986 unreserved character, the
// bytes SigV4 never escapes.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// simpleQueryMaxParams bounds the parameters of a simple query, far below
// the limit of url.ParseQuery.
const simpleQueryMaxParams = 1000

// simpleQuery reports whether raw is a query that url.ParseQuery accepts
// and whose names it does not change: names of unreserved characters only,
// values of unreserved characters, '=' and valid %XX escapes, no '+' and
// no ';'.
func simpleQuery(raw string) bool {
	params := 1
	inName := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '&':
			inName = true
			params++
		case c == '=':
			inName = false
		case isUnreserved(c):
		case c == '%' && !inName && i+2 < len(raw) && isHexDigit(raw[i+1]) && isHexDigit(raw[i+2]):
			i += 2
		default:
			return false
		}
	}
	return params <= simpleQueryMaxParams
}

// rawHasPresignKey is isPresigned for a simple query, unparsed.
func rawHasPresignKey(raw string) bool {
	for raw != "" {
		var pair, name string
		pair, raw, _ = strings.Cut(raw, "&")
		name, _, _ = strings.Cut(pair, "=")
		switch name {
		case "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm":
			return true
		}
	}
	return false
}

// isCanonicalQuery reports whether raw already is its own SigV4 canonical
// query: every pair name=value, every byte unreserved or an upper-case %XX
// escape of a byte that must be escaped, pairs in (name, value) order.
// Then parsing and re-encoding it (what the SDK signer does) gives raw.
func isCanonicalQuery(raw string) bool {
	if raw == "" {
		return true
	}
	var prevK, prevV string
	for i := 0; ; i++ {
		// An empty pair ("a=1&&b=2", a trailing '&') is dropped by the
		// parser: such a query is not canonical.
		pair, rest, more := strings.Cut(raw, "&")
		k, v, ok := strings.Cut(pair, "=")
		if !ok || !canonicalComponent(k) || !canonicalComponent(v) {
			return false
		}
		if i > 0 && (k < prevK || k == prevK && v < prevV) {
			return false
		}
		if !more {
			return true
		}
		prevK, prevV, raw = k, v, rest
	}
}

func canonicalComponent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			continue
		}
		if c != '%' || i+2 >= len(s) {
			return false
		}
		h, l := s[i+1], s[i+2]
		if !isUpperHex(h) || !isUpperHex(l) || isUnreserved(unhex(h)<<4|unhex(l)) {
			return false
		}
		i += 2
	}
	return true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// sanitizeHost is the host the SDK signer signs and sends for host on a
// request with this URL scheme: a default port (or an empty one) dropped,
// as aws-sdk-go-v2's SanitizeHostForHeader does (brackets of an IPv6
// literal go with it).
func sanitizeHost(host, scheme string) string {
	port := portOnly(host)
	if port != "" && isDefaultPort(scheme, port) {
		return stripPort(host)
	}
	return host
}

func stripPort(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return hostport
	}
	if i := strings.IndexByte(hostport, ']'); i != -1 {
		return strings.TrimPrefix(hostport[:i], "[")
	}
	return hostport[:colon]
}

func portOnly(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return ""
	}
	if i := strings.Index(hostport, "]:"); i != -1 {
		return hostport[i+len("]:"):]
	}
	if strings.Contains(hostport, "]") {
		return ""
	}
	return hostport[colon+len(":"):]
}

func isDefaultPort(scheme, port string) bool {
	if port == "" {
		return true
	}
	scheme = strings.ToLower(scheme) // not EqualFold: exactly as the SDK
	return scheme == "http" && port == "80" || scheme == "https" && port == "443"
}
