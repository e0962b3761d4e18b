package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWriteResponseFlushesWhenUpstreamPauses proves the flush rule of
// writeResponse: what the upstream has sent reaches the client while the
// upstream pauses, with or without a Content-Length, and the whole body
// arrives intact.
func TestWriteResponseFlushesWhenUpstreamPauses(t *testing.T) {
	cases := []struct {
		name   string
		length int64 // -1: unknown (chunked to the client)
	}{
		{"content-length", int64(len("first|second"))},
		{"chunked", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			release := make(chan struct{})
			go func() {
				pw.Write([]byte("first|"))
				<-release
				pw.Write([]byte("second"))
				pw.Close()
			}()
			bufs := newCopyBufPool()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: pr, ContentLength: tc.length}
				writeResponse(w, http.NewResponseController(w), resp, 5*time.Second, bufs)
			}))
			defer srv.Close()
			defer close(release)

			// The request runs aside: without the flush even the header
			// stays in the proxy's buffer, and Get would not return.
			type result struct {
				resp *http.Response
				err  error
			}
			got := make([]byte, len("first|"))
			done := make(chan result, 1)
			go func() {
				resp, err := srv.Client().Get(srv.URL)
				if err == nil {
					_, err = io.ReadFull(resp.Body, got)
				}
				done <- result{resp, err}
			}()
			var resp *http.Response
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatal(r.err)
				}
				resp = r.resp
			case <-time.After(3 * time.Second):
				t.Fatal("the part sent before the upstream paused did not reach the client")
			}
			defer resp.Body.Close()
			release <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if body := string(got) + string(rest); body != "first|second" {
				t.Fatalf("body %q", body)
			}
			if tc.length >= 0 && resp.ContentLength != tc.length {
				t.Fatalf("Content-Length %d, want %d", resp.ContentLength, tc.length)
			}
			if tc.length < 0 && !strings.EqualFold(strings.Join(resp.TransferEncoding, ","), "chunked") {
				t.Fatalf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
			}
		})
	}
}
