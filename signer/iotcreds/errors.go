package iotcreds

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Cause is why a credentials request failed.
type Cause int

const (
	// CauseBadAnswer: an answer that is neither credentials nor a known
	// refusal (another status, or a malformed body).
	CauseBadAnswer Cause = iota
	// CauseCertificateRefused: the endpoint refused the device certificate
	// (a TLS alert, or 401/403 naming the certificate): not registered
	// with AWS IoT Core, inactive, revoked, or from an unknown CA.
	CauseCertificateRefused
	// CauseRoleAliasUnknown: 404, no such role alias in this account and
	// region.
	CauseRoleAliasUnknown
	// CauseThingNameMismatch: 403 for the thing name: the thing is not
	// attached to the certificate, or the certificate's policy does not
	// allow iot:AssumeRoleWithCertificate on the role alias.
	CauseThingNameMismatch
	// CauseThrottled: 429.
	CauseThrottled
	// CauseUnreachable: no connection or no answer (DNS, connect, reset,
	// timeout).
	CauseUnreachable
	// CauseEndpointUntrusted: the endpoint's certificate did not verify
	// (unknown root, wrong name, or not valid at corrected time).
	CauseEndpointUntrusted
)

func (c Cause) String() string {
	switch c {
	case CauseCertificateRefused:
		return "certificate refused"
	case CauseRoleAliasUnknown:
		return "role alias unknown"
	case CauseThingNameMismatch:
		return "thing name refused"
	case CauseThrottled:
		return "throttled"
	case CauseUnreachable:
		return "endpoint unreachable"
	case CauseEndpointUntrusted:
		return "endpoint certificate untrusted"
	default:
		return "unexpected answer"
	}
}

// Error is a failed credentials request. Its text names the cause and what
// to check; it never quotes credentials or the key.
type Error struct {
	Cause     Cause
	Endpoint  string // host:port
	RoleAlias string
	ThingName string
	Status    int    // HTTP status; 0 when there was no answer
	Message   string // the endpoint's message, when it gave one
	Err       error  // the transport or decoding error, if any
}

// ClientMessage is the cause in words safe to send to the proxy's client
// (the 503 it answers): no endpoint, alias or thing name, no credentials.
func (e *Error) ClientMessage() string {
	return "AWS IoT credentials provider: " + e.Cause.String()
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "AWS IoT credentials provider %s: ", e.Endpoint)
	switch e.Cause {
	case CauseCertificateRefused:
		b.WriteString("the device certificate was refused")
	case CauseRoleAliasUnknown:
		fmt.Fprintf(&b, "role alias %q unknown", e.RoleAlias)
	case CauseThingNameMismatch:
		fmt.Fprintf(&b, "thing name %q refused", e.ThingName)
	case CauseThrottled:
		b.WriteString("throttled")
	case CauseUnreachable:
		b.WriteString("endpoint unreachable")
	case CauseEndpointUntrusted:
		b.WriteString("the endpoint's certificate is not trusted")
	default:
		b.WriteString("unexpected answer")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (%d %s", e.Status, http.StatusText(e.Status))
		if e.Message != "" {
			fmt.Fprintf(&b, ": %q", e.Message)
		}
		b.WriteString(")")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if hint := e.hint(); hint != "" {
		b.WriteString("; ")
		b.WriteString(hint)
	}
	return b.String()
}

// hint says what to check for the cause.
func (e *Error) hint() string {
	switch e.Cause {
	case CauseCertificateRefused:
		return "check that the certificate (--iot-cert) is registered with AWS IoT Core in this account and region and active, and that the key (--iot-key) is its own"
	case CauseRoleAliasUnknown:
		return "check --iot-role-alias against `aws iot list-role-aliases` in the endpoint's region"
	case CauseThingNameMismatch:
		return "check that the thing (--iot-thing-name) is attached to the certificate and that the certificate's policy allows iot:AssumeRoleWithCertificate on the role alias"
	case CauseEndpointUntrusted:
		var invalid x509.CertificateInvalidError
		if errors.As(e.Err, &invalid) && invalid.Reason == x509.Expired {
			return "its validity was judged at corrected time; if the clock is not synced yet this clears once a time source answers"
		}
		return "check --iot-credentials-endpoint (`aws iot describe-endpoint --endpoint-type iot:CredentialProvider`) and --iot-ca"
	case CauseUnreachable:
		return "check --iot-credentials-endpoint and the network; retried on the next request"
	}
	return ""
}

// Unwrap returns the underlying transport or decoding error.
func (e *Error) Unwrap() error { return e.Err }
