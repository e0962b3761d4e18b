package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/skewproxy/skewproxy/signer"
)

// removeHopHeaders deletes the headers named in Connection, then the fixed
// hop-by-hop list (signer.IsHopByHop). A request's "TE: trailers" is kept, as ReverseProxy does,
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
	for name := range h {
		if signer.IsHopByHop(name) { // the one list, shared with the signer
			delete(h, name)
		}
	}
	if keepTE {
		h.Set("Te", "trailers")
	}
}
