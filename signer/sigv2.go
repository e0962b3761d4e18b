package signer

// Pre-SigV4 signatures. Legacy applications whose code cannot change still
// sign with Signature Version 2 (S3's "AWS AKID:signature" header, S3 query
// string authentication, the query APIs' SignatureVersion=2) or even the
// query APIs' versions 1 and 0. The proxy never verifies them (it has not
// got the client's secret, and it signs again anyway): Prepare recognises
// them, removes every part that belongs to the old signature, keeping the
// rest of the query or form exactly as it came, and signs what is left
// with SigV4 like an unsigned request, whose scope comes from the host.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// The values of Prepared.ClientSignatureVersion: the pre-SigV4 signature a
// request arrived with.
const (
	// SigV2S3Header is S3's REST authentication, Authorization: AWS AKID:signature.
	SigV2S3Header = "s3v2"
	// SigV2S3Query is S3's query string authentication (a presigned V2
	// URL): AWSAccessKeyId, Expires and Signature in the query.
	SigV2S3Query = "s3v2-query"
	// SigV2Query is a query API request with SignatureVersion=2.
	SigV2Query = "2"
	// SigV1Query is a query API request with SignatureVersion=1.
	SigV1Query = "1"
	// SigV0Query is a query API request with SignatureVersion=0.
	SigV0Query = "0"
)

// legacySignature is what upgradeLegacy found of a pre-SigV4 signature.
type legacySignature struct {
	version    string    // a ClientSignatureVersion value, "" for none
	clientTime time.Time // the client's Date, x-amz-date or Timestamp; zero if none
	expires    time.Time // S3 query authentication's Expires; zero otherwise
}

// upgradeLegacy recognises a pre-SigV4 signature on req and returns a copy
// of req without it: no Authorization header, no signature parameters in
// the query or the form body (the body then has its new length, and is
// hashed again by preparePayload). A request that carries none comes back
// as it is, except that an unsigned form POST comes back as a copy holding
// its body in memory (it had to be read to be inspected). req itself is
// never changed, but its body may be read. Errors are *RequestError.
func (s *Signer) upgradeLegacy(req *http.Request) (*http.Request, legacySignature, error) {
	var ls legacySignature
	authz := headerValues(req.Header, "Authorization")
	v2Header := len(authz) == 1 && isS3V2Authorization(authz[0])
	if len(authz) > 0 && !v2Header {
		return req, ls, nil // SigV4 (or malformed): Prepare's own business
	}
	raw := req.URL.RawQuery
	var q legacyParams
	if rawMayBeLegacy(raw) {
		var err error
		if q, err = parseLegacyParams(raw, true); err != nil {
			return nil, ls, badRequest("IncompleteSignature", "malformed Signature Version 2 query parameters", err)
		}
	}
	if !v2Header && q.version == "" && !isFormPost(req) {
		return req, ls, nil
	}

	out := new(http.Request)
	*out = *req
	u := *req.URL
	out.URL = &u
	out.Header = req.Header.Clone()

	switch {
	case v2Header && q.version != "":
		return nil, ls, badRequest("InvalidRequest", "request carries both an Authorization header and Signature Version 2 query parameters", nil)
	case (v2Header || q.version != "") && hasPresignParams(raw):
		return nil, ls, badRequest("InvalidRequest", "request carries both a Signature Version 2 signature and a SigV4 presigned query", nil)
	case v2Header:
		if err := parseS3V2Authorization(authz[0]); err != nil {
			return nil, ls, badRequest("IncompleteSignature", "malformed Signature Version 2 Authorization header", err)
		}
		for k := range out.Header {
			if strings.EqualFold(k, "Authorization") {
				delete(out.Header, k)
			}
		}
		ls.version, ls.clientTime = SigV2S3Header, s3V2ClientTime(req.Header)
	case q.version != "":
		u.RawQuery = q.rest
		ls.version, ls.clientTime, ls.expires = q.version, q.clientTime, q.expires
	default:
		// An unsigned form POST: a query API request may carry its
		// signature in the body.
		data, err := s.readForm(req)
		if err != nil {
			return nil, ls, err
		}
		f, err := parseLegacyParams(string(data), false)
		if err != nil {
			return nil, ls, badRequest("IncompleteSignature", "malformed Signature Version 2 form parameters", err)
		}
		if f.version != "" {
			data = []byte(f.rest)
			ls.version, ls.clientTime = f.version, f.clientTime
		}
		setBody(out, data)
	}
	return out, ls, nil
}

// readForm reads the whole body of a form POST, up to MaxBufferedBody
// (preparePayload would buffer it all the same to hash it).
func (s *Signer) readForm(req *http.Request) ([]byte, error) {
	max := s.opts.MaxBufferedBody
	if req.ContentLength > max {
		return nil, tooLarge(req.ContentLength, max)
	}
	var probe [1]byte
	data, err := readBody(req.Body, req.ContentLength, max, &probe)
	if err != nil {
		return nil, badRequest("IncompleteBody", "could not read the request body", fmt.Errorf("read form body: %w", err))
	}
	if int64(len(data)) > max {
		return nil, tooLarge(-1, max)
	}
	return data, nil
}

