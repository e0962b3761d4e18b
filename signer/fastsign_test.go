package signer

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// The fast header signer must produce exactly what aws-sdk-go-v2's signer
// produces. These tests sign the same requests both ways (Options.
// UseSDKSigner) and compare everything that goes on the wire.

// wireForm renders what a signed request sends: request line, Host, every
// header sorted, ContentLength and the body. Two signers agree when their
// wire forms are equal.
func wireForm(t testing.TB, r *http.Request) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\nHost: %s\nContent-Length: %d\n", r.Method, r.URL.String(), r.Host, r.ContentLength)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, r.Header[k])
	}
	if r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		fmt.Fprintf(&b, "\n%q", body)
	}
	return b.String()
}

// signBothWays prepares and signs the request that mk builds (called once
// per signer: Prepare consumes the body) with the fast signer and with the
// SDK signer, and fails unless the two wire forms are equal. It reports
// whether the fast signer was used (false: the request is one it hands to
// the SDK signer) and the first Prepare error, which both must share.
func signBothWays(t testing.TB, prov aws.CredentialsProvider, mk func() *http.Request, at time.Time) (fast bool, err error) {
	t.Helper()
	fastS := New(prov, Options{})
	sdkS := New(prov, Options{UseSDKSigner: true})
	pf, errF := fastS.Prepare(mk())
	ps, errS := sdkS.Prepare(mk())
	if (errF == nil) != (errS == nil) {
		t.Fatalf("Prepare: fast %v, sdk %v", errF, errS)
	}
	if errF != nil {
		return false, errF
	}
	ctx := context.Background()
	of, err := pf.Sign(ctx, at)
	if err != nil {
		t.Fatalf("fast Sign: %v", err)
	}
	os, err := ps.Sign(ctx, at)
	if err != nil {
		t.Fatalf("sdk Sign: %v", err)
	}
	wf, ws := wireForm(t, of), wireForm(t, os)
	if wf != ws {
		t.Fatalf("fast and SDK signers disagree\nfast:\n%s\nsdk:\n%s\ncanonical (fast, static part):\n%s", wf, ws, pf.st.plan.fast.canon)
	}
	return !pf.st.plan.sdkOnly, nil
}

// TestFastSignerMatchesSDKOnVectors re-signs every request of the AWS
// SigV4 test suite both ways.
func TestFastSignerMatchesSDKOnVectors(t *testing.T) {
	fastUsed := 0
	cases := loadVectors(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sr := parseVectorRequest(t, c.file(t, "header-signed-request.txt"))
			mk := func() *http.Request {
				req := &http.Request{
					Method:     sr.Method,
					URL:        &url.URL{Scheme: "https", Opaque: "//" + sr.Host + sr.Path, RawQuery: sr.RawQuery},
					Host:       sr.Host,
					Header:     sr.Header.Clone(),
					Body:       http.NoBody,
					RequestURI: sr.Path,
				}
				if sr.Body != "" {
					req.Body = io.NopCloser(strings.NewReader(sr.Body))
					req.ContentLength = int64(len(sr.Body))
					req.Header.Del("Content-Length")
				}
				return req
			}
			for _, tok := range []string{c.ctx.Credentials.Token, "", "tok  with   spaces "} {
				prov := credentials.NewStaticCredentialsProvider(c.ctx.Credentials.AccessKeyID, c.ctx.Credentials.SecretAccessKey, tok)
				fast, err := signBothWays(t, prov, mk, c.time)
				if err != nil {
					t.Fatal(err)
				}
				if fast && tok == c.ctx.Credentials.Token {
					fastUsed++
				}
			}
		})
	}
	// The suite's odd requests (raw spaces and UTF-8 in the path) may go to
	// the SDK signer; the ordinary ones must not.
	if fastUsed < len(cases)*3/4 {
		t.Errorf("the fast signer signed only %d of %d vectors", fastUsed, len(cases))
	}
}

