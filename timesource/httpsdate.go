package timesource

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// httpsDateUncertainty is the extra uncertainty of a DateProbe observation
// (on top of half its round trip and half the Date header's one-second
// precision). The time is only as good as one TLS round trip and one Date
// header, stamped somewhere inside a server we know nothing else about
// (behind a load balancer, perhaps, whose nodes need not agree): it is a
// bootstrap, which any NTP answer replaces by selection.
const httpsDateUncertainty = 2 * time.Second

// defaultProbeTimeout bounds a whole probe when DateProbe.Timeout is zero.
const defaultProbeTimeout = 5 * time.Second

// maxProbeHead caps the bytes read for the answer's status line and
// headers, so that a server streaming headers forever cannot exhaust memory
// before the deadline.
const maxProbeHead = 64 << 10

// maxInformational caps the 1xx answers skipped before the final one.
const maxInformational = 5

// probeUserAgent is the User-Agent of a probe's request.
const probeUserAgent = "skewproxy-time-bootstrap"

// DateProbe learns the time from the Date header of one HTTPS answer, in
// the manner of tlsdate: it bootstraps a clock whose host time may be
// years off, before NTP answers or where NTP is blocked.
//
// The host clock cannot judge the server's certificate (it may be wrong by
// more than the certificate's lifetime), so the chain is verified at the
// time the server reports: a forged Date must still come with a chain that
// was valid then, from a server holding the certificate's key. The request
// is one unauthenticated HEAD carrying no credentials.
//
// It is not a general HTTPS client and it never sets the host clock.
type DateProbe struct {
	// Dial opens the TCP connection; nil uses a net.Dialer (no proxy).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Roots are the trusted root certificates; nil uses the system roots.
	Roots *x509.CertPool
	// NotBefore is the build-time floor (zero: none). A Date before it, or
	// absurdly far in the future, is refused, by the rule of
	// Config.NotBefore.
	NotBefore time.Time
	// Timeout bounds the whole probe: dial, TLS handshake, request and
	// answer (default 5 s).
	Timeout time.Duration
}

// Probe dials addr ("host:port"), shakes hands with TLS for serverName,
// sends one "HEAD / HTTP/1.1" and returns the answer's Date header as an
// Observation for clock.Observe: Source "https-date:"+serverName,
// Precision one second, a wide Uncertainty (2 s), and Sent and Received
// read from clock just before the request was sent and just after the
// answer's headers arrived. clock must be the clock that will observe it.
//
// It refuses an answer without exactly one Date header, one carrying Age
// (a cached answer says nothing about now), a Date at which the server's
// certificate chain does not verify for serverName against Roots, and a
// Date that fails the NotBefore rule. Every error starts with "bootstrap
// time from SERVERNAME:" (quoted when it is not a valid name); it wraps
// ctx's error, or context.DeadlineExceeded after Timeout, when that ended
// the probe.
func (p DateProbe) Probe(ctx context.Context, clock Clock, serverName, addr string) (Observation, error) {
	o, err := p.probe(ctx, clock, serverName, addr)
	if err != nil {
		name := serverName
		if !validServerName(name) {
			name = strconv.Quote(name) // keep line breaks out of logs
		}
		return Observation{}, fmt.Errorf("bootstrap time from %s: %w", name, err)
	}
	return o, nil
}

// probe is Probe without the error prefix.
func (p DateProbe) probe(ctx context.Context, clock Clock, serverName, addr string) (Observation, error) {
	if clock == nil {
		return Observation{}, errors.New("no clock to read Sent and Received from")
	}
	if !validServerName(serverName) {
		return Observation{}, fmt.Errorf("bad server name %q: want a DNS name or an IP address", serverName)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// fail names the step that failed and, when ctx ended the probe (the
	// I/O error is then only a closed connection), ctx's error too.
	fail := func(step string, err error) error {
		cerr := ctx.Err()
		if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is ctx's: whichever fires first,
			// say the probe timed out.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("%s: %w (%w)", step, err, cerr)
		}
		return fmt.Errorf("%s: %w", step, err)
	}

	dial := p.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return Observation{}, fail("dial "+addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// ctx's deadline, set by WithTimeout above, carries a monotonic reading.
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil { // monotonic: deadline
		return Observation{}, fail("set deadline", err)
	}

	tconn := tls.Client(conn, &tls.Config{
		ServerName: serverName,
		// The host clock may be years off, so crypto/tls cannot judge the
		// certificate's validity period: the chain is verified below, at
		// the time the server reports. The handshake still proves that the
		// server holds the leaf's key.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
		Time:               clock.Now,
	})
	if err := tconn.HandshakeContext(ctx); err != nil {
		return Observation{}, fail("TLS handshake with "+addr, err)
	}

	host := serverName
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	req := "HEAD / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: " + probeUserAgent + "\r\nConnection: close\r\n\r\n"
	sent := clock.Now()
	if _, err := io.WriteString(tconn, req); err != nil {
		return Observation{}, fail("send request", err)
	}
	br := bufio.NewReader(io.LimitReader(tconn, maxProbeHead))
	var resp *http.Response
	for range maxInformational + 1 {
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil {
			return Observation{}, fail("read answer", err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	received := clock.Now()
	if resp.StatusCode < 200 {
		return Observation{}, fmt.Errorf("no final answer after %d informational ones", maxInformational+1)
	}

	dates := resp.Header.Values("Date")
	if len(dates) != 1 {
		return Observation{}, fmt.Errorf("answer (%s) carries %d Date headers, want one", resp.Status, len(dates))
	}
	if _, ok := resp.Header["Age"]; ok {
		return Observation{}, fmt.Errorf("answer carries an Age header (%q): a cached answer says nothing about now", resp.Header.Get("Age"))
	}
	date, err := http.ParseTime(dates[0])
	if err != nil {
		return Observation{}, fmt.Errorf("parse Date header %q: %w", dates[0], err)
	}

	certs := tconn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return Observation{}, errors.New("server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         p.Roots,
		Intermediates: inter,
		DNSName:       serverName,
		CurrentTime:   date,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return Observation{}, fmt.Errorf("certificate chain does not verify at the server's time %s: %w",
			date.UTC().Format(time.RFC3339), err)
	}
	if err := checkPlausible(date, p.NotBefore); err != nil {
		return Observation{}, fmt.Errorf("server time refused: %w", err)
	}

	return Observation{
		Source:      "https-date:" + serverName,
		ServerTime:  date,
		Precision:   time.Second,
		Uncertainty: httpsDateUncertainty,
		Sent:        sent,
		Received:    received,
	}, nil
}

// validServerName reports whether s can name a TLS server and go into a
// Host header: a DNS name or an IP address, nothing else (no port, no
// spaces or line breaks).
func validServerName(s string) bool {
	if s == "" {
		return false
	}
	if strings.Contains(s, ":") {
		return net.ParseIP(s) != nil
	}
	return validHostName(s)
}
