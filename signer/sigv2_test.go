package signer

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// The access key pair of the AWS documentation's Signature Version 2
// examples.
const (
	docAKID   = "AKIAIOSFODNN7EXAMPLE"
	docSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// v2HMAC is base64(HMAC(secret, stringToSign)), the Signature Version 2
// signature (SHA-1 for S3 and SigV1, SHA-256 for HmacSHA256 query APIs).
func v2HMAC(h func() hash.Hash, secret, stringToSign string) string {
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// s3V2StringToSign is S3's Signature Version 2 string to sign for a
// request without Content-MD5 or x-amz-* headers.
func s3V2StringToSign(method, contentType, date, resource string) string {
	return method + "\n\n" + contentType + "\n" + date + "\n" + resource
}

// queryV2Signed returns the query of a SignatureVersion=2 HmacSHA256 query
// API request: params (already in canonical order and escaping) signed for
// GET host/.
func queryV2Signed(method, host, canonicalParams string) string {
	sig := v2HMAC(sha256.New, docSecret, method+"\n"+host+"\n/\n"+canonicalParams)
	return canonicalParams + "&Signature=" + url.QueryEscape(sig)
}

// TestSigV2TestSignersMatchAWSExamples: the test's own V2 signers give the
// signatures printed in the AWS documentation, so the requests below are
// what real V2 clients send.
func TestSigV2TestSignersMatchAWSExamples(t *testing.T) {
	cases := []struct {
		name string
		got  string
		want string
	}{
		{
			// Amazon S3 API Reference, "Signing and authenticating REST
			// requests (AWS signature version 2)", the GET example.
			name: "S3 REST GET object",
			got:  v2HMAC(sha1.New, docSecret, s3V2StringToSign("GET", "", "Tue, 27 Mar 2007 19:36:42 +0000", "/awsexamplebucket1/photos/puppy.jpg")),
			want: "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
		},
		{
			// AWS General Reference, "Signature Version 2 signing process",
			// the Amazon EMR DescribeJobFlows example.
			name: "query API SignatureVersion=2",
			got: strings.TrimPrefix(queryV2Signed("GET", "elasticmapreduce.amazonaws.com",
				"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31"),
				"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31&Signature="),
			want: url.QueryEscape("i91nKc4PWAt0JJIdXwz9HxZCJDdiy6cf/Mj6vPxyYIs="),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("signature %s, the AWS documentation has %s", tc.got, tc.want)
			}
		})
	}
}

// s3V2Presigned is the query of a presigned V2 S3 URL for GET resource
// that expires at exp.
func s3V2Presigned(resource string, exp time.Time) string {
	e := fmt.Sprint(exp.Unix())
	sig := v2HMAC(sha1.New, docSecret, s3V2StringToSign("GET", "", e, resource))
	return "AWSAccessKeyId=" + docAKID + "&Expires=" + e + "&Signature=" + url.QueryEscape(sig)
}

