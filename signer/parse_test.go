package signer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testSig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"

func TestParseAuthorization(t *testing.T) {
	want := &Authorization{
		AccessKeyID: "AKIDEXAMPLE", Date: "20150830", Region: "us-east-1", Service: "iam",
		SignedHeaders: []string{"content-type", "host", "x-amz-date"}, Signature: testSig,
	}
	cases := []struct {
		name      string
		in        string
		want      *Authorization
		wantField string // ParseError.Field when an error is expected
	}{
		{"sdk comma space", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + testSig, want, ""},
		{"comma only", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request,SignedHeaders=content-type;host;x-amz-date,Signature=" + testSig, want, ""},
		{"spaces only", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request SignedHeaders=content-type;host;x-amz-date Signature=" + testSig, want, ""},
		{"extra whitespace", "  AWS4-HMAC-SHA256   Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request ,  SignedHeaders=content-type;host;x-amz-date ,\tSignature=" + testSig + "  ", want, ""},
		{"reordered", "AWS4-HMAC-SHA256 Signature=" + testSig + ", SignedHeaders=content-type;host;x-amz-date, Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request", want, ""},
		{"upper-case header names", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=Content-Type;Host;X-Amz-Date, Signature=" + testSig, want, ""},
		{"sigv4a", "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/s3/aws4_request, SignedHeaders=host, Signature=3045", nil, "Authorization"},
		{"basic auth", "Basic dXNlcjpwYXNz", nil, "Authorization"},
		{"algorithm only", "AWS4-HMAC-SHA256", nil, "Authorization"},
		{"empty", "", nil, "Authorization"},
		{"missing signature", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host", nil, "Signature"},
		{"missing credential", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"missing signed headers", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, Signature=" + testSig, nil, "SignedHeaders"},
		{"duplicate component", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"unknown component", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + testSig + ", Foo=bar", nil, "Authorization"},
		{"component without equals", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders, Signature=" + testSig, nil, "Authorization"},
		{"short scope", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aws4_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"bad terminator", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws5_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"bad date", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20151330/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"empty akid", "AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"empty region", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830//iam/aws4_request, SignedHeaders=host, Signature=" + testSig, nil, "Credential"},
		{"empty header name", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;;x-amz-date, Signature=" + testSig, nil, "SignedHeaders"},
		{"duplicate header name", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;Host, Signature=" + testSig, nil, "SignedHeaders"},
		{"header name with space char", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=ho\"st, Signature=" + testSig, nil, "SignedHeaders"},
		{"short signature", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=abc", nil, "Signature"},
		{"non-hex signature", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("z", 64), nil, "Signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorization(tc.in)
			if tc.wantField != "" {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v (%T), want *ParseError", err, err)
				}
				if pe.Field != tc.wantField {
					t.Errorf("Field = %q, want %q (%v)", pe.Field, tc.wantField, pe)
				}
				if strings.Contains(pe.Error(), testSig) {
					t.Errorf("error text leaks the signature: %v", pe)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func presignQuery(mod func(url.Values)) url.Values {
	q := url.Values{
		"X-Amz-Algorithm":     {"AWS4-HMAC-SHA256"},
		"X-Amz-Credential":    {"AKIDEXAMPLE/20130524/us-east-1/s3/aws4_request"},
		"X-Amz-Date":          {"20130524T000000Z"},
		"X-Amz-Expires":       {"86400"},
		"X-Amz-SignedHeaders": {"host"},
		"X-Amz-Signature":     {"aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"},
	}
	if mod != nil {
		mod(q)
	}
	return q
}

func TestParsePresignedQuery(t *testing.T) {
	cases := []struct {
		name      string
		q         url.Values
		wantField string
	}{
		{"s3 example", presignQuery(nil), ""},
		{"seven days", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "604800") }), ""},
		{"over seven days", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "604801") }), "X-Amz-Expires"},
		{"zero expiry", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "0") }), "X-Amz-Expires"},
		{"negative expiry", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "-5") }), "X-Amz-Expires"},
		{"huge expiry", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "99999999999999999999") }), "X-Amz-Expires"},
		{"empty expiry", presignQuery(func(q url.Values) { q.Set("X-Amz-Expires", "") }), "X-Amz-Expires"},
		{"no expiry (STS presign)", presignQuery(func(q url.Values) { q.Del("X-Amz-Expires") }), ""},
		{"missing signature", presignQuery(func(q url.Values) { q.Del("X-Amz-Signature") }), "X-Amz-Signature"},
		{"missing date", presignQuery(func(q url.Values) { q.Del("X-Amz-Date") }), "X-Amz-Date"},
		{"bad date", presignQuery(func(q url.Values) { q.Set("X-Amz-Date", "2013-05-24T00:00:00Z") }), "X-Amz-Date"},
		{"date differs from scope", presignQuery(func(q url.Values) { q.Set("X-Amz-Date", "20130525T000000Z") }), "X-Amz-Date"},
		{"repeated credential", presignQuery(func(q url.Values) { q.Add("X-Amz-Credential", "AKID/20130524/us-east-1/s3/aws4_request") }), "X-Amz-Credential"},
		{"sigv4a", presignQuery(func(q url.Values) { q.Set("X-Amz-Algorithm", "AWS4-ECDSA-P256-SHA256") }), "X-Amz-Algorithm"},
		{"no algorithm", presignQuery(func(q url.Values) { q.Del("X-Amz-Algorithm") }), "X-Amz-Algorithm"},
		{"empty signed headers", presignQuery(func(q url.Values) { q.Set("X-Amz-SignedHeaders", "") }), "X-Amz-SignedHeaders"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePresignedQuery(tc.q)
			if tc.wantField != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Field != tc.wantField {
					t.Fatalf("err = %v, want *ParseError on %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessKeyID != "AKIDEXAMPLE" || got.Service != "s3" || got.Region != "us-east-1" ||
				!got.Time.Equal(time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)) || got.Expires < time.Second ||
				!reflect.DeepEqual(got.SignedHeaders, []string{"host"}) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + testSig)
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request,SignedHeaders=host,Signature=" + testSig)
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=AKID/20150830/s3/aws4_request, SignedHeaders=host, Signature=00")
	f.Add("AWS4-HMAC-SHA256 Credential=///, SignedHeaders=;;, Signature=")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			return
		}
		if a.AccessKeyID == "" || len(a.Date) != 8 || a.Region == "" || a.Service == "" || len(a.Signature) != 64 || len(a.SignedHeaders) == 0 {
			t.Fatalf("accepted an incomplete header: %+v", a)
		}
		for _, n := range a.SignedHeaders {
			if n == "" || n != strings.ToLower(n) {
				t.Fatalf("signed header %q not lower-case", n)
			}
		}
	})
}

