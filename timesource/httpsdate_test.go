package timesource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// probeServerName is the name the test certificates are issued for (with
// 127.0.0.1).
const probeServerName = "time.test"

// testPKI is a root CA, an intermediate CA and a leaf for probeServerName
// and 127.0.0.1, all valid only within one window of time.
type testPKI struct {
	roots *x509.CertPool
	// cert is the leaf with the intermediate, as a server sends them.
	cert tls.Certificate
}

// newTestPKI returns a P-256 PKI whose three certificates are valid from
// notBefore to notAfter.
func newTestPKI(t *testing.T, notBefore, notAfter time.Time) testPKI {
	t.Helper()
	var serial int64
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
		if parent == nil { // self-signed
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	ca := func(name string) *x509.Certificate {
		return &x509.Certificate{
			Subject:               pkix.Name{CommonName: name},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
	}
	root, rootKey := issue(ca("skewproxy test root"), nil, nil)
	inter, interKey := issue(ca("skewproxy test intermediate"), root, rootKey)
	leaf, leafKey := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: probeServerName},
		DNSNames:    []string{probeServerName},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, inter, interKey)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return testPKI{
		roots: roots,
		cert:  tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: leafKey, Leaf: leaf},
	}
}

// startDateServer serves HTTPS on loopback with cert; each answer's Date
// is truth() and edit, when set, changes its headers. It returns the
// server's address and the requests it received.
func startDateServer(t *testing.T, cert tls.Certificate, truth func() time.Time, edit func(http.Header)) (string, func() []*http.Request) {
	t.Helper()
	var mu sync.Mutex
	var reqs []*http.Request
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r)
		mu.Unlock()
		w.Header().Set("Date", truth().Format(http.TimeFormat))
		if edit != nil {
			edit(w.Header())
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() []*http.Request {
		mu.Lock()
		defer mu.Unlock()
		return reqs
	}
}

func TestDateProbeLearnsShiftedTime(t *testing.T) {
	tests := []struct {
		name string
		// shift is true time minus the host clock.
		shift time.Duration
	}{
		{name: "true time 10 years ahead", shift: 10 * 365 * 24 * time.Hour},
		{name: "true time 10 years behind", shift: -10 * 365 * 24 * time.Hour},
		{name: "true time 2 hours ahead", shift: 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			truth := func() time.Time { return time.Now().Add(tt.shift) }
			// Valid only around true time: never at the host's time.
			pki := newTestPKI(t, truth().Add(-time.Hour), truth().Add(time.Hour))
			addr, reqs := startDateServer(t, pki.cert, truth, nil)
			dials := 0
			probe := DateProbe{
				Roots:     pki.roots,
				NotBefore: truth().Add(-30 * 24 * time.Hour), // a build a month before true time
				Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials++
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
			}
			c := New(Config{})
			o, err := probe.Probe(context.Background(), c, probeServerName, addr)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if dials != 1 {
				t.Fatalf("Dial called %d times, want 1", dials)
			}
			if o.Source != "https-date:time.test" || o.Precision != time.Second || o.Uncertainty != httpsDateUncertainty {
				t.Fatalf("Observation = %+v", o)
			}
			if o.Received.Before(o.Sent) || o.Received.Sub(o.Sent) > time.Second {
				t.Fatalf("Sent %v, Received %v: want a short exchange read from the clock", o.Sent, o.Received)
			}

			c.Observe(o)
			st := c.Status()
			if !st.Synced || !st.Passive || st.Source != "https-date:time.test" {
				t.Fatalf("Status = %+v, want synced to the probe", st)
			}
			if err := c.Now().Sub(truth()); absDur(err) > 3*time.Second {
				t.Fatalf("Now() - truth = %v, want within a few seconds", err)
			}
			if absDur(st.Offset+tt.shift) > 3*time.Second {
				t.Fatalf("Offset = %v, want about %v", st.Offset, -tt.shift)
			}

			rs := reqs()
			if len(rs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(rs))
			}
			r := rs[0]
			if r.Method != http.MethodHead || r.URL.Path != "/" || r.Host != probeServerName || !r.Close ||
				r.UserAgent() != "skewproxy-time-bootstrap" || r.ProtoMinor != 1 {
				t.Fatalf("request = %s %s %s Host %q Close %v UA %q", r.Method, r.URL, r.Proto, r.Host, r.Close, r.UserAgent())
			}
			for name := range r.Header {
				if name != "User-Agent" && name != "Connection" {
					t.Fatalf("request carries header %s: want only User-Agent and Connection", name)
				}
			}
		})
	}
}