// TestPrepareSigV2: each pre-SigV4 form loses its signature, keeps every
// other part of the request exactly, and is signed with SigV4 for the
// scope of its host; the incoming request is not changed.
func TestPrepareSigV2(t *testing.T) {
	exp := signAt.Add(time.Hour)
	formTS := signAt.Add(-3 * time.Minute).Format("2006-01-02T15:04:05Z")
	stsForm := "Version=2011-06-15&AWSAccessKeyId=AKIDCLIENT&Action=GetCallerIdentity&SignatureMethod=HmacSHA256" +
		"&SignatureVersion=2&Timestamp=" + url.QueryEscape(formTS) + "&Signature=c2lnbmF0dXJl%2B%2F%3D&Extra=a%20b+c&&Z=%7e"
	cases := []struct {
		name     string
		method   string
		host     string
		target   string
		hdr      map[string]string
		body     string
		version  string
		service  string
		region   string
		query    string // the outgoing raw query
		wantBody string // the outgoing body
		when     time.Time
	}{
		{
			name:    "S3 REST header, the AWS documentation example",
			method:  "GET",
			host:    "awsexamplebucket1.s3.us-west-1.amazonaws.com", // the example writes us-west-1.s3, which is no S3 endpoint
			target:  "/photos/puppy.jpg",
			hdr:     map[string]string{"Date": "Tue, 27 Mar 2007 19:36:42 +0000", "Authorization": "AWS " + docAKID + ":qgk2+6Sv9/oM7G3qLEjTH1a1l1g="},
			version: SigV2S3Header, service: "s3", region: "us-west-1",
			when: time.Date(2007, 3, 27, 19, 36, 42, 0, time.UTC),
		},
		{
			name:   "S3 REST header with x-amz-date, metadata and a key with spaces",
			method: "PUT",
			host:   "s3.amazonaws.com",
			target: "/bucket/dir/a%20b%20c.txt?acl=",
			hdr: map[string]string{
				"X-Amz-Date": "Tue, 08 Jul 2031 09:05:00 GMT", "Date": "Tue, 01 Jan 2030 00:00:00 GMT",
				"Content-Type": "text/plain", "X-Amz-Meta-Owner": "legacy app",
				"Authorization": "AWS " + docAKID + ":" + v2HMAC(sha1.New, docSecret, "PUT\n\ntext/plain\n\nx-amz-date:Tue, 08 Jul 2031 09:05:00 GMT\nx-amz-meta-owner:legacy app\n/bucket/dir/a b c.txt?acl"),
			},
			body:    "hello, legacy",
			version: SigV2S3Header, service: "s3", region: "us-east-1", query: "acl=", wantBody: "hello, legacy",
			when: time.Date(2031, 7, 8, 9, 5, 0, 0, time.UTC),
		},
		{
			name:    "S3 query authentication (presigned V2 URL)",
			method:  "GET",
			host:    "s3.amazonaws.com",
			target:  "/bucket/photos/puppy.jpg?" + s3V2Presigned("/bucket/photos/puppy.jpg", exp),
			version: SigV2S3Query, service: "s3", region: "us-east-1",
		},
		{
			name:   "S3 query authentication: other parameters kept in order, client token dropped",
			method: "GET",
			host:   "bucket.s3.eu-west-1.amazonaws.com",
			target: "/k?response-content-type=text%2Fplain&" + s3V2Presigned("/bucket/k?response-content-type=text/plain", exp) +
				"&x-amz-security-token=client%2Ftoken&versionId=3",
			version: SigV2S3Query, service: "s3", region: "eu-west-1", query: "response-content-type=text%2Fplain&versionId=3",
		},
		{
			name:   "query API SignatureVersion=2, the AWS documentation example",
			method: "GET",
			host:   "elasticmapreduce.amazonaws.com",
			target: "/?" + queryV2Signed("GET", "elasticmapreduce.amazonaws.com",
				"AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31"),
			version: SigV2Query, service: "elasticmapreduce", region: "us-east-1",
			query: "Action=DescribeJobFlows&Version=2009-03-31",
			when:  time.Date(2011, 10, 3, 15, 19, 30, 0, time.UTC),
		},
		{
			name:    "query API SignatureVersion=2 in a POST form: order, encoding and empty pairs kept, body hashed again",
			method:  "POST",
			host:    "sts.amazonaws.com",
			target:  "/",
			hdr:     map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
			body:    stsForm,
			version: SigV2Query, service: "sts", region: "us-east-1",
			wantBody: "Version=2011-06-15&Action=GetCallerIdentity&Extra=a%20b+c&&Z=%7e",
			when:     signAt.Add(-3 * time.Minute),
		},
		{
			name:    "query API SignatureVersion=1 with Expires and SecurityToken",
			method:  "GET",
			host:    "sqs.us-west-2.amazonaws.com",
			target:  "/123456789012/queue?Action=ReceiveMessage&SignatureVersion=1&AWSAccessKeyId=AKIDCLIENT&Expires=2031-07-08T09%3A00%3A00Z&SecurityToken=tok&Signature=c2ln&Version=2012-11-05",
			version: SigV1Query, service: "sqs", region: "us-west-2",
			query: "Action=ReceiveMessage&Version=2012-11-05",
		},
		{
			name:    "query API SignatureVersion=0, parameter names escaped",
			method:  "GET",
			host:    "sdb.amazonaws.com",
			target:  "/?Action=ListDomains&AWSAccessKey%49d=AKIDCLIENT&Signature%56ersion=0&Timestamp=2031-07-08T09:09:09.123Z&Signature=c2ln",
			version: SigV0Query, service: "sdb", region: "us-east-1",
			query: "Action=ListDomains",
			when:  time.Date(2031, 7, 8, 9, 9, 9, 123e6, time.UTC),
		},
		{
			name:    "a query naming only Signature is not V2 (an API Gateway parameter)",
			method:  "GET",
			host:    "abc123.execute-api.us-east-1.amazonaws.com",
			target:  "/prod/items?Signature=mine&Expires=soon",
			service: "execute-api", region: "us-east-1", query: "Signature=mine&Expires=soon",
		},
		{
			name:    "an unsigned form POST is kept byte for byte",
			method:  "POST",
			host:    "sts.amazonaws.com",
			target:  "/",
			hdr:     map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			body:    "Action=GetCallerIdentity&Version=2011-06-15&Signature=not-mine",
			service: "sts", region: "us-east-1", wantBody: "Action=GetCallerIdentity&Version=2011-06-15&Signature=not-mine",
		},
	}
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := newServerRequest(tc.method, tc.target, tc.body, tc.hdr)
			req.Host = tc.host
			before := req.Header.Clone()
			rawBefore := req.URL.RawQuery

			p, err := s.Prepare(req)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if p.ClientSignatureVersion != tc.version || p.Service != tc.service || p.Region != tc.region {
				t.Errorf("version %q, scope %s/%s; want %q, %s/%s", p.ClientSignatureVersion, p.Service, p.Region, tc.version, tc.service, tc.region)
			}
			if p.ClientAuth != nil || p.ClientPresign != nil {
				t.Errorf("ClientAuth %+v, ClientPresign %+v: want nil (signed as unsigned)", p.ClientAuth, p.ClientPresign)
			}
			if !p.ClientTime.Equal(tc.when) {
				t.Errorf("ClientTime %v, want %v", p.ClientTime, tc.when)
			}
			if req.URL.RawQuery != rawBefore || fmt.Sprint(req.Header) != fmt.Sprint(before) {
				t.Errorf("Prepare changed the incoming request: query %q, header %v", req.URL.RawQuery, req.Header)
			}

			out, err := p.Sign(context.Background(), signAt)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			a, err := ParseAuthorization(out.Header.Get("Authorization"))
			if err != nil {
				t.Fatalf("outgoing Authorization: %v", err)
			}
			if a.AccessKeyID != proxyAKID || a.Service != tc.service || a.Region != tc.region {
				t.Errorf("signed as %s for %s/%s", a.AccessKeyID, a.Service, a.Region)
			}
			verifyAuthorization(t, out, proxySecret, tc.service == "s3")
			if out.URL.RawQuery != tc.query {
				t.Errorf("outgoing query\n got %q\nwant %q", out.URL.RawQuery, tc.query)
			}
			if out.URL.EscapedPath() != req.URL.EscapedPath() {
				t.Errorf("outgoing path %q, want %q", out.URL.EscapedPath(), req.URL.EscapedPath())
			}
			var got []byte
			if out.Body != nil {
				got, _ = io.ReadAll(out.Body)
			}
			if string(got) != tc.wantBody || out.ContentLength != int64(len(tc.wantBody)) {
				t.Errorf("outgoing body (%d bytes declared)\n got %q\nwant %q", out.ContentLength, got, tc.wantBody)
			}
			if v := out.Header.Get("Date"); tc.hdr["Date"] != "" && v != tc.hdr["Date"] {
				t.Errorf("Date header %q, want the client's %q kept", v, tc.hdr["Date"])
			}
			if tc.version != "" && p.Replayable != true {
				t.Error("a V2 request with a small body must be replayable")
			}
		})
	}
}

