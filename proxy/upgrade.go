package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// relayUpgraded finishes a protocol switch inside an intercepted tunnel (a
// WebSocket handshake the upstream accepted with 101): it takes over the
// client connection, sends it the 101, and relays bytes both ways, without
// buffering a message, until either side closes or stays silent for idle.
// resp.Body is the upstream connection (net/http hands a 101's body over
// as an io.ReadWriteCloser); closing it ends the exchange.
func (e *engine) relayUpgraded(w http.ResponseWriter, resp *http.Response, idle time.Duration) {
	defer resp.Body.Close()
	up, ok := resp.Body.(io.ReadWriter)
	if !ok {
		e.log.Warn("upstream accepted a protocol switch without a usable connection")
		http.Error(w, "skewproxy: upstream protocol switch failed", http.StatusBadGateway)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		e.log.Warn("cannot take over the client connection for a protocol switch", "err", err)
		return
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(idle))
	// Written by hand: http.Response.Write would add Connection: close to
	// a response without a length.
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return
	}
	if err := resp.Header.Write(brw); err != nil {
		return
	}
	if _, err := brw.WriteString("\r\n"); err != nil || brw.Flush() != nil {
		return
	}
	client.SetDeadline(time.Time{})
	relay(client, brw.Reader, up, resp.Body, idle)
}

// relay copies client→upstream and upstream→client until one direction
// ends, then closes both so the other ends too. Each read waits at most
// idle (net.Conn deadlines on the client side; the upstream side is closed
// by the client side's end).
func relay(client net.Conn, clientBuffered *bufio.Reader, up io.ReadWriter, upCloser io.Closer, idle time.Duration) {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			client.Close()
			upCloser.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stop()
		buf := make([]byte, 32<<10)
		for {
			client.SetReadDeadline(time.Now().Add(idle))
			n, err := clientBuffered.Read(buf)
			if n > 0 {
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		defer stop()
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				client.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	wg.Wait()
}
