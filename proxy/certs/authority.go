package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Authority is a CA that issues and caches leaf certificates for
// intercepted hosts. It is safe for concurrent use.
type Authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte

	cache    *lru.Cache[string, *tls.Certificate]
	onLookup func(hit bool) // nil: nobody listens

	mu       sync.Mutex
	inflight map[string]*issueCall

	// base is the server tls.Config every handshake clones. It carries the
	// session ticket keys, so all connections share them and a client can
	// resume a session on a new connection.
	base *tls.Config
}

type issueCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

func newAuthority(cert *x509.Certificate, key crypto.Signer, certPEM []byte, o options) (*Authority, error) {
	cache, err := lru.New[string, *tls.Certificate](o.cacheSize)
	if err != nil {
		return nil, fmt.Errorf("certs: leaf cache: %w", err)
	}
	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		return nil, fmt.Errorf("certs: session ticket key: %w", err)
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, Time: o.now}
	base.SetSessionTicketKeys([][32]byte{ticketKey})
	return &Authority{
		cert:     cert,
		key:      key,
		certPEM:  certPEM,
		cache:    cache,
		inflight: make(map[string]*issueCall),
		base:     base,
		onLookup: o.onLookup,
	}, nil
}

// CertPEM returns the CA certificate in PEM form (what `skewproxy ca export`
// prints and clients trust).
func (a *Authority) CertPEM() []byte { return append([]byte(nil), a.certPEM...) }

// Certificate returns the parsed CA certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// TLSConfigForHost returns a server tls.Config presenting the leaf for host
// (a DNS name or IP literal; a port and a trailing dot are ignored). All
// returned configs share one set of session ticket keys.
func (a *Authority) TLSConfigForHost(host string) (*tls.Config, error) {
	leaf, err := a.Leaf(host)
	if err != nil {
		return nil, err
	}
	cfg := a.base.Clone()
	cfg.Certificates = []tls.Certificate{*leaf}
	return cfg, nil
}

// Leaf returns the cached leaf certificate for host, issuing it on first
// use. Concurrent first requests for one host issue a single leaf.
func (a *Authority) Leaf(host string) (*tls.Certificate, error) {
	name, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	if c, ok := a.cache.Get(name); ok {
		a.observe(true)
		return c, nil
	}
	a.observe(false)
	a.mu.Lock()
	if c, ok := a.cache.Get(name); ok {
		a.mu.Unlock()
		return c, nil
	}
	if call, ok := a.inflight[name]; ok {
		a.mu.Unlock()
		<-call.done
		return call.cert, call.err
	}
	call := &issueCall{done: make(chan struct{})}
	a.inflight[name] = call
	a.mu.Unlock()

	call.cert, call.err = a.issue(name)
	if call.err == nil {
		a.cache.Add(name, call.cert)
	}
	a.mu.Lock()
	delete(a.inflight, name)
	a.mu.Unlock()
	close(call.done)
	return call.cert, call.err
}

func (a *Authority) observe(hit bool) {
	if a.onLookup != nil {
		a.onLookup(hit)
	}
}

// issue makes a new ECDSA P-256 leaf for name.
func (a *Authority) issue(name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign leaf for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse leaf for %s: %w", name, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, a.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// normalizeHost strips a port, brackets and a trailing dot and lower-cases
// the name; it refuses names that cannot go into a certificate.
func normalizeHost(host string) (string, error) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	host = strings.ToLower(host)
	if host == "" {
		return "", errors.New("certs: empty host name")
	}
	if net.ParseIP(host) != nil {
		return host, nil
	}
	if len(host) > 253 {
		return "", fmt.Errorf("certs: host name too long (%d bytes)", len(host))
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("certs: invalid host name %q", host)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("certs: invalid host name %q", host)
			}
		}
	}
	return host, nil
}