// TestSignSigV2Expires: a presigned V2 URL is signed up to its Expires,
// judged by the signing time handed to Sign, and refused after it with
// S3's own words.
func TestSignSigV2Expires(t *testing.T) {
	exp := signAt.Truncate(time.Second)
	req := newServerRequest("GET", "/bucket/key?"+s3V2Presigned("/bucket/key", exp), "", map[string]string{"Host": "s3.amazonaws.com"})
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	p, err := s.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		at      time.Time
		expired bool
	}{
		{"an hour before", exp.Add(-time.Hour), false},
		{"at Expires", exp, false},
		{"a second after", exp.Add(time.Second), true},
		{"a day after", exp.Add(24 * time.Hour), true},
		{"before again (a clock stepped back)", exp.Add(-time.Minute), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.Sign(context.Background(), tc.at)
			if !tc.expired {
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				verifyAuthorization(t, out, proxySecret, true)
				return
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("Sign at %v: err %v, want a RequestError", tc.at, err)
			}
			if re.Status != http.StatusForbidden || re.Code != "AccessDenied" || re.Message != "Request has expired" || re.Failure != awserrors.FailurePresignedExpired {
				t.Errorf("refusal %d %s %q failure %q", re.Status, re.Code, re.Message, re.Failure)
			}
			if strings.Contains(re.Error(), "Signature") && strings.Contains(re.Error(), "=") {
				t.Errorf("error text quotes the query: %v", re)
			}
		})
	}
}

