package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// relRawUpstream is a plain-TCP upstream that runs behave on each accepted
// connection, for faults net/http servers cannot produce (a reset half way
// through a request or an answer).
type relRawUpstream struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen int // requests whose headers arrived
}

func relStartRawUpstream(t *testing.T, behave func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader)) *relRawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &relRawUpstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				behave(u, c.(*net.TCPConn), bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

// readHead reads a request's headers and counts it.
func (u *relRawUpstream) readHead(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.seen++
	u.mu.Unlock()
	return req, nil
}

func (u *relRawUpstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen
}

// reset closes c with a TCP RST.
func relReset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// TestUpstreamResetsNeverHang: whatever the upstream breaks, the client
// gets a clear 502/504 or a body that ends in an error (never a
// complete-looking truncated answer), in bounded time.
func TestUpstreamResetsNeverHang(t *testing.T) {
	payload := bytes.Repeat([]byte("p"), 1<<20)
	cases := []struct {
		name          string
		behave        func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader)
		headerTimeout time.Duration
		status        int    // 0: a 200 whose body must fail
		message       string // in the proxy's answer
	}{
		{"reset mid-request", func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader) {
			req, err := u.readHead(br)
			if err != nil {
				return
			}
			io.CopyN(io.Discard, req.Body, 4<<10)
			relReset(c)
		}, 0, http.StatusBadGateway, "upstream lambda.us-east-1.amazonaws.com closed or reset the connection"},
		{"closed before answering", func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader) {
			req, err := u.readHead(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			c.Close()
		}, 0, http.StatusBadGateway, "closed or reset the connection"},
		{"no answer within the response-header timeout", func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader) {
			req, err := u.readHead(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.Copy(io.Discard, br) // until the proxy gives up and closes
		}, 500 * time.Millisecond, http.StatusGatewayTimeout, "did not answer in time"},
		{"reset mid-response with Content-Length", func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader) {
			req, err := u.readHead(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
			c.Write(bytes.Repeat([]byte("r"), 5000))
			time.Sleep(50 * time.Millisecond)
			relReset(c)
		}, 0, 0, ""},
		{"reset mid-response, chunked", func(u *relRawUpstream, c *net.TCPConn, br *bufio.Reader) {
			req, err := u.readHead(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n")
			c.Write(bytes.Repeat([]byte("r"), 5000))
			io.WriteString(c, "\r\n1388\r\nonly-part-of-a-chunk")
			time.Sleep(50 * time.Millisecond)
			relReset(c)
		}, 0, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := relStartRawUpstream(t, tc.behave)
			fx := relStart(t, relOptions{
				noFake:  true,
				resolve: []string{"lambda.us-east-1.amazonaws.com:443=http://" + up.ln.Addr().String()},
				topts:   func(o *TransportOptions) { o.ResponseHeaderTimeout = tc.headerTimeout },
			})
			c := fx.client()
			c.Timeout = 15 * time.Second
			start := time.Now()
			resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", "application/json", bytes.NewReader(payload))
			if err != nil {
				t.Fatalf("client error instead of an answer: %v", err)
			}
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			elapsed := time.Since(start)
			if elapsed > 10*time.Second {
				t.Fatalf("the client waited %v", elapsed)
			}
			if up.requests() == 0 {
				t.Fatal("the upstream never saw the request")
			}
			if tc.status == 0 {
				if resp.StatusCode != 200 || readErr == nil {
					t.Fatalf("truncated answer looked complete: status %d, %d bytes, read error %v", resp.StatusCode, len(body), readErr)
				}
				if !errors.Is(readErr, io.ErrUnexpectedEOF) && !strings.Contains(readErr.Error(), "reset") && !strings.Contains(readErr.Error(), "EOF") {
					t.Fatalf("unexpected read error: %v", readErr)
				}
				t.Logf("client got 200, %d bytes, then %v (after %v)", len(body), readErr, elapsed)
				return
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.message) || resp.Header.Get("X-Skewproxy-Error") == "" {
				t.Fatalf("answer %d %q (read error %v), want %d from the proxy mentioning %q", resp.StatusCode, body, readErr, tc.status, tc.message)
			}
			t.Logf("client got %d %s (after %v)", resp.StatusCode, body, elapsed)
		})
	}
}
