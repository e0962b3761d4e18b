package proxy

import (
	"io"
	"net"
	"sync"
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

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
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

// trackingListener registers each accepted connection in a connSet. With
// max > 0, a connection that would exceed max open ones is handed to refuse
// instead and Accept goes on to the next.
type trackingListener struct {
	net.Listener
	set    *connSet
	max    int
	refuse func(net.Conn)
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max > 0 && l.set.len() >= l.max {
			l.refuse(c)
			continue
		}
		tc := &trackedConn{Conn: c, set: l.set}
		l.set.add(tc)
		return tc, nil
	}
}

// trackedConn removes itself from its set when closed.
type trackedConn struct {
	net.Conn
	set       *connSet
	closeOnce sync.Once
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

// tooManyConns is the answer to a connection beyond MaxClientConns.
const tooManyConns = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Skewproxy-Error: TooManyConnections\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 57\r\n\r\n" +
	"skewproxy: too many client connections, try again later\r\n"

// refuseConn answers 503 to a connection beyond MaxClientConns and closes
// it, in a goroutine bounded in number and time; past maxRefusing such
// goroutines the connection is closed at once.
func (e *engine) refuseConn(c net.Conn) {
	if e.refusing.Add(1) > maxRefusing {
		e.refusing.Add(-1)
		c.Close()
		return
	}
	e.refusals.Add(1)
	go func() {
		defer e.refusals.Done()
		defer e.refusing.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, tooManyConns); err != nil {
			return
		}
		// Half-close and read what the client sent, so that closing does
		// not reset the connection before the client reads the answer.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
	e.log.Debug("client connection refused: too many open", "max_client_conns", e.p.MaxClientConns)
}