// TestPrepareSigV2Refuses: malformed or contradictory pre-SigV4 signatures
// get a 400 whose client message quotes no signature.
func TestPrepareSigV2Refuses(t *testing.T) {
	const secretSig = "c2VjcmV0LXNpZ25hdHVyZQ=="
	s3Auth := "AWS AKIDCLIENT:" + secretSig
	exp := fmt.Sprint(signAt.Add(time.Hour).Unix())
	cases := []struct {
		name   string
		target string
		hdr    map[string]string
		body   string
		field  string // the ParseError field, "" when the refusal is not a parse error
	}{
		{"V2 header and V2 query", "/b/k?AWSAccessKeyId=AKID&Expires=" + exp + "&Signature=" + secretSig, map[string]string{"Authorization": s3Auth}, "", ""},
		{"V2 header and SigV4 presign", "/b/k?" + presignQuery(nil).Encode(), map[string]string{"Authorization": s3Auth}, "", ""},
		{"V2 query and SigV4 presign", "/b/k?AWSAccessKeyId=AKID&Expires=" + exp + "&Signature=" + secretSig + "&" + presignQuery(nil).Encode(), nil, "", ""},
		{"V2 header without a colon", "/b/k", map[string]string{"Authorization": "AWS AKIDCLIENT" + secretSig}, "", "Authorization"},
		{"V2 header with an empty key id", "/b/k", map[string]string{"Authorization": "AWS :" + secretSig}, "", "AWSAccessKeyId"},
		{"V2 header signature not base64", "/b/k", map[string]string{"Authorization": "AWS AKIDCLIENT:" + secretSig + "!"}, "", "Signature"},
		{"SignatureVersion 3", "/?Action=X&SignatureVersion=3&AWSAccessKeyId=AKID&Signature=" + secretSig, nil, "", "SignatureVersion"},
		{"SignatureVersion=2 without a Signature", "/?Action=X&SignatureVersion=2&AWSAccessKeyId=AKID", nil, "", "Signature"},
		{"SignatureVersion=2 without an access key id", "/?Action=X&SignatureVersion=2&Signature=" + secretSig, nil, "", "AWSAccessKeyId"},
		{"Signature twice", "/?SignatureVersion=2&AWSAccessKeyId=AKID&Signature=a&Signature=" + secretSig, nil, "", "Signature"},
		{"S3 query without Expires", "/b/k?AWSAccessKeyId=AKID&Signature=" + secretSig, nil, "", "Expires"},
		{"S3 query Expires not a number", "/b/k?AWSAccessKeyId=AKID&Expires=tomorrow&Signature=" + secretSig, nil, "", "Expires"},
		{"S3 query Expires negative", "/b/k?AWSAccessKeyId=AKID&Expires=-5&Signature=" + secretSig, nil, "", "Expires"},
		{"S3 query bad escape in Signature", "/b/k?AWSAccessKeyId=AKID&Expires=" + exp + "&Signature=%zz", nil, "", "Signature"},
		{"form with SignatureVersion=9", "/", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			"Action=X&SignatureVersion=9&AWSAccessKeyId=AKID&Signature=" + secretSig, "SignatureVersion"},
	}
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.body != "" {
				method = "POST"
			}
			req := newServerRequest(method, tc.target, tc.body, tc.hdr)
			req.Host = "s3.amazonaws.com"
			_, err := s.Prepare(req)
			var re *RequestError
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest {
				t.Fatalf("err = %v, want a 400 RequestError", err)
			}
			if strings.Contains(re.Message, secretSig) || strings.Contains(re.Error(), secretSig) {
				t.Errorf("the error quotes the signature: %v", re)
			}
			var pe *ParseError
			switch {
			case tc.field == "" && errors.As(err, &pe):
				t.Errorf("refusal is a parse error of %s, want a plain refusal", pe.Field)
			case tc.field != "" && (!errors.As(err, &pe) || pe.Field != tc.field):
				t.Errorf("err = %v, want a ParseError of %s", err, tc.field)
			}
		})
	}
}

