package proxytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Credentials are the AWS keys a request must be signed with.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must be carried by every request (signed).
	// When empty, a request that carries a session token is refused as an
	// invalid token, the way AWS refuses a token it did not issue.
	SessionToken string
	// Expires, when set, is when these credentials die (like an STS
	// session's): a request the server receives at or after it is refused
	// ExpiredToken, whatever its signature.
	Expires time.Time
}

// Verified describes a request whose signature checked out.
type Verified struct {
	// AccessKeyID is the key named in the credential scope.
	AccessKeyID string
	// SigningTime is the request's X-Amz-Date (or Date) value.
	SigningTime time.Time
	// Region and Service come from the credential scope.
	Region  string
	Service string
	// SignedHeaders lists the signed header names, lower case, sorted.
	SignedHeaders []string
	// Presigned is true for query-string (presigned URL) signatures.
	Presigned bool
	// Expires is X-Amz-Expires for presigned requests, zero otherwise.
	Expires time.Duration
	// PayloadHash is the hash that was signed: a hex SHA-256, or a literal
	// such as UNSIGNED-PAYLOAD or STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
	PayloadHash string
	// SessionToken reports whether the request carried a (signed) token.
	SessionToken bool
	// Signature is the request's signature: the seed of the chunk
	// signatures of an aws-chunked body (see VerifyChunked). Never log it.
	Signature string
}

// FailureKind is why a request failed verification.
type FailureKind string

// The verification failure kinds.
const (
	// FailMissingAuth: no Authorization header and no presigned query.
	FailMissingAuth FailureKind = "missing_auth"
	// FailMalformed: an Authorization header or query that cannot be parsed.
	FailMalformed FailureKind = "malformed"
	// FailExpiredToken: the credentials expired (Credentials.Expires) before
	// the server received the request.
	FailExpiredToken FailureKind = "expired_token"
	// FailUnknownKey: the access key is not the expected one.
	FailUnknownKey FailureKind = "unknown_key"
	// FailExpired: X-Amz-Date is older than now - window.
	FailExpired FailureKind = "signature_expired"
	// FailNotYetCurrent: X-Amz-Date is later than now + window.
	FailNotYetCurrent FailureKind = "signature_not_yet_current"
	// FailPresignedExpired: a presigned URL used after X-Amz-Date + X-Amz-Expires.
	FailPresignedExpired FailureKind = "presigned_expired"
	// FailBadToken: a session token missing, unexpected, different from the
	// expected one, or present but not signed.
	FailBadToken FailureKind = "bad_token"
	// FailPayloadHash: x-amz-content-sha256 does not match the body.
	FailPayloadHash FailureKind = "payload_hash_mismatch"
	// FailMismatch: the signature is not the one the server calculates.
	FailMismatch FailureKind = "signature_mismatch"
	// FailChunkSignature: an aws-chunked body whose framing or chunk
	// signatures are wrong (see VerifyChunked).
	FailChunkSignature FailureKind = "chunk_signature_mismatch"
)

// VerifyError is the error Verify returns. Kind says what failed; the time
// fields are set for the time-window kinds so an answer can quote them.
type VerifyError struct {
	Kind FailureKind
	// Detail is a short human explanation (never a secret or signature).
	Detail string
	// SigningTime is the request's signing time, when it could be parsed.
	SigningTime time.Time
	// ServerTime is the verifier's now.
	ServerTime time.Time
	// Window is the allowed skew for FailExpired, FailNotYetCurrent.
	Window time.Duration
	// Expires is X-Amz-Expires for FailPresignedExpired.
	Expires time.Duration
}

// Error implements error.
func (e *VerifyError) Error() string {
	return fmt.Sprintf("sigv4 verify: %s: %s", e.Kind, e.Detail)
}

// KindOf returns the FailureKind of err if it is (or wraps) a *VerifyError,
// and "" otherwise.
func KindOf(err error) FailureKind {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Kind
	}
	return ""
}