// randomRequest builds a random intercepted request, as the proxy's
// server side would see it, from r. The same r state gives the same
// request.
func randomRequest(r *rand.Rand) func() *http.Request {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	method := pick("GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS")
	scheme := pick("https", "https", "http")
	host := pick("lambda.us-east-1.amazonaws.com", "mybucket.s3.us-west-2.amazonaws.com", "s3.amazonaws.com:443",
		"dynamodb.eu-west-1.amazonaws.com:8443", "sts.amazonaws.com:80", "execute-api.us-east-1.amazonaws.com:",
		"my.bucket.s3.eu-central-1.amazonaws.com", "Lambda.US-EAST-1.amazonaws.com", "[::1]:443", "127.0.0.1:9000")
	segs := []string{"a", "b c", "%20", "%2F", "%25", "%2b", "ü", "日本", ".", "..", "", "~x", "+", "=", ";", ":", "@", "k%3Bv", "$LATEST", "(x)", "*"}
	var path strings.Builder
	for i, n := 0, r.IntN(5); i < n; i++ {
		path.WriteByte('/')
		path.WriteString(segs[r.IntN(len(segs))])
	}
	if r.IntN(4) == 0 {
		path.WriteByte('/')
	}
	qparts := []string{"a=1", "b=", "c", "x-id=GetObject", "prefix=a+b", "prefix=a%20b", "k=%2f", "k=%2F", "Z=last", "list-type=2",
		"dup=2", "dup=1", "", "e=%E6%97%A5", "s=a%3Db", "t=~-._", "u=%41", "v=a=b", "sp=%7E", "Action=ListUsers", "Version=2010-05-08"}
	var qs []string
	for i, n := 0, r.IntN(5); i < n; i++ {
		qs = append(qs, qparts[r.IntN(len(qparts))])
	}
	rawQuery := strings.Join(qs, "&")

	names := []string{"Content-Type", "Content-Md5", "X-Amz-Target", "Amz-Sdk-Request", "Amz-Sdk-Invocation-Id", "Range",
		"X-Amz-Meta-Owner", "X-Amz-Checksum-Crc32", "X-Amz-Checksum-Mode", "X-Amz-Acl", "X-Amz-User-Agent", "X-Amz-Tagging",
		"X-Amz-Server-Side-Encryption", "X-Amz-Decoded-Content-Length", "Cache-Control", "If-Match", "Te", "Keep-Alive",
		"Proxy-Foo", "User-Agent", "Expect", "X-Amzn-Trace-Id", "x-amz-meta-lower", "Zz-Last", "A-First"}
	vals := []string{"v", " lead", "trail ", "  both  ", "in  side   spaces", "tab\tinside", "\ttabs\t", "a,b", "", " ",
		"ünï cødé", "\u00a0nbsp\u00a0", "x-amz-date", "Keep-Alive, X-Amz-Meta-Owner", "application/x-amz-json-1.1"}
	hdr := http.Header{}
	present := []string{}
	for i, n := 0, r.IntN(8); i < n; i++ {
		k := names[r.IntN(len(names))]
		for j, m := 0, 1+r.IntN(2); j < m; j++ {
			hdr[k] = append(hdr[k], vals[r.IntN(len(vals))])
		}
		present = append(present, strings.ToLower(k))
	}
	if r.IntN(6) == 0 {
		hdr["Connection"] = []string{pick("close", "keep-alive, X-Amz-Meta-Owner", "Te")}
	}
	var body []byte
	if method != "GET" && method != "HEAD" && r.IntN(3) > 0 {
		body = bytes.Repeat([]byte{'x'}, r.IntN(200))
	}
	switch r.IntN(4) {
	case 0:
		sum := sha256.Sum256(body)
		hdr.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	case 1:
		hdr.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	}
	if r.IntN(4) > 0 {
		// A client-signed request: the scope comes from its credential.
		svc := pick("s3", "lambda", "execute-api", "dynamodb", "sts")
		signed := []string{"host", "x-amz-date"}
		for _, p := range present {
			if r.IntN(3) > 0 {
				signed = append(signed, p)
			}
		}
		if r.IntN(3) == 0 {
			signed = append(signed, "content-length")
		}
		if r.IntN(5) == 0 {
			signed = append(signed, "x-absent")
		}
		dedup := signed[:0]
		seen := map[string]bool{}
		for _, s := range signed {
			if !seen[s] {
				seen[s] = true
				dedup = append(dedup, s)
			}
		}
		hdr.Set("Authorization", clientAuthz(svc, pick("us-east-1", "eu-west-1"), dedup...))
		hdr.Set("X-Amz-Date", "20300101T000000Z")
		if r.IntN(2) == 0 {
			hdr.Set("X-Amz-Security-Token", "client-token")
		}
	}
	absolute := r.IntN(3) == 0
	p := path.String()
	return func() *http.Request {
		req := &http.Request{Method: method, Host: host, Header: hdr.Clone(), Body: http.NoBody, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		target := p
		if target == "" {
			target = "/"
		}
		if rawQuery != "" {
			target += "?" + rawQuery
		}
		if absolute {
			target = scheme + "://" + host + target
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: p, RawQuery: rawQuery}
		}
		req.URL, req.RequestURI = u, target
		if len(body) > 0 {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		return req
	}
}

// TestFastSignerMatchesSDKRandom is a property test: random requests
// (paths with escapes and dot segments, unsorted and '+' queries, header
// values with runs of spaces, tabs and non-ASCII white space, multi-value
// headers, hop-by-hop and Connection-named headers, client-signed or not,
// with and without a session token, at random times) signed both ways must
// go on the wire byte for byte the same.
func TestFastSignerMatchesSDKRandom(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	r := rand.New(rand.NewPCG(10, 2))
	fast, signed := 0, 0
	for i := 0; i < n; i++ {
		mk := randomRequest(r)
		tok := []string{"", proxyToken, " spaced  token "}[r.IntN(3)]
		prov := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, tok)
		at := time.Unix(r.Int64N(4102444800), 0) // 1970..2100
		ok, err := signBothWays(t, prov, mk, at)
		if err != nil {
			continue // refused by Prepare, the same way for both
		}
		signed++
		if ok {
			fast++
		}
	}
	t.Logf("%d random requests: %d signed (%d by the fast signer)", n, signed, fast)
	if signed < n/2 || fast < signed*3/4 {
		t.Errorf("too few requests exercised the fast signer: %d signed, %d fast, of %d", signed, fast, n)
	}
}

