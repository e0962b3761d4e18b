// Package iottest runs a stand-in for AWS IoT Core's credentials provider
// on loopback, for tests: mutual TLS that verifies the device certificate
// chain (at the world's true time), a registry of device certificates and
// the things attached to them, role aliases, and credentials issued in the
// credentials provider's JSON.
//
// It is test support only: it never talks to AWS and its certificates are
// made up at start.
package iottest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures Start.
type Options struct {
	// Now is the world's true time (required): the server's certificate
	// is dated by it, client certificates are verified by it and the
	// credentials expire by it.
	Now func() time.Time
	// RoleAlias is the one role alias that exists (default "skewproxy-gateway").
	RoleAlias string
	// ThingName is the thing attached to the device certificate (default "gateway-1").
	ThingName string
	// Credentials are issued on every request, with a fresh expiration.
	// Default: made up at start (ASIA... key, random secret and token).
	Credentials Credentials
	// Lifetime is how long issued credentials live (default 1h).
	Lifetime time.Duration
	// CertValidity makes the endpoint's and the device's certificates
	// valid from CertValidity before to CertValidity after Now() at start
	// (default a year).
	CertValidity time.Duration
}

// Credentials are the keys the server issues.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// Device is a device certificate and its key, in files.
type Device struct {
	CertFile, KeyFile string
}

// Server is a running stand-in endpoint. Create it with Start.
type Server struct {
	// Endpoint is "127.0.0.1:PORT", for --iot-credentials-endpoint.
	Endpoint string
	// CAFile holds the root of the endpoint's certificate (for --iot-ca).
	CAFile string
	// Device is a registered device certificate attached to ThingName.
	Device Device

	opts     Options
	srv      *httptest.Server
	dir      string
	deviceCA *ca
	pool     *x509.CertPool

	mu         sync.Mutex
	registered map[string]string // certificate SHA-256 -> attached thing
	fails      []Failure
	log        []Request
}

// Failure is a forced answer (see FailNext).
type Failure struct {
	Status  int
	Message string
}

// Request is one request the server answered.
type Request struct {
	Time      time.Time // true time at arrival
	ThingName string    // the x-amzn-iot-thingname header
	Path      string
	Status    int
	Issued    bool // credentials were issued
}

// Start runs the server until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Now == nil {
		t.Fatal("iottest: Options.Now is required")
	}
	if o.RoleAlias == "" {
		o.RoleAlias = "skewproxy-gateway"
	}
	if o.ThingName == "" {
		o.ThingName = "gateway-1"
	}
	if o.Lifetime <= 0 {
		o.Lifetime = time.Hour
	}
	if o.CertValidity <= 0 {
		o.CertValidity = 365 * 24 * time.Hour
	}
	if o.Credentials.AccessKeyID == "" {
		o.Credentials = Credentials{
			AccessKeyID:     "ASIAIOT" + strings.ToUpper(randomHex(t, 7)),
			SecretAccessKey: randomHex(t, 20),
			SessionToken:    "iot-session-" + randomHex(t, 32),
		}
	}
	s := &Server{opts: o, dir: t.TempDir(), registered: map[string]string{}}
	now := o.Now()
	serverCA := newCA(t, "iottest endpoint root", now, o.CertValidity)
	s.deviceCA = newCA(t, "iottest device CA", now, o.CertValidity)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.deviceCA.cert)
	s.CAFile = s.write(t, "endpoint-ca.pem", serverCA.certPEM())
	s.Device = s.NewDevice(t, true)

	serverCert := serverCA.issue(t, now, o.CertValidity, false,
		[]string{"localhost", "*.credentials.iot.us-east-1.amazonaws.com"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serverCert},
		// As AWS IoT: any certificate is taken at the handshake and
		// judged here, the chain at true time.
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: s.verifyClient,
		Time:                  o.Now,
	}
	s.srv.Config.ReadHeaderTimeout = 10 * time.Second
	// Refused handshakes are what some tests are about: keep them quiet.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	s.Endpoint = strings.TrimPrefix(s.srv.URL, "https://")
	return s
}

// NewDevice issues a device certificate from the server's device CA; a
// registered one is attached to Options.ThingName, an unregistered one is
// refused with 403 "Certificate is invalid on this endpoint" as AWS does.
func (s *Server) NewDevice(t testing.TB, registered bool) Device {
	t.Helper()
	cert := s.deviceCA.issue(t, s.opts.Now(), s.opts.CertValidity, true, nil, nil)
	d := s.writeDevice(t, cert)
	if registered {
		s.mu.Lock()
		s.registered[fingerprint(cert.Leaf)] = s.opts.ThingName
		s.mu.Unlock()
	}
	return d
}

