package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connSet tracks every client connection the proxy accepted, including the
// ones goproxy hijacked for CONNECT tunnels, which http.Server forgets; the
// drain closes what is left of them.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newConnSet() *connSet { return &connSet{conns: make(map[*trackedConn]struct{})} }

func (s *connSet) add(c *trackedConn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	all := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// trackingListener registers each accepted connection in a connSet.
type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: l.set}
	l.set.add(tc)
	return tc, nil
}

// trackedConn removes itself from its set when closed. Once a tunnel is
// intercepted, every Read and Write gets a fresh deadline of idle: a client
// that stalls mid-handshake or keeps an idle keep-alive connection open
// longer than that is dropped (goproxy's loop for intercepted tunnels has no
// timeouts of its own).
type trackedConn struct {
	net.Conn
	set       *connSet
	idle      atomic.Int64 // nanoseconds; 0 = no deadline
	pending   atomic.Int64 // idle timeout to apply from the next Write on
	closeOnce sync.Once
}

// setIdleTimeout arms the per-operation deadlines. They take effect from
// the next Write (goproxy's "200 OK" after the hijack): before the hijack,
// net/http aborts its background read with a past deadline that a fresh
// deadline here would undo.
func (c *trackedConn) setIdleTimeout(d time.Duration) { c.pending.Store(int64(d)) }

func (c *trackedConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if d := c.pending.Swap(0); d > 0 {
		c.idle.Store(d)
	}
	if d := time.Duration(c.idle.Load()); d > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.set.remove(c)
		err = c.Conn.Close()
	})
	return err
}

// CloseWrite half-closes a TCP connection (blind tunnels use it).
func (c *trackedConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.Close()
}

// CloseRead half-closes a TCP connection (blind tunnels use it).
func (c *trackedConn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return c.Close()
}

type connKey struct{}

// connFromContext returns the tracked connection a request arrived on.
func connFromContext(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}