// FuzzFastSignerMatchesSDK signs fuzzed requests both ways.
func FuzzFastSignerMatchesSDK(f *testing.F) {
	f.Add("GET", "mybucket.s3.us-east-1.amazonaws.com", "/dir/with%20space/key%2Bplus.txt", "x-id=GetObject", "X-Amz-Meta-A", "  a  b ", "host;x-amz-meta-a", "s3")
	f.Add("POST", "lambda.us-east-1.amazonaws.com:443", "/2015-03-31/functions/f/invocations", "", "Content-Type", "application/json", "content-type;host", "lambda")
	f.Add("GET", "iam.amazonaws.com", "/./a/../b//c/", "Version=2010-05-08&Action=ListUsers", "X-Amz-Target", "\tx\t", "", "iam")
	f.Add("PUT", "s3.amazonaws.com", "/b/k", "prefix=a+b&a=%41", "Range", "bytes=0-1", "range;host", "s3")
	f.Fuzz(func(t *testing.T, method, host, path, query, hname, hval, signed, service string) {
		if !isToken(service) || service == "" || method == "" || strings.ContainsAny(method, " \r\n") {
			t.Skip()
		}
		mk := func() *http.Request {
			req := &http.Request{Method: method, Host: host, Header: http.Header{}, Body: http.NoBody,
				URL: &url.URL{Scheme: "https", Opaque: "//" + host + path, RawQuery: query}}
			if hname != "" {
				req.Header[hname] = []string{hval}
			}
			if signed != "" {
				req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20300101/us-east-1/"+service+
					"/aws4_request, SignedHeaders="+signed+", Signature="+strings.Repeat("0", 64))
			}
			return req
		}
		prov := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken)
		signBothWays(t, prov, mk, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	})
}

// TestFastSignerHandsOddRequestsToSDK checks the requests the fast signer
// leaves to the SDK signer, and that they still sign the same both ways.
func TestFastSignerHandsOddRequestsToSDK(t *testing.T) {
	cases := []struct {
		name     string
		mk       func() *http.Request
		wantFast bool
	}{
		{
			name: "ordinary lambda invoke is fast",
			mk: func() *http.Request {
				r, _ := lambdaInvokeRequest(false)
				return r
			},
			wantFast: true,
		},
		{
			name: "one header under two spellings goes to the SDK",
			mk: func() *http.Request {
				r := newServerRequest("GET", "/", "", map[string]string{"Host": "sqs.us-east-1.amazonaws.com"})
				r.Header["X-Amz-Meta-A"] = []string{"same"}
				r.Header["x-amz-meta-a"] = []string{"same"}
				return r
			},
		},
		{
			name: "a path without a leading slash goes to the SDK",
			mk: func() *http.Request {
				return &http.Request{Method: "GET", Host: "sqs.us-east-1.amazonaws.com", Header: http.Header{}, Body: http.NoBody,
					URL: &url.URL{Scheme: "https", Opaque: "queue/x"}}
			},
		},
	}
	prov := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fast, err := signBothWays(t, prov, tc.mk, signAt)
			if err != nil {
				t.Fatal(err)
			}
			if fast != tc.wantFast {
				t.Errorf("fast signer used: %v, want %v", fast, tc.wantFast)
			}
		})
	}
}