const (
	algorithm   = "AWS4-HMAC-SHA256"
	amzDateFmt  = "20060102T150405Z"
	scopeDayFmt = "20060102"
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// Verify checks the SigV4 signature of r, whose body is body, against creds,
// at time now, allowing the signing time to be up to window away from now in
// either direction. It handles Authorization-header and presigned-query
// requests. On failure the error is a *VerifyError.
func Verify(r *http.Request, body []byte, creds Credentials, now time.Time, window time.Duration) (*Verified, error) {
	return verify(r, body, creds, now, window, window)
}

// VerifyWindow is Verify with different allowances for a signing time in the
// past and in the future (AWS services commonly allow 5 minutes past and 15
// minutes future).
func VerifyWindow(r *http.Request, body []byte, creds Credentials, now time.Time, past, future time.Duration) (*Verified, error) {
	return verify(r, body, creds, now, past, future)
}

// sigParams is what the client claims: from the header or from the query.
type sigParams struct {
	accessKey, day, region, service string
	signedHeaders                   []string
	signature                       string
	amzDate                         string
	presigned                       bool
	expires                         time.Duration
	token                           string
	tokenSigned                     bool
}

func verify(r *http.Request, body []byte, creds Credentials, now time.Time, past, future time.Duration) (*Verified, error) {
	p, err := parseSigParams(r)
	if err != nil {
		return nil, err
	}
	if p.accessKey != creds.AccessKeyID {
		return nil, &VerifyError{Kind: FailUnknownKey, Detail: "access key not recognised"}
	}
	signedAt, err := time.Parse(amzDateFmt, p.amzDate)
	if err != nil {
		return nil, &VerifyError{Kind: FailMalformed, Detail: fmt.Sprintf("bad signing date %q", p.amzDate)}
	}
	if signedAt.Format(scopeDayFmt) != p.day {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "credential scope date does not match the signing date", SigningTime: signedAt}
	}
	if err := checkTime(p, signedAt, now, past, future); err != nil {
		return nil, err
	}
	if err := checkToken(p, creds); err != nil {
		return nil, err
	}
	if !creds.Expires.IsZero() && !now.Before(creds.Expires) {
		return nil, &VerifyError{Kind: FailExpiredToken, Detail: "the credentials expired at " + creds.Expires.UTC().Format(time.RFC3339), ServerTime: now}
	}
	payloadHash, err := payloadHash(r, body, p)
	if err != nil {
		return nil, err
	}
	canonical := canonicalRequest(r, p, payloadHash)
	scope := strings.Join([]string{p.day, p.region, p.service, "aws4_request"}, "/")
	sts := strings.Join([]string{algorithm, p.amzDate, scope, hexSHA256([]byte(canonical))}, "\n")
	want := hex.EncodeToString(hmacSHA256(signingKey(creds.SecretAccessKey, p.day, p.region, p.service), sts))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p.signature))) != 1 {
		return nil, &VerifyError{Kind: FailMismatch, Detail: "signature does not match", SigningTime: signedAt, ServerTime: now}
	}
	return &Verified{
		AccessKeyID:   p.accessKey,
		SigningTime:   signedAt,
		Region:        p.region,
		Service:       p.service,
		SignedHeaders: p.signedHeaders,
		Presigned:     p.presigned,
		Expires:       p.expires,
		PayloadHash:   payloadHash,
		SessionToken:  p.token != "",
		Signature:     strings.ToLower(p.signature),
	}, nil
}

func parseSigParams(r *http.Request) (*sigParams, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return parseAuthHeader(r, auth)
	}
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != "" || q.Get("X-Amz-Signature") != "" {
		return parseQuery(q)
	}
	return nil, &VerifyError{Kind: FailMissingAuth, Detail: "no Authorization header and no X-Amz-Signature query parameter"}
}