// TestPrepareSigV2BodyLimit: a form body is read no further than
// MaxBufferedBody to look for a V2 signature.
func TestPrepareSigV2BodyLimit(t *testing.T) {
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{MaxBufferedBody: 64})
	body := "Action=GetCallerIdentity&SignatureVersion=2&AWSAccessKeyId=AKID&Signature=c2ln&Pad=" + strings.Repeat("x", 64)
	for _, tc := range []struct {
		name   string
		length int64
	}{
		{"declared length", int64(len(body))},
		{"unknown length", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newServerRequest("POST", "/", body, map[string]string{"Host": "sts.amazonaws.com", "Content-Type": "application/x-www-form-urlencoded"})
			req.ContentLength = tc.length
			_, err := s.Prepare(req)
			var re *RequestError
			if !errors.As(err, &re) || re.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("err = %v, want 413", err)
			}
		})
	}
}

// TestPrepareSigV4UnaffectedBySigV2Names: a SigV4-signed request keeps
// parameters that happen to carry V2 names (they are the client's, and
// signed by it).
func TestPrepareSigV4UnaffectedBySigV2Names(t *testing.T) {
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	req := newServerRequest("GET", "/?Action=X&SignatureVersion=2&AWSAccessKeyId=AKID&Signature=c2ln", "", map[string]string{
		"Host": "sts.amazonaws.com", "X-Amz-Date": "20300101T000000Z", "Authorization": clientAuthz("sts", "us-east-1", "host", "x-amz-date"),
	})
	p, err := s.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Sign(context.Background(), signAt)
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientSignatureVersion != "" || out.URL.RawQuery != req.URL.RawQuery {
		t.Errorf("version %q, query %q: want a SigV4 request left as it is", p.ClientSignatureVersion, out.URL.RawQuery)
	}
}

// TestPrepareNoV2NoAllocs: the quick test that keeps ordinary requests off
// the V2 path allocates nothing.
func TestPrepareNoV2NoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	req := newServerRequest("GET", "/bucket/key?list-type=2&prefix=a%2Fb&Signature=x", "", map[string]string{
		"Host": "s3.amazonaws.com", "Authorization": clientAuthz("s3", "us-east-1", "host", "x-amz-date"),
	})
	unsigned := newServerRequest("GET", "/bucket/key?list-type=2&prefix=a%2Fb", "", map[string]string{"Host": "s3.amazonaws.com"})
	for _, r := range []*http.Request{req, unsigned} {
		if n := testing.AllocsPerRun(100, func() {
			if out, _, err := s.upgradeLegacy(r); err != nil || out != r {
				t.Fatalf("upgradeLegacy: %v (copied: %v)", err, out != r)
			}
		}); n != 0 {
			t.Errorf("upgradeLegacy of a request without V2 allocates %v times", n)
		}
	}
}

// FuzzParseLegacyParams: the parser never panics; what it removes are
// signature parameters only, the rest keeps its order and bytes; the quick
// pre-test never misses a V2 query.
func FuzzParseLegacyParams(f *testing.F) {
	f.Add("AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Action=DescribeJobFlows&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2011-10-03T15%3A19%3A30&Version=2009-03-31&Signature=i91nKc4PWAt0JJIdXwz9HxZCJDdiy6cf%2FMj6vPxyYIs%3D", true)
	f.Add("AWSAccessKeyId=AKID&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&x-amz-security-token=t", true)
	f.Add("Signature%56ersion=0&AWSAccessKey%49d=a&Signature=b&&a+b=c%20d&", false)
	f.Add("Signature=mine&Expires=soon", true)
	f.Add("SignatureVersion=2&SignatureVersion=2", false)
	f.Add("", true)
	f.Fuzz(func(t *testing.T, raw string, s3 bool) {
		lp, err := parseLegacyParams(raw, s3)
		if s3 && !rawMayBeLegacy(raw) && (err != nil || lp.version != "") {
			t.Fatalf("rawMayBeLegacy(%q) = false, but the parser finds %q (err %v)", raw, lp.version, err)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T, want *ParseError", err)
			}
			return
		}
		if lp.version == "" {
			if lp.rest != raw {
				t.Fatalf("no V2 found, but the input changed: %q -> %q", raw, lp.rest)
			}
			return
		}
		strip := queryAPIField
		if lp.version == SigV2S3Query {
			strip = s3Field
		}
		// rest is raw with some pairs left out, each a signature parameter.
		in := strings.Split(raw, "&")
		kept := strings.Split(lp.rest, "&") // [""] when all went
		j := 0
		for _, pair := range in {
			if j < len(kept) && kept[j] == pair {
				name, _, _ := strings.Cut(pair, "=")
				if f := legacyFieldOf(decodeName(name)); f >= 0 && strip(f) {
					t.Fatalf("signature parameter %q kept in %q", pair, lp.rest)
				}
				j++
				continue
			}
			name, _, _ := strings.Cut(pair, "=")
			if f := legacyFieldOf(decodeName(name)); f < 0 || !strip(f) {
				t.Fatalf("pair %q of %q lost (rest %q)", pair, raw, lp.rest)
			}
		}
		if j != len(kept) && !(len(kept) == 1 && kept[0] == "" && j == 0) {
			t.Fatalf("rest %q is not a subsequence of %q", lp.rest, raw)
		}
	})
}

