package proxytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// testRegions are the regions whose endpoint names the fake's certificate
// covers (a wildcard covers one label only, so each needs its own names).
var testRegions = []string{
	"us-east-1", "us-east-2", "us-west-1", "us-west-2",
	"eu-west-1", "eu-west-2", "eu-central-1", "eu-north-1",
	"ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ap-south-1",
	"ca-central-1", "sa-east-1",
}

// certNames lists the DNS names of the fake endpoint's certificate: loopback,
// the global endpoints and the regional endpoints of the common services.
func certNames(extra []string) []string {
	names := []string{"localhost", "*.amazonaws.com", "*.api.aws"}
	for _, r := range testRegions {
		names = append(names,
			"*."+r+".amazonaws.com",
			"*.execute-api."+r+".amazonaws.com",
			"*.s3."+r+".amazonaws.com",
			"*.lambda-url."+r+".on.aws",
		)
	}
	return append(names, extra...)
}

// selfSignedCert makes a self-signed ECDSA certificate for the names and for
// 127.0.0.1 and ::1. The certificate is its own root: adding it to a pool is
// enough to trust it.
func selfSignedCert(names []string, now time.Time, validity time.Duration) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "proxytest fake AWS", Organization: []string{"skewproxy tests"}},
		NotBefore:             now.Add(-validity),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parse certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, nil
}
