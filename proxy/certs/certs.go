// Package certs holds skewproxy's certificate authority: the CA that the
// proxy's clients trust, and a cache of the leaf certificates it issues for
// each intercepted host.
//
// It is not a general-purpose PKI: it issues TLS server leaves for the
// intercepting proxy only, keeps no revocation state, and never touches any
// system trust store.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside the state directory used by LoadOrCreate.
const (
	CertFileName = "ca.pem"
	KeyFileName  = "ca-key.pem"
)

// DefaultCacheSize is the number of leaf certificates kept when no
// WithCacheSize option is given.
const DefaultCacheSize = 1024

// Validity of every certificate the authority makes. NotBefore is the Unix
// epoch and NotAfter far in the future so that a client whose clock is wrong
// by years (an IoT gateway that boots in 1970, a host stuck in 2090) still
// completes the handshake: the proxy exists precisely because client clocks
// are wrong, so its certificates must not depend on them. Because NotBefore
// predates 2019, platform rules that cap the lifetime of certificates issued
// after that date (Apple's 825 days) do not apply; those caps concern public
// CAs, and this CA is private to one host or pod.
var (
	validFrom  = time.Date(1970, time.January, 1, 0, 0, 0, 0, time.UTC)
	validUntil = time.Date(2199, time.December, 31, 23, 59, 59, 0, time.UTC)
)

// Option configures an Authority.
type Option func(*options)

type options struct {
	cacheSize int
	onLookup  func(hit bool)
	now       func() time.Time
}

// WithLookupObserver makes the Authority report every leaf lookup: hit is
// true when the leaf came from the cache (the hook of the leaf-cache
// metrics). f must be cheap and safe for concurrent use.
func WithLookupObserver(f func(hit bool)) Option {
	return func(o *options) { o.onLookup = f }
}

// WithClock sets the clock the server side of intercepted TLS dates its
// session tickets by: the corrected clock (leaf validity does not depend on
// any clock, see the validity constants).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithCacheSize sets how many leaf certificates are cached (default
// DefaultCacheSize). Values below 1 keep the default.
func WithCacheSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.cacheSize = n
		}
	}
}

// LoadOrCreate loads the CA from dir/ca.pem and dir/ca-key.pem, creating dir
// (mode 0700) and a new CA (key mode 0600, certificate 0644) when neither
// file exists. When only one of the files exists, or a file is broken or the
// two do not match, it returns an error and never regenerates: replacing a CA
// that clients already trust would break them silently.
func LoadOrCreate(dir string, opts ...Option) (*Authority, error) {
	if dir == "" {
		return nil, errors.New("certs: empty state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: create state directory: %w", err)
	}
	certPath := filepath.Join(dir, CertFileName)
	keyPath := filepath.Join(dir, KeyFileName)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return Load(certPath, keyPath, opts...)
	case certExists:
		return nil, fmt.Errorf("certs: %s exists but %s does not; restore the key or remove both files to make a new CA", certPath, keyPath)
	case keyExists:
		return nil, fmt.Errorf("certs: %s exists but %s does not; restore the certificate or remove both files to make a new CA", keyPath, certPath)
	}
	certPEM, keyPEM, err := newCA()
	if err != nil {
		return nil, err
	}
	// The key goes first and exclusively: a concurrent first run fails
	// here instead of writing a second, mismatched pair.
	if err := writeFileExcl(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("certs: write CA key: %w", err)
	}
	if err := writeFileExcl(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("certs: write CA certificate: %w", err)
	}
	return parse(certPEM, keyPEM, opts)
}

// Load loads a CA from a PEM certificate file and a PEM private key file
// (--ca-cert/--ca-key). The certificate must be a CA allowed to sign
// certificates and must match the key.
func Load(certFile, keyFile string, opts ...Option) (*Authority, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	a, err := parse(certPEM, keyPEM, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (certificate %s, key %s)", err, certFile, keyFile)
	}
	return a, nil
}

func parse(certPEM, keyPEM []byte, opts []Option) (*Authority, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate and key are unusable or do not match: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("certs: the certificate is not a CA allowed to sign certificates")
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: CA key type %T cannot sign", pair.PrivateKey)
	}
	o := options{cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	return newAuthority(cert, key, pemOf(cert.Raw), o)
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// newCA makes a fresh ECDSA P-256 CA and returns its PEM certificate and
// PKCS #8 key.
func newCA() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: marshal CA public key: %w", err)
	}
	ski := sha1.Sum(pub)
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "skewproxy local CA", Organization: []string{"skewproxy"}},
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: marshal CA key: %w", err)
	}
	return pemOf(der), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("certs: %w", err)
	}
}

func writeFileExcl(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	// The umask may have narrowed the mode; the contract is exact modes.
	return os.Chmod(path, mode)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