// ForeignDevice issues a device certificate from a CA the server does not
// know: the TLS handshake refuses it.
func (s *Server) ForeignDevice(t testing.TB) Device {
	t.Helper()
	other := newCA(t, "some other CA", s.opts.Now(), s.opts.CertValidity)
	return s.writeDevice(t, other.issue(t, s.opts.Now(), s.opts.CertValidity, true, nil, nil))
}

func (s *Server) writeDevice(t testing.TB, cert tls.Certificate) Device {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	id := randomHex(t, 4)
	return Device{
		CertFile: s.write(t, "device-"+id+".pem.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})),
		KeyFile:  s.write(t, "device-"+id+".private.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
}

// Credentials are the keys the server issues.
func (s *Server) Credentials() Credentials { return s.opts.Credentials }

// RoleAlias is the role alias that exists.
func (s *Server) RoleAlias() string { return s.opts.RoleAlias }

// ThingName is the thing attached to registered devices.
func (s *Server) ThingName() string { return s.opts.ThingName }

// FailNext makes the next len(f) requests that pass the TLS handshake get
// these answers instead.
func (s *Server) FailNext(f ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, f...)
}

// Requests returns the requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// Issued is how many times credentials were issued.
func (s *Server) Issued() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Issued {
			n++
		}
	}
	return n
}

// verifyClient checks the client chain against the device CA at true time.
func (s *Server) verifyClient(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("iottest: no client certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         s.pool,
		Intermediates: inter,
		CurrentTime:   s.opts.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Time: s.opts.Now(), ThingName: r.Header.Get("x-amzn-iot-thingname"), Path: r.URL.Path}
	status, body := s.answer(r, &rec)
	rec.Status = status
	s.mu.Lock()
	s.log = append(s.log, rec)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-RequestId", "iottest-"+fmt.Sprint(rec.Time.UnixNano()))
	if status != http.StatusOK {
		w.Header().Set("x-amzn-ErrorType", errorType(status))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// answer decides one request's answer.
func (s *Server) answer(r *http.Request, rec *Request) (int, any) {
	msg := func(m string) any { return map[string]string{"message": m} }
	s.mu.Lock()
	var forced *Failure
	if len(s.fails) > 0 {
		forced = &s.fails[0]
		s.fails = s.fails[1:]
	}
	thing, registered := "", false
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		thing, registered = s.registered[fingerprint(r.TLS.PeerCertificates[0])]
	}
	s.mu.Unlock()
	if forced != nil {
		return forced.Status, msg(forced.Message)
	}
	alias, ok := strings.CutPrefix(r.URL.Path, "/role-aliases/")
	alias, ok2 := strings.CutSuffix(alias, "/credentials")
	if r.Method != http.MethodGet || !ok || !ok2 {
		return http.StatusNotFound, msg("Not Found")
	}
	if !registered {
		return http.StatusForbidden, msg("Certificate is invalid on this endpoint")
	}
	if alias != s.opts.RoleAlias {
		return http.StatusNotFound, msg("Role alias does not exist")
	}
	if rec.ThingName != thing {
		return http.StatusForbidden, msg("Thing name does not match the certificate's attached thing")
	}
	rec.Issued = true
	c := s.opts.Credentials
	return http.StatusOK, map[string]any{"credentials": map[string]string{
		"accessKeyId":     c.AccessKeyID,
		"secretAccessKey": c.SecretAccessKey,
		"sessionToken":    c.SessionToken,
		"expiration":      rec.Time.Add(s.opts.Lifetime).UTC().Format(time.RFC3339),
	}}
}

func errorType(status int) string {
	switch status {
	case http.StatusNotFound:
		return "ResourceNotFoundException"
	case http.StatusForbidden, http.StatusUnauthorized:
		return "AccessDeniedException"
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	default:
		return "InternalFailureException"
	}
}

func (s *Server) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ca is a made-up certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB, name string, now time.Time, validity time.Duration) *ca {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"skewproxy tests"}},
		NotBefore:             now.Add(-validity),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key}
}

func (c *ca) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// issue makes a leaf: a client certificate, or a server one for names and ips.
func (c *ca) issue(t testing.TB, now time.Time, validity time.Duration, client bool, names []string, ips []net.IP) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "iottest leaf"},
		NotBefore:    now.Add(-validity),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	if client {
		tmpl.Subject.CommonName = "AWS IoT Certificate"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
