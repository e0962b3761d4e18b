package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// The fast header signer.
//
// It produces exactly what aws-sdk-go-v2's v4.Signer.SignHTTP produces for
// the bare request signSDK hands it (the tests compare the two byte for
// byte), but builds the canonical request in one pooled buffer, hashes it
// with sha256.Sum256, takes the derived key from the key cache, computes
// the HMAC on the stack and writes Authorization and X-Amz-Date as one
// string. Everything that does not depend on the signing time or the
// credentials is built once, by Prepare (fastPlan.canon).

// fastPlan is the time-independent part of a request's canonical form:
//
//	canon[:hdrEnd]  method, URI and query lines, then the canonical header
//	                lines without x-amz-date and x-amz-security-token
//	canon[hdrEnd:]  the signed header list without those two names
//
// hdrDate and hdrTok (sigDate and sigTok) are where the x-amz-date and
// x-amz-security-token lines (names) go.
type fastPlan struct {
	canon                   string
	hdrDate, hdrTok, hdrEnd int
	sigDate, sigTok         int
}

// Names of the two headers that are signed with values known only at Sign.
const (
	dateHeader  = "x-amz-date"
	tokenHeader = "x-amz-security-token"
)

// planFast builds st.plan.fast, or sets st.plan.sdkOnly when the request is
// one the fast signer does not reproduce. query is rawQuery, the incoming
// query, parsed when Prepare parsed it, else nil.
func (st *prepState) planFast(query url.Values, rawQuery string) {
	plan := &st.plan
	if strings.ContainsAny(plan.host, "/?") {
		plan.sdkOnly = true
		return
	}
	signPath := wirePath(&st.url)
	if !plan.s3 {
		signPath = normalizePath(signPath)
	}
	if signPath[0] != '/' || strings.IndexByte(signPath, '?') >= 0 {
		plan.sdkOnly = true
		return
	}
	cq := st.url.RawQuery
	if !isCanonicalQuery(cq) {
		q := query
		if q == nil || cq != rawQuery {
			var err error
			if q, err = url.ParseQuery(cq); err != nil {
				plan.sdkOnly = true
				return
			}
		}
		cq = canonicalQuery(q)
	}

	// The canonical headers: host, content-length when signed, and the
	// chosen ones, in name order.
	type line struct {
		name string
		vals []string
		kind byte // 'h' host, 'l' content-length, 0 other
	}
	var lines [24]line
	n := 0
	add := func(l line) bool {
		if n == len(lines) {
			return false
		}
		lines[n] = l
		n++
		return true
	}
	add(line{name: "host", kind: 'h'})
	if plan.signLength {
		add(line{name: "content-length", kind: 'l'})
	}
	for _, sg := range plan.signed {
		if !add(line{name: sg.name, vals: st.hdrs[sg.hdr].vals}) {
			plan.sdkOnly = true
			return
		}
	}
	ls := lines[:n]
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].name < ls[j-1].name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}

	size := len(st.tmpl.Method) + 3*len(signPath) + len(cq) + 3
	for _, l := range ls {
		size += 2*len(l.name) + 22
		for _, v := range l.vals {
			size += len(v) + 1
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer putBuf(bp)
	b := (*bp)[:0]
	if cap(b) < size+len(plan.signHost) {
		b = make([]byte, 0, size+len(plan.signHost))
	}
	b = append(b, st.tmpl.Method...)
	b = append(b, '\n')
	if plan.s3 {
		b = append(b, signPath...)
	} else {
		b = appendEscapedPath(b, signPath)
	}
	b = append(b, '\n')
	b = append(b, cq...)
	b = append(b, '\n')
	f := fastPlan{hdrDate: -1, hdrTok: -1}
	for _, l := range ls {
		if f.hdrDate < 0 && l.name > dateHeader {
			f.hdrDate = len(b)
		}
		if f.hdrTok < 0 && l.name > tokenHeader {
			f.hdrTok = len(b)
		}
		b = append(b, l.name...)
		b = append(b, ':')
		switch l.kind {
		case 'h':
			b = appendHeaderValue(b, plan.signHost, false)
		case 'l':
			b = strconv.AppendInt(b, st.body.length, 10)
		default:
			for i, v := range l.vals {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendHeaderValue(b, v, true)
			}
		}
		b = append(b, '\n')
	}
	f.hdrEnd = len(b)
	if f.hdrDate < 0 {
		f.hdrDate = f.hdrEnd
	}
	if f.hdrTok < 0 {
		f.hdrTok = f.hdrEnd
	}
	f.sigDate, f.sigTok = -1, -1
	for i, l := range ls {
		// host always comes first of the names before x-amz-date, so a
		// name is always in front of the inserted ones.
		if f.sigDate < 0 && l.name > dateHeader {
			f.sigDate = len(b)
		}
		if f.sigTok < 0 && l.name > tokenHeader {
			f.sigTok = len(b)
		}
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, l.name...)
	}
	if f.sigDate < 0 {
		f.sigDate = len(b)
	}
	if f.sigTok < 0 {
		f.sigTok = len(b)
	}
	f.canon = string(b)
	plan.fast = f
	*bp = b
}

// bufPool holds the buffers signFast builds canonical requests in.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2048)
	return &b
}}

