package proxy

import (
	"context"
	"io"
	"net/http"
)

// flushOnPause is the proxy's one flush policy for answers to clients:
// what has been written is flushed when the upstream has nothing more for
// now, that is, when a read of its body came back short without ending it
// (an event stream, a Lambda response stream, a chunked answer sent piece
// by piece). The flush happens at the next Read, just before it would
// wait. A body that arrives whole is written without any extra flush.
//
// Both paths use it: writeResponse for requests inside intercepted tunnels,
// and the body handed to goproxy's io.Copy for absolute-form requests.
type flushOnPause struct {
	body    io.ReadCloser
	flush   func() error
	pending bool
}

func (f *flushOnPause) Read(p []byte) (int, error) {
	if f.pending {
		f.pending = false
		if err := f.flush(); err != nil {
			return 0, err
		}
	}
	n, err := f.body.Read(p)
	if n > 0 && n < len(p) && err == nil {
		f.pending = true
	}
	return n, err
}

func (f *flushOnPause) Close() error { return f.body.Close() }

// clientFlushKey carries the client connection's flush function from the
// listener's handler to the pipeline, through goproxy.
type clientFlushKey struct{}

// withClientFlush returns r carrying flush for the pipeline.
func withClientFlush(r *http.Request, flush func() error) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), clientFlushKey{}, flush))
}

// clientFlush is the flush function withClientFlush put on ctx, or nil.
func clientFlush(ctx context.Context) func() error {
	f, _ := ctx.Value(clientFlushKey{}).(func() error)
	return f
}
