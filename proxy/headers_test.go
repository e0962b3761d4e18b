package proxy

import (
	"net/http"
	"testing"
)

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":        {"keep-alive, X-Foo"},
		"X-Foo":             {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Te":                {"trailers, deflate"},
		"Upgrade":           {"h2c"},
		"Accept-Encoding":   {"gzip"},
		"X-Amz-Date":        {"20260101T000000Z"},
		"Transfer-Encoding": {"chunked"},
	}
	removeHopHeaders(h, true)
	for _, k := range []string{"Connection", "X-Foo", "Keep-Alive", "Proxy-Connection", "Upgrade", "Transfer-Encoding"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s kept", k)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("Accept-Encoding") != "gzip" || h.Get("X-Amz-Date") == "" {
		t.Errorf("end-to-end headers changed: %v", h)
	}
}
