// Package iotcreds gets AWS credentials from AWS IoT Core's credentials
// provider: a device trades its X.509 certificate (mutual TLS) for
// temporary credentials of the IAM role behind a role alias,
//
//	GET https://<endpoint>/role-aliases/<alias>/credentials
//	x-amzn-iot-thingname: <thing>
//
// The endpoint's certificate is judged by the clock handed in (the
// corrected clock), so a gateway that booted at 1970 gets credentials as
// soon as the time is known, not once its own clock is right.
//
// Provider is an aws.CredentialsProvider and nothing more: it does not
// cache (wrap it in signer.NewCredentialsCache, which refreshes by the
// corrected clock), it does not rotate the device certificate, and it does
// not speak MQTT.
package iotcreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// ThingNameHeader carries the thing name on the credentials request.
const ThingNameHeader = "x-amzn-iot-thingname"

// Options configures New.
type Options struct {
	// Endpoint is the account's credentials provider endpoint,
	// HOST[:PORT] (port 443 when absent): what `aws iot describe-endpoint
	// --endpoint-type iot:CredentialProvider` prints.
	Endpoint string
	// RoleAlias names the role alias whose role's credentials are wanted.
	RoleAlias string
	// ThingName is sent in x-amzn-iot-thingname; the thing must be
	// attached to the certificate.
	ThingName string
	// CertFile is the device certificate (PEM; it may be followed by its
	// intermediates), KeyFile its private key (PEM). New reads both once.
	CertFile, KeyFile string
	// CAFile, when set, holds more roots (PEM) for the endpoint's
	// certificate, added to Roots.
	CAFile string
	// Roots are the roots the endpoint's certificate must chain to; nil
	// means the system roots (AWS IoT's endpoints chain to Amazon Root CA 1).
	Roots *x509.CertPool
	// Now is the corrected clock (required): certificate validity is
	// judged by it.
	Now func() time.Time
	// DialTimeout bounds the TCP connect and the TLS handshake (default 10s).
	DialTimeout time.Duration
	// Timeout bounds one whole credentials request (default 30s).
	Timeout time.Duration
}

// Provider fetches credentials from AWS IoT Core's credentials provider.
// It is safe for concurrent use. Create it with New.
type Provider struct {
	endpoint string // host:port
	url      string
	alias    string
	thing    string
	client   *http.Client
	name     string
}

var _ aws.CredentialsProvider = (*Provider)(nil)

