package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel describes an intercepted CONNECT tunnel to its requests.
type tunnel struct {
	host   string // the CONNECT target, host[:port]
	scheme string // "https" once TLS is terminated, "http" for plain HTTP in the tunnel
}

// tlsRecordHandshake is the first byte of a TLS ClientHello.
const tlsRecordHandshake = 0x16

// serveIntercepted takes over an intercepted CONNECT: it answers 200,
// terminates TLS with a leaf for the target and serves the requests inside
// with a net/http server of the tunnel's own. That server applies the same
// MaxHeaderBytes (431), ReadHeaderTimeout and IdleTimeout as the listener:
// goproxy's own MITM loop reads requests inside a tunnel with no size or
// time limit, so a client could grow one header line without bound.
func (e *engine) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Host
	if host == "" {
		host = r.Host
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "skewproxy: cannot open a tunnel on this connection", http.StatusInternalServerError)
		return
	}
	major, minor := r.ProtoMajor, r.ProtoMinor
	if major == 0 {
		major, minor = 1, 1
	}
	if _, err := fmt.Fprintf(conn, "HTTP/%d.%d 200 OK\r\n\r\n", major, minor); err != nil {
		conn.Close()
		return
	}
	// The client may have sent its ClientHello with the CONNECT: those
	// bytes are in the hijacked reader.
	var c net.Conn = conn
	if brw != nil && brw.Reader.Buffered() > 0 {
		c = &readBufferedConn{Conn: conn, r: brw.Reader}
	}
	if !e.startTunnel() {
		c.Close()
		return
	}
	go func() {
		defer e.tunnels.Done()
		e.runTunnel(c, host)
	}()
}

// runTunnel terminates TLS (when the client speaks it) and serves the
// tunnel's requests until the client leaves or the proxy stops.
func (e *engine) runTunnel(conn net.Conn, host string) {
	defer conn.Close()
	headerTimeout := e.readHeaderTimeout()
	conn.SetReadDeadline(time.Now().Add(headerTimeout))
	// One byte tells TLS from plain HTTP; it is replayed in front of the
	// connection rather than held in a 4 KiB bufio.Reader for the life of
	// the tunnel.
	pc := &peekedConn{Conn: conn}
	if _, err := io.ReadFull(conn, pc.first[:]); err != nil {
		return
	}
	var c net.Conn = pc
	tun := &tunnel{host: host, scheme: "http"}
	if pc.first[0] == tlsRecordHandshake {
		cfg, err := e.p.CA.TLSConfigForHost(host)
		if err != nil {
			e.log.Warn("no leaf certificate for intercepted host", "host", host, "err", err)
			return
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Server(c, cfg)
		conn.SetDeadline(time.Now().Add(headerTimeout))
		if err := tc.HandshakeContext(e.hardCtx); err != nil {
			e.log.Debug("client TLS handshake in tunnel failed", "host", host, "err", redactText(err.Error()))
			return
		}
		c, tun.scheme = tc, "https"
	}
	conn.SetDeadline(time.Time{})
	srv := &http.Server{
		Handler:           e.tunnelHandler(tun),
		ConnContext:       withClientConn,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       e.idleTimeout(),
		MaxHeaderBytes:    e.maxHeaderBytes(),
		ErrorLog:          e.tunnelErrorLog,
		// The tunnel speaks HTTP/1.1 only (NextProtos above): a non-nil,
		// empty TLSNextProto keeps Serve from setting up an HTTP/2 server
		// for every tunnel (about 1.4 KiB of heap per idle connection).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln := newOneConnListener(c)
	srv.Serve(ln)
	// Serve returns when the connection is done; wait for its goroutine.
	ln.wait()
}

// tunnelHandler runs every request of one tunnel through the pipeline and
// streams the answer back. Each body read from the client and each write to
// it gets a fresh IdleTimeout deadline, so a client that stalls mid-body or
// stops reading the answer is dropped; a long wait for the upstream (a
// 15-minute Lambda invoke) is not a stall.
func (e *engine) tunnelHandler(tun *tunnel) http.Handler {
	idle := e.idleTimeout()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Host == "" {
			r.Host = tun.host
		}
		var body *idleBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &idleBody{ReadCloser: r.Body, rc: rc, idle: idle}
			r.Body = body
		}
		resp := e.roundTrip(r, tun)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			e.relayUpgraded(w, resp, idle)
			return
		}
		if body != nil && !body.sawEOF.Load() {
			// The rest of the body is still on the wire (an early answer,
			// a refusal, a broken upload): close after the answer, and
			// bound net/http's read of what remains.
			resp.Close = true
			rc.SetReadDeadline(time.Now().Add(idle))
		}
		writeResponse(w, rc, resp, idle, e.copyBufs)
	})
}