// FuzzPrepareSigV2: fuzzed V2 headers, queries and form bodies through
// Prepare and Sign: no panic, only RequestErrors, and a request that was
// upgraded goes out SigV4-signed with no V2 signature left.
func FuzzPrepareSigV2(f *testing.F) {
	f.Add("AWS AKIDCLIENT:c2lnbmF0dXJl", "acl=", "")
	f.Add("", "AWSAccessKeyId=AKID&Expires=2000000000&Signature=c2ln", "")
	f.Add("", "", "Action=GetCallerIdentity&SignatureVersion=2&AWSAccessKeyId=AKID&Signature=c2ln&Timestamp=2031-07-08T09%3A00%3A00Z")
	f.Add("AWS :", "SignatureVersion=1", "SignatureVersion=0&AWSAccessKeyId=a&Signature=b")
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{MaxBufferedBody: 4096})
	f.Fuzz(func(t *testing.T, auth, query, body string) {
		req, err := http.NewRequest("POST", "https://sts.amazonaws.com/", strings.NewReader(body))
		if err != nil {
			return
		}
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" {
			req.Header["Authorization"] = []string{auth}
		}
		p, err := s.Prepare(req)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("Prepare error %T (%v), want *RequestError", err, err)
			}
			return
		}
		out, err := p.Sign(context.Background(), signAt)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("Sign error %T (%v)", err, err)
			}
			return
		}
		if p.ClientSignatureVersion == "" {
			return
		}
		if !strings.HasPrefix(out.Header.Get("Authorization"), Algorithm+" ") {
			t.Fatalf("upgraded request signed %q", out.Header.Get("Authorization"))
		}
		q, _ := url.ParseQuery(out.URL.RawQuery)
		if q.Has("SignatureVersion") || (q.Has("AWSAccessKeyId") && q.Has("Signature")) {
			t.Fatalf("V2 parameters left in the query %q", out.URL.RawQuery)
		}
	})
}

func ExampleSigner_Prepare_signatureVersion2() {
	s := New(credentials.NewStaticCredentialsProvider("AKIDPROXY", "proxy-secret", ""), Options{})
	// s3cmd with signature_v2 = True, say: S3's V2 Authorization header.
	req, _ := http.NewRequest(http.MethodGet, "https://s3.amazonaws.com/bucket/key", nil)
	req.Header.Set("Date", "Tue, 08 Jul 2031 09:05:00 +0000")
	req.Header.Set("Authorization", "AWS AKIDCLIENT:bWq2s1WEIj+Ydj0vQ697zp+IXMU=")

	p, err := s.Prepare(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := p.Sign(context.Background(), time.Date(2031, 7, 8, 9, 10, 11, 0, time.UTC))
	if err != nil {
		fmt.Println(err)
		return
	}
	a, _ := ParseAuthorization(out.Header.Get("Authorization"))
	fmt.Println(p.ClientSignatureVersion, p.Service, p.Region, p.ClientTime.Format(time.RFC3339))
	fmt.Println(a.AccessKeyID, a.SignedHeaders, out.Header.Get("X-Amz-Date"))
	// Output:
	// s3v2 s3 us-east-1 2031-07-08T09:05:00Z
	// AKIDPROXY [host x-amz-content-sha256 x-amz-date] 20310708T091011Z
}
