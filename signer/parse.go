package signer

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only SigV4 signing algorithm skewproxy re-signs.
const Algorithm = "AWS4-HMAC-SHA256"

// AlgorithmECDSA is SigV4A, which skewproxy recognises but does not re-sign.
const AlgorithmECDSA = "AWS4-ECDSA-P256-SHA256"

// amzDateFormat is the layout of X-Amz-Date.
const amzDateFormat = "20060102T150405Z"

// maxPresignExpires is the longest X-Amz-Expires SigV4 allows (seven days).
const maxPresignExpires = 7 * 24 * time.Hour

// ParseError says which part of a SigV4 Authorization header or presigned
// query is malformed and why. Its text never contains a signature.
type ParseError struct {
	// Field names the offending part, e.g. "Credential" or "X-Amz-Date".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ParseError) Error() string {
	return "signer: malformed " + e.Field + ": " + e.Reason
}

func parseErr(field, reason string) *ParseError { return &ParseError{Field: field, Reason: reason} }

// ParseAuthorization parses a SigV4 Authorization header of the form
//
//	AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=<64 hex>
//
// The three components may come in any order, separated by commas and/or
// spaces as the various SDKs write them; each must appear exactly once.
// Anything else (another algorithm, a missing or repeated component, a
// malformed credential scope) gives a *ParseError.
func ParseAuthorization(h string) (*Authorization, error) {
	a := &Authorization{}
	if err := parseAuthorization(h, a, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// parseAuthorization is ParseAuthorization into a, appending the signed
// header names to names (so that Prepare can hand in storage it already
// owns). It allocates only for header names that are not lower-case and
// for errors.
func parseAuthorization(h string, a *Authorization, names []string) error {
	h = strings.TrimSpace(h)
	alg, rest, ok := strings.Cut(h, " ")
	if !ok {
		if h == Algorithm {
			return parseErr("Authorization", "no Credential, SignedHeaders or Signature")
		}
		return parseErr("Authorization", "not a SigV4 header")
	}
	switch alg {
	case Algorithm:
	case AlgorithmECDSA:
		return parseErr("Authorization", "SigV4A (AWS4-ECDSA-P256-SHA256) is not supported")
	default:
		return parseErr("Authorization", "unsupported algorithm "+quoteShort(alg))
	}

	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for i := 0; i < len(rest); {
		// Components are separated by any run of commas, spaces and tabs.
		if isAuthSep(rest[i]) {
			i++
			continue
		}
		j := i
		for j < len(rest) && !isAuthSep(rest[j]) {
			j++
		}
		part := rest[i:j]
		i = j
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return parseErr("Authorization", "a component has no '='")
		}
		var dst *string
		var seen *bool
		switch name {
		case "Credential":
			dst, seen = &cred, &haveCred
		case "SignedHeaders":
			dst, seen = &signed, &haveSigned
		case "Signature":
			dst, seen = &sig, &haveSig
		default:
			return parseErr("Authorization", "unknown component "+quoteShort(name))
		}
		if *seen {
			return parseErr(name, "appears more than once")
		}
		*dst, *seen = value, true
	}
	switch {
	case !haveCred:
		return parseErr("Credential", "missing")
	case !haveSigned:
		return parseErr("SignedHeaders", "missing")
	case !haveSig:
		return parseErr("Signature", "missing")
	}

	if err := parseCredential("Credential", cred, a); err != nil {
		return err
	}
	hs, err := parseSignedHeaders("SignedHeaders", signed, names)
	if err != nil {
		return err
	}
	a.SignedHeaders = hs
	if err := checkSignature("Signature", sig); err != nil {
		return err
	}
	a.Signature = sig
	return nil
}

// ParsePresignedQuery parses the SigV4 parameters of a presigned URL's
// query: X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
// X-Amz-SignedHeaders and X-Amz-Signature. Each must appear exactly once.
// Malformed input gives a *ParseError.
func ParsePresignedQuery(q url.Values) (*PresignedQuery, error) {
	get := func(name string) (string, error) {
		v, ok := q[name]
		switch {
		case !ok || len(v) == 0:
			return "", parseErr(name, "missing")
		case len(v) > 1:
			return "", parseErr(name, "appears more than once")
		}
		return v[0], nil
	}
	alg, err := get("X-Amz-Algorithm")
	if err != nil {
		return nil, err
	}
	switch alg {
	case Algorithm:
	case AlgorithmECDSA:
		return nil, parseErr("X-Amz-Algorithm", "SigV4A (AWS4-ECDSA-P256-SHA256) is not supported")
	default:
		return nil, parseErr("X-Amz-Algorithm", "unsupported algorithm "+quoteShort(alg))
	}
	p := &PresignedQuery{}
	cred, err := get("X-Amz-Credential")
	if err != nil {
		return nil, err
	}
	if err := parseCredential("X-Amz-Credential", cred, &p.Authorization); err != nil {
		return nil, err
	}
	date, err := get("X-Amz-Date")
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(amzDateFormat, date)
	if err != nil {
		return nil, parseErr("X-Amz-Date", "want YYYYMMDDTHHMMSSZ, got "+quoteShort(date))
	}
	if t.Format("20060102") != p.Date {
		return nil, parseErr("X-Amz-Date", "date differs from the credential scope date "+p.Date)
	}
	p.Time = t
	if !q.Has("X-Amz-Expires") {
		// aws-sdk-go-v2's PresignGetCallerIdentity (the EKS token) leaves it
		// out; STS then allows DefaultPresignExpires.
		p.Expires = DefaultPresignExpires
	} else if err := parsePresignExpires(q.Get("X-Amz-Expires"), p); err != nil {
		return nil, err
	}
	signed, err := get("X-Amz-SignedHeaders")

	if err != nil {
		return nil, err
	}
	if p.SignedHeaders, err = parseSignedHeaders("X-Amz-SignedHeaders", signed, nil); err != nil {
		return nil, err
	}
	sig, err := get("X-Amz-Signature")
	if err != nil {
		return nil, err
	}
	if err := checkSignature("X-Amz-Signature", sig); err != nil {
		return nil, err
	}
	p.Signature = sig
	return p, nil
}

// parseCredential parses "AKID/YYYYMMDD/region/service/aws4_request" into a.
func parseCredential(field, v string, a *Authorization) error {
	var parts [5]string
	n := 0
	for rest := v; ; n++ {
		part, after, more := strings.Cut(rest, "/")
		if n < len(parts) {
			parts[n] = part
		}
		if !more {
			n++
			break
		}
		rest = after
	}
	if n != len(parts) {
		return parseErr(field, "want AKID/YYYYMMDD/region/service/aws4_request")
	}
	akid, date, region, service, term := parts[0], parts[1], parts[2], parts[3], parts[4]
	if akid == "" || !isToken(akid) {
		return parseErr(field, "empty or invalid access key id")
	}
	if !isScopeDate(date) {
		return parseErr(field, "scope date is not YYYYMMDD: "+quoteShort(date))
	}
	if region == "" || !isToken(region) {
		return parseErr(field, "empty or invalid region")
	}
	if service == "" || !isToken(service) {
		return parseErr(field, "empty or invalid service")
	}
	if term != "aws4_request" {
		return parseErr(field, "scope does not end in aws4_request")
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = akid, date, region, service
	return nil
}

// isAuthSep reports whether c separates Authorization components.
func isAuthSep(c byte) bool { return c == ',' || c == ' ' || c == '\t' }

// isScopeDate reports whether d is a valid YYYYMMDD date, as
// time.Parse("20060102", d) would accept it, without its cost.
func isScopeDate(d string) bool {
	if len(d) != 8 {
		return false
	}
	n := 0
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
		n = n*10 + int(d[i]-'0')
	}
	y, m, day := n/10000, n/100%100, n%100
	return m >= 1 && m <= 12 && day >= 1 && day <= daysIn(time.Month(m), y)
}

// daysIn is the number of days of month m in year y.
func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseAmzDate parses an X-Amz-Date (YYYYMMDDTHHMMSSZ) as
// time.Parse(amzDateFormat, v) does, by hand for the usual form.
func parseAmzDate(v string) (time.Time, error) {
	if len(v) == len(amzDateFormat) && v[8] == 'T' && v[15] == 'Z' && isScopeDate(v[:8]) {
		n, ok := 0, true
		for i := 9; i < 15; i++ {
			c := v[i]
			if c < '0' || c > '9' {
				ok = false
				break
			}
			n = n*10 + int(c-'0')
		}
		h, mi, sec := n/10000, n/100%100, n%100
		if ok && h < 24 && mi < 60 && sec < 60 {
			d := int(v[0]-'0')*1000 + int(v[1]-'0')*100 + int(v[2]-'0')*10 + int(v[3]-'0')
			mo := time.Month(int(v[4]-'0')*10 + int(v[5]-'0'))
			day := int(v[6]-'0')*10 + int(v[7]-'0')
			return time.Date(d, mo, day, h, mi, sec, 0, time.UTC), nil
		}
	}
	return time.Parse(amzDateFormat, v)
}

// smallDupCheck is the list length up to which parseSignedHeaders finds
// duplicates by comparing pairs instead of building a set.
const smallDupCheck = 32

// parseSignedHeaders splits "a;b;c" into lower-case header names,
// appended to names.
func parseSignedHeaders(field, v string, names []string) ([]string, error) {
	if v == "" {
		return nil, parseErr(field, "empty")
	}
	start := len(names)
	for rest := v; ; {
		n, after, more := strings.Cut(rest, ";")
		if n == "" {
			return nil, parseErr(field, "empty header name")
		}
		for j := 0; j < len(n); j++ {
			if !isHeaderNameByte(n[j]) {
				return nil, parseErr(field, "invalid header name "+quoteShort(n))
			}
		}
		names = append(names, strings.ToLower(n))
		if !more {
			break
		}
		rest = after
	}
	got := names[start:]
	if len(got) <= smallDupCheck {
		for i := 1; i < len(got); i++ {
			for j := 0; j < i; j++ {
				if got[i] == got[j] {
					return nil, parseErr(field, "header "+quoteShort(got[i])+" listed twice")
				}
			}
		}
		return got, nil
	}
	seen := make(map[string]struct{}, len(got))
	for _, n := range got {
		if _, dup := seen[n]; dup {
			return nil, parseErr(field, "header "+quoteShort(n)+" listed twice")
		}
		seen[n] = struct{}{}
	}
	return got, nil
}

func checkSignature(field, v string) error {
	if len(v) != 64 {
		return parseErr(field, "want 64 hex digits, got "+strconv.Itoa(len(v))+" characters")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return parseErr(field, "not hexadecimal")
		}
	}
	return nil
}

// isToken reports whether s holds only characters seen in access key ids,
// regions and service names.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// isHeaderNameByte reports whether c is an RFC 9110 token character.
func isHeaderNameByte(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// quoteShort quotes s for an error message, cut to a safe length.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// DefaultPresignExpires is the lifetime of a presigned URL that carries no
// X-Amz-Expires (STS accepts such URLs for 15 minutes).
const DefaultPresignExpires = 15 * time.Minute

func parsePresignExpires(exp string, p *PresignedQuery) error {
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || n < 1 || exp == "" || exp[0] == '+' {
		return parseErr("X-Amz-Expires", "want a positive number of seconds, got "+quoteShort(exp))
	}
	if n > int64(maxPresignExpires/time.Second) {
		return parseErr("X-Amz-Expires", "longer than the SigV4 maximum of 604800 seconds (7 days)")
	}
	p.Expires = time.Duration(n) * time.Second
	return nil
}