// setBody makes data the body of r, with its length; the Content-Length
// header goes (net/http sends r.ContentLength).
func setBody(r *http.Request, data []byte) {
	r.Body, r.GetBody, r.TransferEncoding = http.NoBody, nil, nil
	if len(data) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	r.ContentLength = int64(len(data))
	for k := range r.Header {
		if strings.EqualFold(k, "Content-Length") {
			delete(r.Header, k)
		}
	}
}

// isFormPost reports whether req is an unsigned POST with a form body and
// no payload hash of its own: the only body that can hold query API
// signature parameters.
func isFormPost(req *http.Request) bool {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody {
		return false
	}
	if len(headerValues(req.Header, "X-Amz-Content-Sha256")) > 0 {
		return false
	}
	ct := headerValues(req.Header, "Content-Type")
	if len(ct) != 1 {
		return false
	}
	mt, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded")
}

// hasPresignParams reports whether a raw query carries SigV4 presign
// parameters.
func hasPresignParams(raw string) bool {
	q, _ := url.ParseQuery(raw) // what parsed is enough to tell
	return isPresigned(q)
}

// isS3V2Authorization reports whether an Authorization value is S3's
// Signature Version 2 form ("AWS AKID:signature"; SigV4's algorithm names
// start with "AWS4").
func isS3V2Authorization(h string) bool {
	return strings.HasPrefix(strings.TrimLeft(h, " \t"), "AWS ")
}

// parseS3V2Authorization checks S3's Signature Version 2 Authorization
// header, "AWS AKID:signature" with a base64 signature. The signature is
// never verified: the proxy signs again. Its errors are *ParseError and
// never contain the signature.
func parseS3V2Authorization(h string) error {
	rest, ok := strings.CutPrefix(strings.TrimSpace(h), "AWS ")
	if !ok {
		return parseErr("Authorization", "not a Signature Version 2 header")
	}
	akid, sig, ok := strings.Cut(strings.TrimLeft(rest, " "), ":")
	if !ok {
		return parseErr("Authorization", "want AWS AKID:signature")
	}
	if akid == "" || !isToken(akid) {
		return parseErr("AWSAccessKeyId", "empty or invalid access key id")
	}
	if !isBase64(sig) {
		return parseErr("Signature", "want a base64 HMAC, got "+strconv.Itoa(len(sig))+" characters")
	}
	return nil
}

