package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 plus the
// proxy-specific ones; they never travel past the proxy. (The list follows
// net/http/httputil.ReverseProxy.)
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by curl and old clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonicalised "TE"
	"Trailer", // not Trailers, per RFC 9110
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the headers named in Connection, then the fixed
// hop-by-hop list. A request's "TE: trailers" is kept, as ReverseProxy does,
// since gRPC-style servers need it end to end.
func removeHopHeaders(h http.Header, isRequest bool) {
	keepTE := isRequest && httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
	if keepTE {
		h.Set("Te", "trailers")
	}
}