// maxPooledBuf is the largest buffer put back into bufPool.
const maxPooledBuf = 64 << 10

// signFast signs plan at t with creds: it returns the Authorization value
// and the X-Amz-Date value. ok is false for a signing time it does not
// handle (a year outside 0000-9999); the caller then uses the SDK signer.
func (s *Signer) signFast(plan *signPlan, creds aws.Credentials, t time.Time) (authz, date string, ok bool) {
	var amzBuf [len(amzDateFormat)]byte
	if !formatAmzDate(&amzBuf, t) {
		return "", "", false
	}
	amz, day := amzBuf[:], amzBuf[:8]
	f := &plan.fast
	c := f.canon
	tok := creds.SessionToken != ""

	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	// The canonical request.
	b = append(b, c[:f.hdrDate]...)
	b = append(b, dateHeader+":"...)
	b = append(b, amz...)
	b = append(b, '\n')
	b = append(b, c[f.hdrDate:f.hdrTok]...)
	if tok {
		b = append(b, tokenHeader+":"...)
		b = appendHeaderValue(b, creds.SessionToken, true)
		b = append(b, '\n')
	}
	b = append(b, c[f.hdrTok:f.hdrEnd]...)
	b = append(b, '\n')
	sigStart := len(b)
	b = append(b, c[f.hdrEnd:f.sigDate]...)
	b = append(b, ";"+dateHeader...)
	b = append(b, c[f.sigDate:f.sigTok]...)
	if tok {
		b = append(b, ";"+tokenHeader...)
	}
	b = append(b, c[f.sigTok:]...)
	sigEnd := len(b)
	b = append(b, '\n')
	b = append(b, plan.payloadHash...)
	crHash := sha256.Sum256(b)

	// The string to sign, after the HMAC inner pad.
	id := keyID{secret: creds.SecretAccessKey, region: plan.region, service: plan.service}
	copy(id.date[:], day)
	key := s.keys.get(id)
	mark := len(b)
	b = appendInnerPad(b, key)
	b = append(b, Algorithm+"\n"...)
	b = append(b, amz...)
	b = append(b, '\n')
	b = appendScope(b, day, plan.region, plan.service)
	b = append(b, '\n')
	b = hex.AppendEncode(b, crHash[:])
	sig := hmacFinish(key, b[mark:])

	// X-Amz-Date and Authorization, one string.
	mark = len(b)
	b = append(b, amz...)
	b = append(b, Algorithm+" Credential="...)
	b = append(b, creds.AccessKeyID...)
	b = append(b, '/')
	b = appendScope(b, day, plan.region, plan.service)
	b = append(b, ", SignedHeaders="...)
	b = append(b, b[sigStart:sigEnd]...)
	b = append(b, ", Signature="...)
	b = hex.AppendEncode(b, sig[:])
	out := string(b[mark:])

	*bp = b
	putBuf(bp)
	return out[len(amz):], out[:len(amz)], true
}

// formatAmzDate writes t in UTC as X-Amz-Date (20060102T150405Z) into
// dst, what t.UTC().Format(amzDateFormat) gives, without the layout
// parsing. It reports false for a year outside 0000-9999.
func formatAmzDate(dst *[len(amzDateFormat)]byte, t time.Time) bool {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return false
	}
	hour, min, sec := t.Clock()
	put := func(i, v, n int) {
		for j := i + n - 1; j >= i; j-- {
			dst[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	put(4, int(month), 2)
	put(6, day, 2)
	dst[8] = 'T'
	put(9, hour, 2)
	put(11, min, 2)
	put(13, sec, 2)
	dst[15] = 'Z'
	return true
}

// putBuf returns a buffer to bufPool unless it grew too large to keep.
func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBuf {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
	}
}

// appendScope appends the credential scope day/region/service/aws4_request.
func appendScope(b, day []byte, region, service string) []byte {
	b = append(b, day...)
	b = append(b, '/')
	b = append(b, region...)
	b = append(b, '/')
	b = append(b, service...)
	return append(b, "/aws4_request"...)
}

// appendHeaderValue appends v as the SDK signer puts it in a canonical
// header: leading and trailing spaces cut and runs of spaces made one
// (StripExcessSpaces), then, when trim is set, surrounding white space of
// any kind cut (strings.TrimSpace), in that order.
func appendHeaderValue(b []byte, v string, trim bool) []byte {
	j := len(v) - 1
	for j >= 0 && v[j] == ' ' {
		j--
	}
	k := 0
	for k < j && v[k] == ' ' {
		k++
	}
	v = v[k : j+1]
	start := len(b)
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if !space {
				b = append(b, c)
			}
			space = true
			continue
		}
		space = false
		b = append(b, c)
	}
	if trim {
		t := bytes.TrimSpace(b[start:])
		n := copy(b[start:], t)
		b = b[:start+n]
	}
	return b
}

// appendEscapedPath appends p with every byte but unreserved ones and '/'
// escaped as %XX, as the SDK signer escapes the URI of non-S3 requests
// (an escaped path is thereby escaped twice).
func appendEscapedPath(b []byte, p string) []byte {
	const upper = "0123456789ABCDEF"
	for i := 0; i < len(p); i++ {
		c := p[i]
		if isUnreserved(c) || c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', upper[c>>4], upper[c&15])
	}
	return b
}