// isBase64 reports whether s is non-empty padded standard base64.
func isBase64(s string) bool {
	if s == "" || len(s)%4 != 0 {
		return false
	}
	body := strings.TrimRight(s, "=")
	if len(s)-len(body) > 2 {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// s3V2ClientTime is the signing time of an S3 Signature Version 2 request:
// its x-amz-date header, else its Date header (HTTP dates; zero when
// neither parses).
func s3V2ClientTime(h http.Header) time.Time {
	for _, name := range [...]string{"X-Amz-Date", "Date"} {
		v := headerValues(h, name)
		if len(v) != 1 {
			continue
		}
		s := strings.TrimSpace(v[0])
		if t, err := http.ParseTime(s); err == nil {
			return t.UTC()
		}
		// s3cmd writes "+0000" where HTTP dates have "GMT".
		if t, err := time.Parse(time.RFC1123Z, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// legacyParams is what parseLegacyParams found in a query or form.
type legacyParams struct {
	version    string    // a ClientSignatureVersion value, "" for none
	clientTime time.Time // Timestamp of a query API request, zero if none
	expires    time.Time // Expires of S3 query authentication
	// rest is the query or form without the signature parameters, every
	// other pair as it came (order, encoding, empty pairs); the input
	// itself when version is "".
	rest string
}

// legacyField is one signature parameter found by parseLegacyParams.
type legacyField struct {
	value string // as received, still escaped
	n     int    // how many times it appeared
}

// The signature parameters of the two query forms, in one table. An S3
// query carries an x-amz-security-token (any case) with temporary
// credentials; a query API request a SecurityToken.
const (
	fAccessKey = iota
	fSignature
	fVersion
	fMethod
	fTimestamp
	fExpires
	fSecurityToken
	fAmzToken
	nLegacyFields
)

var legacyFieldNames = [nLegacyFields]string{
	"AWSAccessKeyId", "Signature", "SignatureVersion", "SignatureMethod",
	"Timestamp", "Expires", "SecurityToken", "x-amz-security-token",
}

// legacyFieldOf is the field a (decoded) parameter name is, or -1.
func legacyFieldOf(name string) int {
	for i, n := range legacyFieldNames {
		if name == n {
			return i
		}
	}
	if strings.EqualFold(name, "x-amz-security-token") {
		return fAmzToken
	}
	return -1
}

// s3Field and queryAPIField report which fields each form removes.
func s3Field(f int) bool {
	return f == fAccessKey || f == fSignature || f == fExpires || f == fAmzToken
}

func queryAPIField(f int) bool {
	return f == fAccessKey || f == fSignature || f == fVersion || f == fMethod ||
		f == fTimestamp || f == fExpires || f == fSecurityToken
}

// rawMayBeLegacy is a quick test of a raw query, without allocating: does
// a parameter name AWSAccessKeyId or SignatureVersion (or need decoding to
// tell)? parseLegacyParams decides.
func rawMayBeLegacy(raw string) bool {
	for raw != "" {
		var pair, name string
		pair, raw, _ = strings.Cut(raw, "&")
		name, _, _ = strings.Cut(pair, "=")
		if name == "AWSAccessKeyId" || name == "SignatureVersion" || strings.ContainsAny(name, "%+") {
			return true
		}
	}
	return false
}

// parseLegacyParams finds a pre-SigV4 signature in a raw query or form
// (name=value pairs joined by '&', form-encoded) and removes it:
//
//   - a SignatureVersion parameter (0, 1 or 2) makes it a query API
//     request: AWSAccessKeyId, Signature, SignatureVersion,
//     SignatureMethod, Timestamp, Expires and SecurityToken go;
//   - otherwise, when s3 is set, AWSAccessKeyId with Signature makes it
//     S3 query string authentication: AWSAccessKeyId, Signature, Expires
//     (Unix seconds, required) and x-amz-security-token go.
//
// Anything else is no pre-SigV4 signature: version is "" and rest is raw.
// A signature parameter given twice, a missing or malformed required one
// give a *ParseError (never quoting a signature).
func parseLegacyParams(raw string, s3 bool) (legacyParams, error) {
	var fields [nLegacyFields]legacyField
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		name, value, _ := strings.Cut(pair, "=")
		if f := legacyFieldOf(decodeName(name)); f >= 0 {
			fields[f].value = value
			fields[f].n++
		}
	}
	lp := legacyParams{rest: raw}
	var strip func(int) bool
	switch {
	case fields[fVersion].n > 0:
		strip = queryAPIField
	case s3 && fields[fAccessKey].n > 0 && fields[fSignature].n > 0:
		strip = s3Field
	default:
		return lp, nil
	}
	values := [nLegacyFields]string{}
	for f := range fields {
		if !strip(f) || fields[f].n == 0 {
			continue
		}
		if fields[f].n > 1 {
			return lp, parseErr(legacyFieldNames[f], "appears more than once")
		}
		v, err := url.QueryUnescape(fields[f].value)
		if err != nil {
			return lp, parseErr(legacyFieldNames[f], "invalid escape")
		}
		values[f] = v
	}
	if akid := values[fAccessKey]; akid == "" || !isToken(akid) {
		return lp, parseErr("AWSAccessKeyId", "missing, empty or invalid")
	}
	if values[fSignature] == "" {
		return lp, parseErr("Signature", "missing or empty")
	}
	if fields[fVersion].n > 0 {
		switch v := values[fVersion]; v {
		case SigV2Query, SigV1Query, SigV0Query:
			lp.version = v
		default:
			return lp, parseErr("SignatureVersion", "want 0, 1 or 2, got "+quoteShort(v))
		}
		lp.clientTime = parseTimestamp(values[fTimestamp])
	} else {
		exp := values[fExpires]
		n, err := strconv.ParseInt(exp, 10, 64)
		if fields[fExpires].n == 0 || err != nil || n < 0 || exp[0] == '+' {
			return lp, parseErr("Expires", "want Unix seconds, got "+quoteShort(exp))
		}
		lp.version, lp.expires = SigV2S3Query, time.Unix(n, 0).UTC()
	}

	var b strings.Builder
	b.Grow(len(raw))
	first := true
	for rest := raw; ; {
		pair, after, more := strings.Cut(rest, "&")
		name, _, _ := strings.Cut(pair, "=")
		if f := legacyFieldOf(decodeName(name)); f < 0 || !strip(f) {
			if !first {
				b.WriteByte('&')
			}
			b.WriteString(pair)
			first = false
		}
		if !more {
			break
		}
		rest = after
	}
	lp.rest = b.String()
	return lp, nil
}

// decodeName is a parameter name decoded as a form decodes it; a name
// that does not decode is returned as it came (it names no signature
// parameter).
func decodeName(name string) string {
	if !strings.ContainsAny(name, "%+") {
		return name
	}
	if n, err := url.QueryUnescape(name); err == nil {
		return n
	}
	return name
}

// parseTimestamp reads a query API Timestamp (ISO 8601, UTC when it names
// no zone); zero when it does not parse.
func parseTimestamp(v string) time.Time {
	for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// legacyExpired is Sign's refusal of S3 query string authentication whose
// Expires has passed at the signing time t: the application asked for
// that limit, so the proxy keeps it, judged by the corrected clock.
func legacyExpired(expires, t time.Time) *RequestError {
	return &RequestError{
		Status:  http.StatusForbidden,
		Code:    "AccessDenied",
		Message: "Request has expired",
		Failure: awserrors.FailurePresignedExpired,
		Err: fmt.Errorf("signature version 2 query authentication expired at %s, %s before the signing time %s",
			expires.Format(time.RFC3339), t.Sub(expires).Round(time.Second), t.UTC().Format(time.RFC3339)),
	}
}
