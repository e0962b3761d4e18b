package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

// queryProtocolServices are the signing names of services that speak the
// AWS query protocol: their SDK clients read an error's code from an
// <ErrorResponse> XML body, not from JSON.
var queryProtocolServices = map[string]bool{
	"sts": true, "iam": true, "sns": true, "ses": true, "sdb": true, "rds": true,
	"autoscaling": true, "cloudformation": true, "elasticloadbalancing": true,
	"elasticache": true, "redshift": true, "monitoring": true, "elasticbeanstalk": true,
}

// reply builds an answer the proxy makes itself: a short AWS-style error
// body (S3's XML, the query protocol's <ErrorResponse>, JSON otherwise)
// with x-amzn-ErrorType, so SDKs surface the code and message.
// X-Skewproxy-Error marks it as the proxy's own.
func reply(req *http.Request, service string, status int, code, message string) *http.Response {
	h := make(http.Header)
	var body []byte
	if queryProtocolServices[service] {
		h.Set("Content-Type", "text/xml")
		var b bytes.Buffer
		b.WriteString(xml.Header)
		xml.NewEncoder(&b).Encode(queryError{Error: queryErrorDetail{Type: faultOf(status), Code: code, Message: message}})
		body = b.Bytes()
	} else if service == "s3" {
		h.Set("Content-Type", "application/xml")
		var b bytes.Buffer
		b.WriteString(xml.Header)
		xml.NewEncoder(&b).Encode(struct {
			XMLName xml.Name `xml:"Error"`
			Code    string   `xml:"Code"`
			Message string   `xml:"Message"`
		}{Code: code, Message: message})
		body = b.Bytes()
	} else {
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(map[string]string{"__type": code, "message": message})
	}
	h.Set("X-Amzn-Errortype", code)
	h.Set("X-Skewproxy-Error", code)
	return localResponse(req, status, h, body)
}

// describeUpstreamError turns a transport error into a status and a message
// that says what failed without internal detail.
func describeUpstreamError(host string, err error) (int, string) {
	var dnsErr *net.DNSError
	var tlsErr *tlsError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return http.StatusBadGateway, "upstream DNS lookup for " + host + " failed"
	case errors.As(err, &unknownAuth):
		return http.StatusBadGateway, "upstream TLS with " + host + " failed: certificate signed by an unknown authority (see --upstream-ca)"
	case errors.As(err, &hostErr):
		return http.StatusBadGateway, "upstream TLS with " + host + " failed: certificate is not valid for the host name"
	case errors.As(err, &invalidErr):
		return http.StatusBadGateway, "upstream TLS with " + host + " failed: certificate is invalid or expired"
	case errors.As(err, &certErr), errors.As(err, &tlsErr), errors.As(err, &recErr):
		return http.StatusBadGateway, "upstream TLS handshake with " + host + " failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "upstream " + host + " refused the connection"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return http.StatusGatewayTimeout, "upstream " + host + " did not answer in time"
	case errors.Is(err, context.Canceled):
		return http.StatusBadGateway, "the request to upstream " + host + " was cancelled"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "upstream " + host + " closed or reset the connection"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return http.StatusBadGateway, "could not connect to upstream " + host
	}
	return http.StatusBadGateway, "the request to upstream " + host + " failed"
}

// localResponse is an answer the proxy makes itself: status, headers and
// a body in memory, with its Content-Length.
func localResponse(req *http.Request, status int, h http.Header, body []byte) *http.Response {
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// answer is a Refusal's answer as the response the client gets.
func answer(req *http.Request, ref Refusal) *http.Response {
	status, h, body := ref.Answer()
	if h == nil {
		h = http.Header{}
	}
	return localResponse(req, status, h, body)
}

// queryError is the query protocol's error body.
type queryError struct {
	XMLName xml.Name         `xml:"ErrorResponse"`
	Error   queryErrorDetail `xml:"Error"`
}

type queryErrorDetail struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// faultOf is the query protocol's error Type for a status.
func faultOf(status int) string {
	if status >= 500 {
		return "Receiver"
	}
	return "Sender"
}