func parseAuthHeader(r *http.Request, auth string) (*sigParams, error) {
	alg, rest, ok := strings.Cut(auth, " ")
	if !ok || alg != algorithm {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "Authorization is not AWS4-HMAC-SHA256"}
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, &VerifyError{Kind: FailMalformed, Detail: "Authorization component without '='"}
		}
		fields[k] = v
	}
	p := &sigParams{signature: fields["Signature"]}
	if err := p.setCredential(fields["Credential"]); err != nil {
		return nil, err
	}
	if err := p.setSignedHeaders(fields["SignedHeaders"]); err != nil {
		return nil, err
	}
	if p.signature == "" {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "Authorization without Signature"}
	}
	p.amzDate = r.Header.Get("X-Amz-Date")
	if p.amzDate == "" {
		// SigV4 allows the Date header instead; it must then be signed.
		d, err := http.ParseTime(r.Header.Get("Date"))
		if err != nil || !p.signs("date") {
			return nil, &VerifyError{Kind: FailMalformed, Detail: "no X-Amz-Date and no signed Date header"}
		}
		p.amzDate = d.UTC().Format(amzDateFmt)
	} else if !p.signs("x-amz-date") {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "X-Amz-Date is not signed"}
	}
	p.token = r.Header.Get("X-Amz-Security-Token")
	p.tokenSigned = p.signs("x-amz-security-token")
	return p, nil
}

func parseQuery(q url.Values) (*sigParams, error) {
	if q.Get("X-Amz-Algorithm") != algorithm {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "X-Amz-Algorithm is not AWS4-HMAC-SHA256"}
	}
	p := &sigParams{presigned: true, signature: q.Get("X-Amz-Signature"), amzDate: q.Get("X-Amz-Date")}
	if err := p.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, err
	}
	if err := p.setSignedHeaders(q.Get("X-Amz-SignedHeaders")); err != nil {
		return nil, err
	}
	if p.signature == "" || p.amzDate == "" {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "presigned query without X-Amz-Signature or X-Amz-Date"}
	}
	exp := q.Get("X-Amz-Expires")
	if !q.Has("X-Amz-Expires") {
		exp = "900" // STS accepts presigned URLs without it for 15 minutes
	}
	secs, err := strconv.Atoi(exp)
	if err != nil || secs < 1 || secs > 7*24*3600 {
		return nil, &VerifyError{Kind: FailMalformed, Detail: "X-Amz-Expires must be 1..604800 seconds"}
	}
	p.expires = time.Duration(secs) * time.Second
	// In a presigned URL the token is part of the signed query string.
	p.token = q.Get("X-Amz-Security-Token")
	p.tokenSigned = true
	return p, nil
}

func (p *sigParams) setCredential(c string) error {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return &VerifyError{Kind: FailMalformed, Detail: "Credential is not KEY/DATE/REGION/SERVICE/aws4_request"}
	}
	p.accessKey, p.day, p.region, p.service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

func (p *sigParams) setSignedHeaders(s string) error {
	if s == "" {
		return &VerifyError{Kind: FailMalformed, Detail: "no SignedHeaders"}
	}
	p.signedHeaders = strings.Split(s, ";")
	if !sort.StringsAreSorted(p.signedHeaders) {
		return &VerifyError{Kind: FailMalformed, Detail: "SignedHeaders not sorted"}
	}
	for _, h := range p.signedHeaders {
		if h == "" || h != strings.ToLower(h) {
			return &VerifyError{Kind: FailMalformed, Detail: "SignedHeaders must be lower case and non-empty"}
		}
	}
	if !p.signs("host") {
		return &VerifyError{Kind: FailMalformed, Detail: "host is not signed"}
	}
	return nil
}

func (p *sigParams) signs(name string) bool {
	for _, h := range p.signedHeaders {
		if h == name {
			return true
		}
	}
	return false
}

