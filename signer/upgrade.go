package signer

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// IsUpgrade reports whether h asks to switch protocols (Connection:
// Upgrade with an Upgrade header), as a WebSocket handshake does.
func IsUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}

// presignAuthParams are the query parameters of a SigV4 presigned URL that
// presignUpgrade replaces.
var presignAuthParams = [...]string{
	"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
	"X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
}

// defaultUpgradeExpires is X-Amz-Expires when the client's URL had none.
const defaultUpgradeExpires = 5 * time.Minute

// emptyPayloadHash is the SHA-256 of an empty payload: a WebSocket
// handshake has no body.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// presignUpgrade signs the handshake URL of tmpl again at t with the
// proxy's credentials, for the client's service and region, signing only
// the host (as the AWS SDKs do for these URLs). AWS IoT's device gateway
// (service iotdevicegateway) takes the session token after the signature,
// outside what is signed; other services sign it.
func (s *Signer) presignUpgrade(ctx context.Context, tmpl *http.Request, pq *PresignedQuery, t time.Time) (*http.Request, error) {
	creds, err := s.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	out := tmpl.Clone(ctx)
	q := out.URL.Query()
	for _, k := range presignAuthParams {
		q.Del(k)
	}
	expires := pq.Expires
	if expires <= 0 {
		expires = defaultUpgradeExpires
	}
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	tokenAfter := pq.Service == "iotdevicegateway"
	signCreds := creds
	if tokenAfter {
		signCreds.SessionToken = ""
	}
	u := *out.URL
	u.RawQuery = q.Encode()
	minimal := &http.Request{Method: out.Method, URL: &u, Host: out.Host, Header: http.Header{}}
	signed, _, err := s.v4.PresignHTTP(ctx, signCreds, minimal, emptyPayloadHash, pq.Service, pq.Region, t.UTC(), signOptsOther)
	if err != nil {
		return nil, fmt.Errorf("signer: presign the upgrade request: %w", err)
	}
	su, err := url.Parse(signed)
	if err != nil {
		return nil, fmt.Errorf("signer: presigned upgrade URL: %w", err)
	}
	out.URL.RawQuery = su.RawQuery
	if tokenAfter && creds.SessionToken != "" {
		out.URL.RawQuery += "&X-Amz-Security-Token=" + strings.ReplaceAll(url.QueryEscape(creds.SessionToken), "+", "%20")
	}
	return out, nil
}

// prepareUnsignedUpgrade passes an unsigned upgrade request through as it
// came: the proxy adds no signature to a handshake that did not carry one.
func (s *Signer) prepareUnsignedUpgrade(req *http.Request, host string) (*Prepared, error) {
	sc, err := ScopeFromHost(host)
	if err != nil {
		sc = Scope{}
	}
	tmpl := outgoingTemplate(req, host)
	p := &Prepared{Service: sc.Service, Region: sc.Region, Replayable: true}
	p.sign = func(ctx context.Context, _ time.Time) (*http.Request, error) {
		return tmpl.Clone(ctx), nil
	}
	return p, nil
}