func TestDateProbeRefusesUntrustworthyAnswers(t *testing.T) {
	tests := []struct {
		name       string
		serverName string                          // default probeServerName
		otherRoots bool                            // trust an unrelated root
		notBefore  func(truth time.Time) time.Time // default: none
		date       func(truth time.Time) string    // default: truth
		edit       func(h http.Header)             // changes the answer's headers
		check      func(t *testing.T, err error)   // beyond the common checks
		wantErr    string
	}{
		{name: "wrong server name", serverName: "other.test", wantErr: "valid for time.test, not other.test"},
		{name: "untrusted root", otherRoots: true, wantErr: "unknown authority",
			check: func(t *testing.T, err error) {
				var uae x509.UnknownAuthorityError
				if !errors.As(err, &uae) {
					t.Fatalf("error %v is not an x509.UnknownAuthorityError", err)
				}
			}},
		{name: "Date after the certificate expired", date: func(tr time.Time) string { return tr.Add(2 * time.Hour).Format(http.TimeFormat) },
			wantErr: "does not verify at the server's time"},
		{name: "Date before the certificate is valid", date: func(tr time.Time) string { return tr.Add(-2 * time.Hour).Format(http.TimeFormat) },
			wantErr: "expired or is not yet valid"},
		{name: "Date before NotBefore", notBefore: func(tr time.Time) time.Time { return tr.Add(24 * time.Hour) },
			wantErr: "before the build-time floor"},
		{name: "Date more than 100 years after NotBefore", notBefore: func(tr time.Time) time.Time { return tr.AddDate(-101, 0, 0) },
			wantErr: "after the latest plausible time"},
		{name: "cached answer (Age)", edit: func(h http.Header) { h.Set("Age", "120") }, wantErr: "Age header"},
		{name: "no Date header", edit: func(h http.Header) { h["Date"] = nil }, wantErr: "0 Date headers"},
		{name: "two Date headers", edit: func(h http.Header) { h.Add("Date", h.Get("Date")) }, wantErr: "2 Date headers"},
		{name: "unparsable Date", date: func(time.Time) string { return "yesterday" }, wantErr: `parse Date header "yesterday"`},
		{name: "server name with a port", serverName: "time.test:443", wantErr: "bad server name"},
		{name: "server name with a line break", serverName: "time.test\r\nAuthorization: x", wantErr: "bad server name",
			check: func(t *testing.T, err error) {
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Fatalf("error %q carries a line break", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			truth := time.Now().Add(5 * 365 * 24 * time.Hour)
			pki := newTestPKI(t, truth.Add(-time.Hour), truth.Add(time.Hour))
			date := truth.Format(http.TimeFormat)
			if tt.date != nil {
				date = tt.date(truth)
			}
			addr, _ := startDateServer(t, pki.cert, time.Now, func(h http.Header) {
				h.Set("Date", date)
				if tt.edit != nil {
					tt.edit(h)
				}
			})
			probe := DateProbe{Roots: pki.roots}
			if tt.otherRoots {
				probe.Roots = newTestPKI(t, truth.Add(-time.Hour), truth.Add(time.Hour)).roots
			}
			if tt.notBefore != nil {
				probe.NotBefore = tt.notBefore(truth)
			}
			name := probeServerName
			if tt.serverName != "" {
				name = tt.serverName
			}
			c := New(Config{})
			o, err := probe.Probe(context.Background(), c, name, addr)
			if err == nil {
				t.Fatalf("Probe accepted the answer: %+v", o)
			}
			prefix := "bootstrap time from " + name + ": "
			if !validServerName(name) {
				prefix = "bootstrap time from " + strconv.Quote(name) + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Probe error = %q, want it to start %q and say %q", err, prefix, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
			if o != (Observation{}) {
				t.Fatalf("Probe returned %+v with its error", o)
			}
		})
	}
}

// startRawServer accepts connections on loopback (through TLS when cfg is
// set) and hands each to serve, which may block until done is closed. The
// connection is closed when serve returns.
func startRawServer(t *testing.T, cfg *tls.Config, serve func(conn net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				serve(conn, done)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestDateProbeBrokenServers(t *testing.T) {
	handshake := func(conn net.Conn) bool { return conn.(*tls.Conn).Handshake() == nil }
	tests := []struct {
		name   string
		tls    bool
		serve  func(conn net.Conn, done <-chan struct{})
		cancel bool // cancel the context after 100 ms
		// long sets Timeout to 10 s instead of 300 ms: the probe must end
		// long before it does.
		long    bool
		wantErr string
		wantIs  error
	}{
		{name: "TCP server that never answers", serve: func(_ net.Conn, done <-chan struct{}) { <-done },
			wantErr: "TLS handshake"},
		{name: "TLS server that never answers HTTP", tls: true, serve: func(conn net.Conn, done <-chan struct{}) {
			if handshake(conn) {
				<-done
			}
		}, wantErr: "read answer", wantIs: context.DeadlineExceeded},
		{name: "cancelled while waiting", tls: true, cancel: true, long: true, serve: func(conn net.Conn, done <-chan struct{}) {
			if handshake(conn) {
				<-done
			}
		}, wantErr: "read answer", wantIs: context.Canceled},
		{name: "garbage instead of HTTP", tls: true, serve: func(conn net.Conn, _ <-chan struct{}) {
			io.WriteString(conn, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
		}, wantErr: "malformed HTTP"},
		{name: "plain TCP garbage instead of TLS", serve: func(conn net.Conn, _ <-chan struct{}) {
			io.WriteString(conn, "220 smtp.example ESMTP\r\n")
		}, wantErr: "TLS handshake"},
		{name: "headers without end", tls: true, long: true, serve: func(conn net.Conn, done <-chan struct{}) {
			if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\n"); err != nil {
				return
			}
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := io.WriteString(conn, "X-Filler: "+strings.Repeat("y", 1000)+"\r\n"); err != nil {
					return
				}
			}
		}, wantErr: "read answer"},
		{name: "endless informational answers", tls: true, serve: func(conn net.Conn, done <-chan struct{}) {
			io.WriteString(conn, strings.Repeat("HTTP/1.1 103 Early Hints\r\nDate: "+time.Now().Format(http.TimeFormat)+"\r\n\r\n", 10))
			<-done
		}, wantErr: "informational"},
	}
	pki := newTestPKI(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *tls.Config
			if tt.tls {
				cfg = &tls.Config{Certificates: []tls.Certificate{pki.cert}}
			}
			addr := startRawServer(t, cfg, tt.serve)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			probe := DateProbe{Roots: pki.roots, Timeout: 300 * time.Millisecond}
			if tt.long {
				probe.Timeout = 10 * time.Second
			}
			if tt.cancel {
				stop := time.AfterFunc(100*time.Millisecond, cancel)
				defer stop.Stop()
			}
			start := time.Now()
			o, err := probe.Probe(ctx, New(Config{}), probeServerName, addr)
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("Probe took %v: not bounded by its timeout", took)
			}
			if err == nil {
				t.Fatalf("Probe accepted the answer: %+v", o)
			}
			if !strings.HasPrefix(err.Error(), "bootstrap time from time.test: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Probe error = %q, want it to say %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("Probe error %q does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

// TestBootstrapperLearnsOnceAndStops: the first Bootstrap call sets an
// unsynced clock from the server, later calls do not probe again, and a
// failed probe is not repeated within the retry interval.
func TestBootstrapperLearnsOnceAndStops(t *testing.T) {
	cases := []struct {
		name      string
		shift     time.Duration
		badName   bool
		wantSync  bool
		wantDials int
	}{
		{"host 10 years behind: learned, then no more probes", 10 * 365 * 24 * time.Hour, false, true, 1},
		{"wrong name: refused, not retried within the interval", 2 * time.Hour, true, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			trueNow := func() time.Time { return time.Now().Add(tc.shift) }
			pki := newTestPKI(t, trueNow().Add(-time.Hour), trueNow().Add(time.Hour))
			addr, _ := startDateServer(t, pki.cert, trueNow, nil)
			var dials atomic.Int32
			probe := DateProbe{Roots: pki.roots, Timeout: 2 * time.Second,
				Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				}}
			clock := New(Config{})
			b := NewBootstrapper(clock, probe, time.Hour, nil)
			name := probeServerName
			if tc.badName {
				name = "elsewhere.example.com"
			}
			for range 3 {
				b.Bootstrap(context.Background(), name, addr)
			}
			if got := clock.Status().Synced; got != tc.wantSync {
				t.Fatalf("synced = %t, want %t", got, tc.wantSync)
			}
			if got := int(dials.Load()); got != tc.wantDials {
				t.Errorf("%d probes, want %d", got, tc.wantDials)
			}
			if tc.wantSync {
				if d := clock.Now().Sub(trueNow()); d > 3*time.Second || d < -3*time.Second {
					t.Errorf("clock off true time by %v after bootstrap", d)
				}
				if b.Needed() {
					t.Error("Needed() true after a successful bootstrap")
				}
			}
		})
	}
}
