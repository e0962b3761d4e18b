package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchNames are the host names the endpoint's certificate covers: the
// Lambda and S3 hosts the clients use (with --resolve in the proxy), their
// wildcards, and the loopback address.
var benchNames = []string{
	"lambda.us-east-1.amazonaws.com", "*.lambda.us-east-1.amazonaws.com",
	"s3.us-east-1.amazonaws.com", "*.s3.us-east-1.amazonaws.com", "localhost",
}

// testPKI is a throwaway CA and one leaf it issued.
type testPKI struct {
	CAPEM   []byte
	Pool    *x509.CertPool
	Leaf    tls.Certificate
	CertPEM []byte // the leaf
	KeyPEM  []byte // the leaf's key
}

// newPKI makes an ECDSA P-256 CA and a leaf for names and 127.0.0.1.
func newPKI(names []string) (*testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skewbench test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("leaf key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("leaf certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("leaf key: %w", err)
	}
	p := &testPKI{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Pool:    x509.NewCertPool(),
	}
	p.Pool.AddCert(caCert)
	if p.Leaf, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return nil, fmt.Errorf("leaf pair: %w", err)
	}
	return p, nil
}

// writeCA writes the CA certificate to dir/name and returns the path.
func (p *testPKI) writeCA(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, p.CAPEM, 0o600); err != nil {
		return "", fmt.Errorf("write CA: %w", err)
	}
	return path, nil
}

// endpoint is a loopback HTTPS server (HTTP/1.1, keep-alive) standing in
// for Lambda, with a plain-HTTP listener beside it (PlainAddr) serving the
// same handler for the plain path: it reads the request body and answers a
// small JSON body. It
// does not verify signatures; it only counts how many requests carry a
// SigV4 Authorization for the proxy's access key (ProxySigned) and how many
// do not (Other), in all and per load target (targetHeader), so a run can
// show that every request of the skewproxy runs was re-signed.
type endpoint struct {
	Addr      string // 127.0.0.1:PORT, HTTPS
	PlainAddr string // 127.0.0.1:PORT, plain HTTP
	PKI       *testPKI
	CAFile    string

	proxyCredPrefix string
	ProxySigned     atomic.Int64
	Other           atomic.Int64
	targets         sync.Map // targetHeader value -> *targetCounter

	srv   *http.Server
	plain *http.Server
}

// endpointReply is the JSON body of every answer: the size of a small
// Lambda result.
var endpointReply = []byte(`{"StatusCode":200,"ExecutedVersion":"$LATEST","Payload":{"ok":true}}`)

// startEndpoint listens on a free loopback port; dir receives the CA file.
// Requests signed with proxyAKID are counted as ProxySigned.
func startEndpoint(dir, proxyAKID string) (*endpoint, error) {
	pki, err := newPKI(benchNames)
	if err != nil {
		return nil, err
	}
	caFile, err := pki.writeCA(dir, "endpoint-ca.pem")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("endpoint listen: %w", err)
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("endpoint listen (plain): %w", err)
	}
	e := &endpoint{Addr: ln.Addr().String(), PlainAddr: pln.Addr().String(), PKI: pki, CAFile: caFile,
		proxyCredPrefix: "AWS4-HMAC-SHA256 Credential=" + proxyAKID + "/"}
	e.srv = &http.Server{
		Handler:           http.HandlerFunc(e.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pki.Leaf},
			NextProtos:   []string{"http/1.1"}, // like most AWS endpoints: no h2
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	e.plain = &http.Server{
		Handler:           e.srv.Handler,
		ReadHeaderTimeout: e.srv.ReadHeaderTimeout,
		IdleTimeout:       e.srv.IdleTimeout,
		ErrorLog:          e.srv.ErrorLog,
	}
	go func() { _ = e.srv.Serve(tls.NewListener(ln, e.srv.TLSConfig)) }()
	go func() { _ = e.plain.Serve(pln) }()
	return e, nil
}

// countsPath answers the endpoint's counters as JSON (not counted itself).
const countsPath = "/skewbench/counts"

// targetHeader names the load target a request comes from: the load
// clients set it (after signing) so that the endpoint counts each target's
// requests apart, whatever a straggler from an earlier run does.
const targetHeader = "X-Skewbench-Target"

type targetCounter struct{ proxySigned, other atomic.Int64 }

// endpointCounts is the JSON answer of countsPath.
type endpointCounts struct {
	ProxySigned int64                     `json:"proxy_signed"`
	Other       int64                     `json:"other"`
	Targets     map[string]endpointCounts `json:"targets,omitempty"` // by targetHeader
}

// counts is a snapshot of the counters.
func (e *endpoint) counts() endpointCounts {
	c := endpointCounts{ProxySigned: e.ProxySigned.Load(), Other: e.Other.Load(), Targets: map[string]endpointCounts{}}
	e.targets.Range(func(k, v any) bool {
		tc := v.(*targetCounter)
		c.Targets[k.(string)] = endpointCounts{ProxySigned: tc.proxySigned.Load(), Other: tc.other.Load()}
		return true
	})
	return c
}

func (e *endpoint) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == countsPath {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e.counts())
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	var tc *targetCounter
	if name := r.Header.Get(targetHeader); name != "" {
		v, ok := e.targets.Load(name)
		if !ok {
			v, _ = e.targets.LoadOrStore(name, new(targetCounter))
		}
		tc = v.(*targetCounter)
	}
	if strings.HasPrefix(r.Header.Get("Authorization"), e.proxyCredPrefix) {
		e.ProxySigned.Add(1)
		if tc != nil {
			tc.proxySigned.Add(1)
		}
	} else {
		e.Other.Add(1)
		if tc != nil {
			tc.other.Add(1)
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Amzn-Requestid"] = []string{"00000000-0000-0000-0000-000000000000"}
	h["X-Amz-Executed-Version"] = []string{"$LATEST"}
	_, _ = w.Write(endpointReply)
}

// Close stops both servers.
func (e *endpoint) Close() error { return errors.Join(e.srv.Close(), e.plain.Close()) }

// runEndpoint is `skewbench endpoint`: serve until interrupted. Its first
// line on stdout is JSON {"addr": "127.0.0.1:PORT", "plain": "127.0.0.1:PORT", "ca": "FILE"}.
// `skewbench run` starts it as a separate process, so that the endpoint
// does not share a Go runtime with the load clients; it is also handy for
// manual runs of `skewbench load` and profiling sessions.
func runEndpoint(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("endpoint", flag.ContinueOnError)
	dir := fs.String("dir", os.TempDir(), "directory for endpoint-ca.pem")
	akid := fs.String("proxy-akid", "AKIDSKEWBENCHPROXY", "access key id counted as proxy-signed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := startEndpoint(*dir, *akid)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := json.NewEncoder(stdout).Encode(map[string]string{"addr": e.Addr, "plain": e.PlainAddr, "ca": e.CAFile}); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintf(stdout, "proxy-signed requests %d, other %d\n", e.ProxySigned.Load(), e.Other.Load())
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