func FuzzParsePresignedQuery(f *testing.F) {
	f.Add(presignQuery(nil).Encode())
	f.Add("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=0")
	f.Add("X-Amz-Signature=&X-Amz-Signature=")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParsePresignedQuery(q)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			return
		}
		if p.Expires < time.Second || p.Expires > 7*24*time.Hour || p.Time.IsZero() || len(p.Signature) != 64 {
			t.Fatalf("accepted an invalid presign: %+v", p)
		}
	})
}

func ExampleParseAuthorization() {
	a, err := ParseAuthorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + testSig)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.AccessKeyID, a.Date, a.Region, a.Service, a.SignedHeaders)
	_, err = ParseAuthorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host")
	fmt.Println(err)
	// Output:
	// AKIDEXAMPLE 20150830 us-east-1 iam [content-type host x-amz-date]
	// signer: malformed Signature: missing
}

// TestDateParsersMatchTimeParse: the hand-written date parsers of the hot
// path accept exactly what time.Parse accepts, with the same result.
func TestDateParsersMatchTimeParse(t *testing.T) {
	amz := []string{
		"20300101T000000Z", "20240229T235959Z", "20230229T000000Z", "20301301T000000Z", "20300100T000000Z",
		"20300132T000000Z", "20300431T000000Z", "20300101T240000Z", "20300101T236000Z", "20300101T235960Z",
		"20300101 000000Z", "20300101T000000z", "2030010T1000000Z", "+0300101T000000Z", "00000101T000000Z",
		"99991231T235959Z", "20300101T000000", "", "2030-01-01T00:00:00Z", "20300101T00000aZ",
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		b := []byte("20300101T000000Z")
		for j, n := 0, 1+r.IntN(3); j < n; j++ {
			b[r.IntN(len(b))] = "0123456789TZ9"[r.IntN(13)]
		}
		amz = append(amz, string(b))
	}
	for _, v := range amz {
		want, wantErr := time.Parse(amzDateFormat, v)
		got, err := parseAmzDate(v)
		if (err == nil) != (wantErr == nil) || !got.Equal(want) || got.Location() != want.Location() {
			t.Errorf("parseAmzDate(%q) = %v, %v; time.Parse gives %v, %v", v, got, err, want, wantErr)
		}
		if len(v) >= 8 {
			d := v[:8]
			_, dErr := time.Parse("20060102", d)
			if isScopeDate(d) != (dErr == nil) {
				t.Errorf("isScopeDate(%q) = %v, time.Parse error %v", d, isScopeDate(d), dErr)
			}
		}
	}
}
