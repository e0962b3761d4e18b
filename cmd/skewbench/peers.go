package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// peerProxy is a third-party proxy (tinyproxy or mitmdump) on loopback.
type peerProxy struct {
	*child
	URL    *url.URL
	CAPool *x509.CertPool // for an intercepting proxy: its CA; nil for a blind one
}

// startTinyproxy runs tinyproxy in the foreground as a blind CONNECT
// tunnel to connectPort only, with a config file written to dir: no log
// file, no Via header.
func startTinyproxy(dir string, connectPort int) (*peerProxy, error) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return nil, fmt.Errorf("tinyproxy not found (run make deps): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "tinyproxy.conf")
	text := fmt.Sprintf(`Port %d
Listen 127.0.0.1
Timeout 600
MaxClients 1024
LogLevel Critical
Allow 127.0.0.1
ConnectPort %d
DisableViaHeader Yes
`, port, connectPort)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("tinyproxy config: %w", err)
	}
	c, err := startChild("tinyproxy", exec.Command(bin, "-d", "-c", conf))
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTCP(c, addr, 15*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return &peerProxy{child: c, URL: &url.URL{Scheme: "http", Host: addr}}, nil
}

// startMitmdump runs mitmdump with no add-on, doing only TLS interception:
// upstream certificates are not verified (ssl_insecure), its CA is made in
// a temporary confdir under dir and trusted by the clients.
func startMitmdump(dir string) (*peerProxy, error) {
	bin, err := exec.LookPath("mitmdump")
	if err != nil {
		return nil, fmt.Errorf("mitmdump not found (run make deps): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	confdir := filepath.Join(dir, "mitmproxy")
	if err := os.MkdirAll(confdir, 0o700); err != nil {
		return nil, fmt.Errorf("mitmproxy confdir: %w", err)
	}
	cmd := exec.Command(bin, "--listen-host", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--set", "ssl_insecure=true", "--set", "confdir="+confdir, "--quiet")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	c, err := startChild("mitmdump", cmd)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTCP(c, addr, 60*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	pem, err := os.ReadFile(filepath.Join(confdir, "mitmproxy-ca-cert.pem"))
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("mitmproxy CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.Stop()
		return nil, errors.New("mitmproxy CA file holds no certificate")
	}
	return &peerProxy{child: c, URL: &url.URL{Scheme: "http", Host: addr}, CAPool: pool}, nil
}