// TestFastSignerYearOutOfRange: a signing time whose date is not
// YYYYMMDD falls back to the SDK signer instead of failing.
func TestFastSignerYearOutOfRange(t *testing.T) {
	prov := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, "")
	mk := func() *http.Request {
		r, _ := lambdaInvokeRequest(true)
		r.Body = http.NoBody
		r.ContentLength = 0
		return r
	}
	if _, err := signBothWays(t, prov, mk, time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
}

func TestHMACMatchesCryptoHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, keyLen := range []int{0, 1, 31, 32, 33, 64} {
		for _, msgLen := range []int{0, 1, 55, 56, 63, 64, 65, 200} {
			t.Run(fmt.Sprintf("key%d/msg%d", keyLen, msgLen), func(t *testing.T) {
				key, msg := make([]byte, keyLen), make([]byte, msgLen)
				for i := range key {
					key[i] = byte(r.Uint32())
				}
				for i := range msg {
					msg[i] = byte(r.Uint32())
				}
				m := hmac.New(sha256.New, key)
				m.Write(msg)
				want := m.Sum(nil)
				got := hmacFinish(key, append(appendInnerPad(nil, key), msg...))
				if !bytes.Equal(got[:], want) {
					t.Errorf("hmac %x, want %x", got, want)
				}
			})
		}
	}
}

func TestAppendHeaderValue(t *testing.T) {
	cases := []struct {
		name, in, want string
		trim           bool
	}{
		{"plain", "abc", "abc", true},
		{"runs of spaces", "  a   b  c  ", "a b c", true},
		{"only spaces", "    ", "", true},
		{"one space", " ", "", true},
		{"tabs trimmed after", "\t a  \t", "a", true},
		{"tab inside kept", "a\t\tb", "a\t\tb", true},
		{"space then tab", "a \t  b", "a \t b", true},
		{"nbsp trimmed", "\u00a0x\u00a0", "x", true},
		{"host is not trimmed of tabs", "\th  x\t", "\th x\t", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendHeaderValue([]byte("pre"), tc.in, tc.trim)); got != "pre"+tc.want {
				t.Errorf("got %q, want %q", got, "pre"+tc.want)
			}
		})
	}
}

func TestIsCanonicalQuery(t *testing.T) {
	cases := []struct {
		raw  string
		want bool
	}{
		{"", true},
		{"a=1&b=2", true},
		{"b=2&a=1", false},
		{"a=2&a=1", false},
		{"a=1&a=1", true},
		{"a", false},
		{"a=1&&b=2", false},
		{"a=1&", false},
		{"&a=1", false},
		{"a=%2F", true},
		{"a=%2f", false},
		{"a=%41", false},
		{"a=b+c", false},
		{"a=%20", true},
		{"=v", true},
		{"a=%2", false},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			if got := isCanonicalQuery(tc.raw); got != tc.want {
				t.Errorf("isCanonicalQuery(%q) = %v, want %v", tc.raw, got, tc.want)
			}
			if tc.want {
				q, err := url.ParseQuery(tc.raw)
				if err != nil {
					t.Fatal(err)
				}
				if c := canonicalQuery(q); c != tc.raw {
					t.Errorf("canonical form of %q is %q", tc.raw, c)
				}
			}
		})
	}
}

// TestFormatAmzDate proves formatAmzDate equals time.Format with the
// X-Amz-Date layout, and refuses the years Format would not write as
// four digits.
func TestFormatAmzDate(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	cases := []struct {
		name string
		t    time.Time
		ok   bool
	}{
		{"epoch", time.Unix(0, 0), true},
		{"benchmark time", time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"end of day", time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC), true},
		{"zone converted to UTC", time.Date(2030, 1, 1, 2, 0, 0, 0, east), true},
		{"year 0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"year -1", time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"zero time", time.Time{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b [len(amzDateFormat)]byte
			ok := formatAmzDate(&b, tc.t)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if want := tc.t.UTC().Format(amzDateFormat); ok && string(b[:]) != want {
				t.Errorf("formatAmzDate = %q, Format = %q", b[:], want)
			}
		})
	}
	// Every second of a random walk over four centuries.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		tm := time.Unix(r.Int64N(400*365*86400)-100*365*86400, 0)
		var b [len(amzDateFormat)]byte
		if !formatAmzDate(&b, tm) || string(b[:]) != tm.UTC().Format(amzDateFormat) {
			t.Fatalf("%v: formatAmzDate = %q, want %q", tm, b[:], tm.UTC().Format(amzDateFormat))
		}
	}
}