func checkTime(p *sigParams, signedAt, now time.Time, past, future time.Duration) error {
	if signedAt.After(now.Add(future)) {
		return &VerifyError{Kind: FailNotYetCurrent, Detail: "signing time is in the future", SigningTime: signedAt, ServerTime: now, Window: future}
	}
	if p.presigned {
		if now.After(signedAt.Add(p.expires)) {
			return &VerifyError{Kind: FailPresignedExpired, Detail: "presigned URL has expired", SigningTime: signedAt, ServerTime: now, Expires: p.expires}
		}
		return nil
	}
	if signedAt.Before(now.Add(-past)) {
		return &VerifyError{Kind: FailExpired, Detail: "signing time is too old", SigningTime: signedAt, ServerTime: now, Window: past}
	}
	return nil
}

func checkToken(p *sigParams, creds Credentials) error {
	switch {
	case p.token == "" && creds.SessionToken != "":
		return &VerifyError{Kind: FailBadToken, Detail: "session token required but missing"}
	case p.token != "" && !p.tokenSigned:
		return &VerifyError{Kind: FailBadToken, Detail: "session token present but not signed"}
	case p.token != "" && p.token != creds.SessionToken:
		return &VerifyError{Kind: FailBadToken, Detail: "session token not recognised"}
	}
	return nil
}

// isS3 reports whether service uses S3's single-encoded, unnormalised path.
func isS3(service string) bool {
	return service == "s3" || service == "s3-object-lambda" || service == "s3-outposts" || service == "s3express"
}

func payloadHash(r *http.Request, body []byte, p *sigParams) (string, error) {
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case claimed == "" && p.presigned && isS3(p.service):
		return "UNSIGNED-PAYLOAD", nil
	case claimed == "":
		return hexSHA256(body), nil
	case claimed == "UNSIGNED-PAYLOAD" || strings.HasPrefix(claimed, "STREAMING-"):
		return claimed, nil
	case claimed != hexSHA256(body):
		return "", &VerifyError{Kind: FailPayloadHash, Detail: "x-amz-content-sha256 does not match the body"}
	}
	return claimed, nil
}

func canonicalRequest(r *http.Request, p *sigParams, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL, isS3(p.service)))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery, p.presigned))
	b.WriteByte('\n')
	for _, h := range p.signedHeaders {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(canonicalHeaderValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(p.signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// canonicalURI is, for S3, the URI-encoded decoded path as it is (no
// normalisation); for other services the wire path with dot segments and
// empty segments removed, each segment encoded once more (SigV4's "double
// encoding": the already-escaped wire form is escaped again).
func canonicalURI(u *url.URL, s3 bool) string {
	if s3 {
		p := u.Path
		if p == "" {
			return "/"
		}
		return uriEncode(p, false)
	}
	escaped := u.EscapedPath()
	if escaped == "" {
		return "/"
	}
	var out []string
	for seg := range strings.SplitSeq(escaped, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, uriEncode(seg, true))
		}
	}
	res := "/" + strings.Join(out, "/")
	last := escaped[strings.LastIndex(escaped, "/")+1:]
	if len(out) > 0 && (last == "" || last == "." || last == "..") {
		res += "/"
	}
	return res
}

func canonicalQuery(raw string, presigned bool) string {
	type kv struct{ k, v string }
	var pairs []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			dk = k
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			dv = v
		}
		if presigned && dk == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, kv{uriEncode(dk, true), uriEncode(dv, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&")
}

func canonicalHeaderValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		vals = r.Header.Values("Content-Length")
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		vals = r.Header.Values("Transfer-Encoding")
		if len(vals) == 0 {
			vals = r.TransferEncoding
		}
	default:
		vals = r.Header.Values(name)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// uriEncode escapes every byte except the unreserved characters
// A-Z a-z 0-9 - . _ ~ (and '/', unless encodeSlash).
func uriEncode(s string, encodeSlash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func signingKey(secret, day, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), day)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// HexSHA256 is the lower-case hex SHA-256 of b, the payload hash SigV4 signs.
func HexSHA256(b []byte) string { return hexSHA256(b) }
