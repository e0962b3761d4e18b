package proxy

import (
	"crypto/subtle"
	"net/http"
)

// authenticate requires the Basic Proxy-Authorization of ProxyAuth on every
// request to the listener (CONNECT included) when it is configured.
func (e *engine) authenticate(next http.Handler) http.Handler {
	if e.authValue == "" {
		return next
	}
	want := []byte(e.authValue)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Proxy-Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("Proxy-Authenticate", `Basic realm="skewproxy"`)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusProxyAuthRequired)
			w.Write([]byte("proxy authentication required\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
