package main

// Presign targets: s3:// and http(s) URLs into the URL to sign, S3 key
// escaping, and the extra headers a presigned URL may carry.

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/skewproxy/skewproxy/signer"
)

func validRegion(r string) bool {
	if r == "" || len(r) > 32 {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// s3TargetURL maps s3://BUCKET/KEY to a URL: virtual-host style on AWS,
// path-style when the bucket name has dots or is not DNS-compatible (the
// wildcard certificate would not match) or when endpoint is set.
func s3TargetURL(target, endpoint, region string) (u *url.URL, custom bool, err error) {
	rest := strings.TrimPrefix(target, "s3://")
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok || key == "" {
		return nil, false, inputErrorf("%q: want s3://BUCKET/KEY (the key is missing)", target)
	}
	if !validBucket(bucket) {
		return nil, false, inputErrorf("%q: bucket %q is not a valid S3 bucket name", target, bucket)
	}
	if endpoint != "" {
		base, err := url.Parse(endpoint)
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil || base.RawQuery != "" || base.Fragment != "" {
			return nil, false, inputErrorf("endpoint URL %q: want http(s)://HOST[:PORT]", endpoint)
		}
		base.Host = urlHost(base.Scheme, base.Host)
		// The endpoint's path is escaped as S3 signs it, like the key.
		prefix := strings.TrimSuffix(s3Escape(base.Path), "/")
		custom = !isAWSHost(base.Host)
		return s3URL(base.Scheme, base.Host, prefix+"/"+s3Escape(bucket), key), custom, nil
	}
	suffix := ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = ".amazonaws.com.cn"
	}
	if dnsBucket(bucket) {
		return s3URL("https", bucket+".s3."+region+suffix, "", key), false, nil
	}
	return s3URL("https", "s3."+region+suffix, "/"+s3Escape(bucket), key), false, nil
}

// urlHost is the host to print in a presigned URL: without an empty port
// ("host:", "[::1]:") or the scheme's default one ("host:443" for https).
// The signer signs the host without them, as the SDK does, and clients
// differ in whether they send them (net/http keeps ":443" in Host, curl and
// browsers drop it): a URL without them is sent as it was signed by all.
func urlHost(scheme, host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i < strings.LastIndexByte(host, ']') {
		return host
	}
	switch port := host[i+1:]; {
	case port == "", scheme == "https" && port == "443", scheme == "http" && port == "80":
		return host[:i]
	}
	return host
}

// s3URL builds scheme://host/escapedPrefix/key with the key escaped as S3
// signs it (every byte but unreserved characters and '/').
func s3URL(scheme, host, escapedPrefix, key string) *url.URL {
	raw := escapedPrefix + "/" + s3Escape(key)
	p, _ := url.PathUnescape(raw) // raw is made of valid escapes only
	return &url.URL{Scheme: scheme, Host: host, Path: p, RawPath: raw}
}

// httpTargetURL checks an http(s) URL; a host outside AWS is an
// S3-compatible endpoint signed in region.
func httpTargetURL(target, region string) (u *url.URL, custom bool, signRegion string, err error) {
	u, err = url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, false, "", inputErrorf("%q: want s3://BUCKET/KEY or an http(s):// URL", target)
	}
	if u.User != nil {
		return nil, false, "", inputErrorf("%q: a URL with user information cannot be presigned", target)
	}
	u.Fragment, u.RawFragment = "", ""
	u.Host = urlHost(u.Scheme, u.Host)
	for k := range u.Query() {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-") {
			return nil, false, "", inputErrorf("%q: the URL already carries %s; give the URL without SigV4 parameters", target, k)
		}
	}
	sc, err := signer.ScopeFromHost(u.Host)
	if errors.Is(err, signer.ErrNotAWSHost) {
		if region == "" {
			region = presignDefaultRegion
		}
		s3CanonicalPath(u)
		return u, true, region, nil
	}
	if err != nil {
		return nil, false, "", inputErrorf("%q: %v", target, err)
	}
	if region != "" && region != sc.Region {
		return nil, false, "", inputErrorf("%q: region %s given, but the host is in %s", target, region, sc.Region)
	}
	if sc.S3 {
		s3CanonicalPath(u)
	}
	return u, false, sc.Region, nil
}

// s3CanonicalPath rewrites u's escaped path the way S3 canonicalises it
// (the decoded path escaped once), since S3 signing takes the escaped path
// as it stands: "/k;v" is sent and signed as "/k%3Bv".
func s3CanonicalPath(u *url.URL) {
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawPath = s3Escape(u.Path)
}

// isAWSHost reports whether host is an AWS endpoint whose scope the signer
// reads from the name.
func isAWSHost(host string) bool {
	_, err := signer.ScopeFromHost(host)
	return err == nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 255 {
		return false
	}
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// dnsBucket reports whether b can be a virtual host under the S3 wildcard
// certificate: lower case, 3-63 characters, no dots.
func dnsBucket(b string) bool {
	if len(b) > 63 || strings.ContainsAny(b, "._") || strings.ToLower(b) != b {
		return false
	}
	return b[0] != '-' && b[len(b)-1] != '-'
}

// s3Escape percent-encodes every byte of s except unreserved characters
// and '/', as S3 canonicalises object keys.
func s3Escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// presignForbiddenHeaders are set by the signer; the caller may not.
var presignForbiddenHeaders = map[string]bool{
	"host": true, "authorization": true, "x-amz-date": true, "x-amz-security-token": true,
	"x-amz-content-sha256": true, "x-amz-algorithm": true, "x-amz-credential": true,
	"x-amz-signature": true, "x-amz-signedheaders": true, "x-amz-expires": true,
}

func presignHeaders(in http.Header, contentType, method string) (http.Header, error) {
	h := make(http.Header)
	for k, vs := range in {
		if !validHeaderName(k) {
			return nil, inputErrorf("header %q: not a valid header name", k)
		}
		if presignForbiddenHeaders[strings.ToLower(k)] {
			return nil, inputErrorf("header %s: set by the signer, cannot be given", k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				return nil, inputErrorf("header %s: value contains a line break", k)
			}
			h.Add(k, strings.TrimSpace(v))
		}
	}
	if contentType != "" {
		if method != http.MethodPut {
			return nil, inputErrorf("content type applies to PUT URLs only")
		}
		if strings.ContainsAny(contentType, "\r\n") {
			return nil, inputErrorf("content type contains a line break")
		}
		h.Set("Content-Type", contentType)
	}
	return h, nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseHeaderFlags reads repeated --header K:V values.
func parseHeaderFlags(vals []string) (http.Header, error) {
	h := make(http.Header)
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, inputErrorf("--header %q: want NAME:VALUE", kv)
		}
		h.Add(strings.TrimSpace(k), v)
	}
	return h, nil
}