// copyBufSize is the size of the buffers writeResponse copies bodies
// through.
const copyBufSize = 32 << 10

// newCopyBufPool returns the pool of writeResponse's copy buffers: one
// buffer per response would be 32 KiB of garbage for a 70-byte answer.
func newCopyBufPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
}

// writeResponse copies resp to w under the one flush policy
// (flushOnPause): a body that arrived whole costs one write; a pause of the
// upstream (an event stream, a chunked answer sent piece by piece) flushes
// what the client has so far; the last bytes are flushed still under the
// write deadline. An upstream body that fails part way aborts the
// connection, so the client sees a truncated answer rather than a
// complete-looking one.
func writeResponse(w http.ResponseWriter, rc *http.ResponseController, resp *http.Response, idle time.Duration, bufs *sync.Pool) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	// Nothing the upstream did not send: no sniffed Content-Type, no Date.
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = nil
	}
	if resp.ContentLength >= 0 && h.Get("Content-Length") == "" && bodyAllowed(resp.StatusCode) {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	if resp.Close {
		h.Set("Connection", "close")
	}
	rc.SetWriteDeadline(time.Now().Add(idle))
	w.WriteHeader(resp.StatusCode)
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	body := &flushOnPause{body: resp.Body, flush: rc.Flush}
	for {
		n, err := body.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := w.Write(buf[:n]); werr != nil {
				panic(http.ErrAbortHandler)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A failed flush, or an upstream body that broke: do not let
			// net/http end a chunked answer cleanly.
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
	// The last bytes go out under the deadline: net/http's own flush
	// after the handler has none.
	if rc.Flush() != nil {
		panic(http.ErrAbortHandler)
	}
	rc.SetWriteDeadline(time.Time{})
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// idleBody gives each read of a request body a fresh deadline and clears
// it at the end of the body: net/http then watches the connection in the
// background while the request is upstream, and a deadline there would
// cancel a long request.
type idleBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	idle   time.Duration
	sawEOF atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.sawEOF.Store(true)
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// peekedConn replays the one byte read to tell TLS from plain HTTP, then
// reads from the connection.
type peekedConn struct {
	net.Conn
	first    [1]byte
	replayed bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.replayed || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.replayed = true
	// Return the byte alone: a further read could block while the
	// client waits for an answer to what it already sent.
	p[0] = c.first[0]
	return 1, nil
}

// readBufferedConn reads through r, which holds bytes already read from
// the connection.
type readBufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *readBufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConnListener hands out one connection, then blocks until it is closed.
type oneConnListener struct {
	mu     sync.Mutex
	conn   net.Conn
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{addr: c.LocalAddr(), closed: make(chan struct{})}
	l.conn = &notifyCloseConn{Conn: c, done: l.done}
	return l
}

func (l *oneConnListener) done() { l.once.Do(func() { close(l.closed) }) }

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

// wait blocks until the connection is closed.
func (l *oneConnListener) wait() { <-l.closed }

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		// Never accepted: close it here.
		c.Close()
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// notifyCloseConn calls done once closed.
type notifyCloseConn struct {
	net.Conn
	done func()
}

func (c *notifyCloseConn) Close() error {
	err := c.Conn.Close()
	c.done()
	return err
}