// New reads the device certificate and key (once: the key is never read
// again, and never logged or quoted in an error) and returns a Provider.
// It does not contact the endpoint.
func New(o Options) (*Provider, error) {
	if o.Now == nil {
		return nil, errors.New("iotcreds: no clock (Options.Now)")
	}
	endpoint, err := ParseEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if o.RoleAlias == "" || o.ThingName == "" {
		return nil, errors.New("iotcreds: a role alias and a thing name are needed")
	}
	cert, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	roots := o.Roots
	if roots == nil {
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("iotcreds: CA file: %w", err)
		}
		roots = roots.Clone()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("iotcreds: CA file %s: no PEM certificate found", o.CAFile)
		}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	host, _, _ := net.SplitHostPort(endpoint)
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		// AWS IoT wants SNI with the endpoint's full name.
		ServerName: host,
		// The endpoint's certificate is judged by corrected time.
		Time: o.Now,
		// Always present the device certificate: AWS IoT accepts
		// certificates registered without their CA, so the server's list
		// of acceptable CAs says nothing (Go would otherwise send none).
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
	dialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	p := &Provider{
		endpoint: endpoint,
		url:      "https://" + endpoint + "/role-aliases/" + url.PathEscape(o.RoleAlias) + "/credentials",
		alias:    o.RoleAlias,
		thing:    o.ThingName,
		client: &http.Client{
			Timeout: o.Timeout,
			Transport: &http.Transport{
				// Direct: the proxy never reads HTTPS_PROXY itself.
				Proxy:               nil,
				DialContext:         dialer.DialContext,
				TLSClientConfig:     tlsConfig,
				TLSHandshakeTimeout: o.DialTimeout,
				// One request an hour or so: keep no idle socket open.
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	p.name = fmt.Sprintf("AWS IoT credentials provider (role alias %s, thing %s)", o.RoleAlias, o.ThingName)
	return p, nil
}

// loadKeyPair reads the device certificate and its key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("iotcreds: a device certificate and its key are needed")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("iotcreds: device certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("iotcreds: device key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		// crypto/tls's messages never quote the key.
		return tls.Certificate{}, fmt.Errorf("iotcreds: device certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// ParseEndpoint checks an endpoint given as HOST[:PORT] and returns it as
// host:port.
func ParseEndpoint(s string) (string, error) {
	if s == "" {
		return "", errors.New("iotcreds: no endpoint")
	}
	if strings.Contains(s, "://") || strings.ContainsAny(s, "/?#@") {
		return "", fmt.Errorf("iotcreds: endpoint %q: want HOST[:PORT], such as c1a2b3.credentials.iot.us-east-1.amazonaws.com", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port (or a bare IPv6 address).
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "443"
	}
	if host == "" || port == "" {
		return "", fmt.Errorf("iotcreds: endpoint %q: want HOST[:PORT]", s)
	}
	return net.JoinHostPort(host, port), nil
}

// Name describes the provider for logs and errors.
func (p *Provider) Name() string { return p.name }

// Retrieve fetches a new set of credentials. Every call asks the endpoint:
// put a signer.CredentialsCache in front. Errors are *Error.
func (p *Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return aws.Credentials{}, p.fail(CauseBadAnswer, 0, "", err)
	}
	req.Header.Set(ThingNameHeader, p.thing)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return aws.Credentials{}, p.transportError(err)
	}
	defer resp.Body.Close()
	// An answer is a few hundred bytes; a bigger one is not the endpoint.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return aws.Credentials{}, p.transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return aws.Credentials{}, p.statusError(resp.StatusCode, errorMessage(body))
	}
	var answer struct {
		Credentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
	}
	// The body holds secrets: errors never quote it.
	if err := json.Unmarshal(body, &answer); err != nil {
		return aws.Credentials{}, p.fail(CauseBadAnswer, resp.StatusCode, "", errors.New("the answer is not the credentials JSON"))
	}
	c := answer.Credentials
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" {
		return aws.Credentials{}, p.fail(CauseBadAnswer, resp.StatusCode, "", errors.New("the answer lacks accessKeyId, secretAccessKey or sessionToken"))
	}
	expires, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil {
		return aws.Credentials{}, p.fail(CauseBadAnswer, resp.StatusCode, "", fmt.Errorf("expiration %q is not an RFC 3339 time", c.Expiration))
	}
	return aws.Credentials{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Source:          p.name,
		CanExpire:       true,
		Expires:         expires,
	}, nil
}

// errorMessage is the "message" of an error answer's JSON body, else its
// first line, shortened.
func errorMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// statusError names the cause of an error answer.
func (p *Provider) statusError(status int, msg string) error {
	switch {
	case status == http.StatusNotFound:
		return p.fail(CauseRoleAliasUnknown, status, msg, nil)
	case (status == http.StatusForbidden || status == http.StatusUnauthorized) && certificateRefusal(msg):
		return p.fail(CauseCertificateRefused, status, msg, nil)
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return p.fail(CauseThingNameMismatch, status, msg, nil)
	case status == http.StatusTooManyRequests:
		return p.fail(CauseThrottled, status, msg, nil)
	default:
		return p.fail(CauseBadAnswer, status, msg, nil)
	}
}

// certificateRefusal reports whether a 401/403 message is about the
// certificate itself ("Certificate is invalid on this endpoint": not
// registered, inactive or revoked) rather than the thing or the policy.
func certificateRefusal(msg string) bool {
	m := strings.ToLower(msg)
	return strings.HasPrefix(m, "certificate") || strings.Contains(m, "invalid certificate")
}

// transportError names the cause of a failed exchange.
func (p *Provider) transportError(err error) error {
	// The endpoint and path are in the message already.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var verify *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	switch {
	case errors.As(err, &verify), errors.As(err, &hostErr), errors.As(err, &authErr), errors.As(err, &invalid):
		return p.fail(CauseEndpointUntrusted, 0, "", err)
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the endpoint: with TLS 1.3 the client
		// certificate is judged after the client's handshake is done, so
		// the refusal arrives with the first read.
		return p.fail(CauseCertificateRefused, 0, "", err)
	default:
		return p.fail(CauseUnreachable, 0, "", err)
	}
}

func (p *Provider) fail(cause Cause, status int, msg string, err error) *Error {
	return &Error{Cause: cause, Endpoint: p.endpoint, RoleAlias: p.alias, ThingName: p.thing, Status: status, Message: msg, Err: err}
}
