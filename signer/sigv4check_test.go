package signer

// An independent SigV4 implementation used only by the tests to check what
// the aws signer and the re-signing code produce. It shares no code with
// the package: canonicalisation, escaping, normalisation and key
// derivation are written again from the specification.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"testing"
	"time"
)

// checkInput is one request as it goes on the wire.
type checkInput struct {
	Method    string
	Path      string // as on the wire (escaped, or raw text for test vectors)
	RawQuery  string
	Host      string
	Header    http.Header // as on the wire (Host aside)
	Signed    []string    // lower-case signed header names
	Payload   string      // payload hash
	S3        bool        // S3: path used as is
	Normalize bool        // non-S3: remove dot and empty segments
}

func checkEscape(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		case c == '/' && keepSlash:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func checkCanonicalURI(in checkInput) string {
	p := in.Path
	if p == "" {
		p = "/"
	}
	if in.S3 {
		return p
	}
	if in.Normalize {
		trailing := strings.HasSuffix(p, "/")
		p = path.Clean("/" + p) // removes ., .. and empty segments
		if trailing && p != "/" {
			p += "/"
		}
	}
	return checkEscape(p, true)
}

func checkCanonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type pair struct{ k, v string }
	var pairs []pair
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		dk, err1 := url.PathUnescape(k)
		dv, err2 := url.PathUnescape(v)
		if err1 != nil || err2 != nil {
			panic("bad query in test: " + kv)
		}
		pairs = append(pairs, pair{checkEscape(dk, false), checkEscape(dv, false)})
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

func checkTrimAll(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

func checkCanonicalRequest(in checkInput) string {
	var hdrs strings.Builder
	for _, name := range in.Signed {
		var vals []string
		if name == "host" {
			vals = []string{in.Host}
		} else {
			for k, vs := range in.Header {
				if strings.EqualFold(k, name) {
					for _, v := range vs {
						vals = append(vals, checkTrimAll(v))
					}
				}
			}
		}
		hdrs.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return strings.Join([]string{
		in.Method,
		checkCanonicalURI(in),
		checkCanonicalQuery(in.RawQuery),
		hdrs.String(),
		strings.Join(in.Signed, ";"),
		in.Payload,
	}, "\n")
}

func checkHMAC(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func checkStringToSign(t time.Time, region, service, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return strings.Join([]string{
		"AWS4-HMAC-SHA256",
		t.UTC().Format("20060102T150405Z"),
		t.UTC().Format("20060102") + "/" + region + "/" + service + "/aws4_request",
		hex.EncodeToString(sum[:]),
	}, "\n")
}

func checkSig(secret string, t time.Time, region, service, sts string) string {
	k := checkHMAC([]byte("AWS4"+secret), t.UTC().Format("20060102"))
	k = checkHMAC(k, region)
	k = checkHMAC(k, service)
	k = checkHMAC(k, "aws4_request")
	return hex.EncodeToString(checkHMAC(k, sts))
}

// verifyAuthorization recomputes the signature of an outgoing request from
// its wire form and the known secret, and fails t when it does not match.
// It returns the canonical request for further inspection.
func verifyAuthorization(t *testing.T, out *http.Request, secret string, s3 bool) string {
	t.Helper()
	authz := out.Header.Get("Authorization")
	a, err := ParseAuthorization(authz)
	if err != nil {
		t.Fatalf("outgoing Authorization does not parse: %v", err)
	}
	ts, err := time.Parse("20060102T150405Z", out.Header.Get("X-Amz-Date"))
	if err != nil {
		t.Fatalf("outgoing X-Amz-Date: %v", err)
	}
	payload := out.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		var body []byte
		switch {
		case out.GetBody != nil:
			rc, err := out.GetBody()
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(rc); err != nil {
				t.Fatal(err)
			}
		case out.Body != nil:
			var err error
			if body, err = io.ReadAll(out.Body); err != nil {
				t.Fatal(err)
			}
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		sum := sha256.Sum256(body)
		payload = hex.EncodeToString(sum[:])
	}
	hdr := out.Header.Clone()
	if out.ContentLength > 0 {
		hdr.Set("Content-Length", fmt.Sprint(out.ContentLength))
	}
	in := checkInput{
		Method: out.Method, Path: out.URL.EscapedPath(), RawQuery: out.URL.RawQuery,
		Host: out.Host, Header: hdr, Signed: a.SignedHeaders, Payload: payload,
		S3: s3, Normalize: !s3,
	}
	canon := checkCanonicalRequest(in)
	sts := checkStringToSign(ts, a.Region, a.Service, canon)
	if want := checkSig(secret, ts, a.Region, a.Service, sts); a.Signature != want {
		t.Fatalf("signature does not verify independently:\ncanonical request:\n%s\ngot %s want %s", canon, a.Signature, want)
	}
	return canon
}

// vectorRequest is a request.txt from the signing test suite.
type vectorRequest struct {
	Method, Path, RawQuery string
	Host                   string
	Header                 http.Header
	Body                   string
}

// parseVectorRequest reads the suite's raw request format by hand: the
// request line may hold spaces and raw UTF-8, and header values may fold
// over several lines, which net/http refuses.
func parseVectorRequest(t *testing.T, raw string) vectorRequest {
	t.Helper()
	head, body, _ := strings.Cut(raw, "\n\n")
	lines := strings.Split(head, "\n")
	line := lines[0]
	sp := strings.IndexByte(line, ' ')
	end := strings.LastIndex(line, " HTTP/")
	if sp < 0 || end < sp {
		t.Fatalf("bad request line %q", line)
	}
	r := vectorRequest{Method: line[:sp], Header: http.Header{}, Body: body}
	target := line[sp+1 : end]
	r.Path, r.RawQuery, _ = strings.Cut(target, "?")
	var last string
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			vs := r.Header[last]
			vs[len(vs)-1] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("bad header line %q", l)
		}
		if strings.EqualFold(k, "host") {
			r.Host = v
			continue
		}
		last = http.CanonicalHeaderKey(k)
		r.Header[last] = append(r.Header[last], v)
	}
	return r
}
