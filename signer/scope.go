package signer

import (
	"errors"
	"fmt"
	"strings"
)

// Scope is the SigV4 signing scope an AWS host name implies.
type Scope struct {
	// Service is the signing name ("s3", "lambda", "execute-api").
	Service string
	// Region is the signing region ("us-east-1").
	Region string
	// S3 is true when the service uses S3's rules: the URI path is escaped
	// once, not normalised, and x-amz-content-sha256 is required.
	S3 bool
	// Bucket is the bucket named by a virtual-host style S3 host, if any.
	Bucket string
}

// partition is one AWS DNS suffix and the region its global endpoints sign for.
type partition struct {
	suffix        string
	defaultRegion string
}

// partitions lists the AWS DNS suffixes, longest first where one ends
// another. It is never modified.
var partitions = [...]partition{
	{".amazonaws.com.cn", "cn-north-1"},
	{".api.amazonwebservices.com.cn", "cn-north-1"},
	{".amazonaws.com", "us-east-1"},
	{".api.aws", "us-east-1"},
	{".on.aws", "us-east-1"},
	{".c2s.ic.gov", "us-iso-east-1"},
	{".sc2s.sgov.gov", "us-isob-east-1"},
	{".amazonaws.eu", "eusc-de-east-1"},
}

// ErrNotAWSHost is wrapped by ScopeFromHost errors for hosts outside the
// AWS DNS suffixes.
var ErrNotAWSHost = errors.New("not an AWS endpoint host")

// ScopeFromHost derives the signing service and region from an AWS endpoint
// host name (a port, if any, is ignored). It knows the regional, global,
// FIPS, dual-stack, China, api.aws and on.aws forms, and S3's path-style,
// virtual-host (buckets with dots included), legacy, accelerate, control,
// access point, Object Lambda, Outposts and Express endpoints.
//
// The client's own credential scope is a better source when the request is
// signed: a host cannot say, for example, which region an S3 Transfer
// Acceleration bucket lives in (ScopeFromHost answers us-east-1).
func ScopeFromHost(host string) (Scope, error) {
	h := strings.ToLower(strings.TrimSpace(host))
	if strings.HasPrefix(h, "[") {
		return Scope{}, fmt.Errorf("scope from host %q: %w", host, ErrNotAWSHost)
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")

	var p partition
	var rest string
	for _, cand := range partitions {
		if r, ok := strings.CutSuffix(h, cand.suffix); ok && r != "" {
			p, rest = cand, r
			break
		}
	}
	if rest == "" {
		return Scope{}, fmt.Errorf("scope from host %q: %w", host, ErrNotAWSHost)
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if l == "" || !isToken(l) {
			return Scope{}, fmt.Errorf("scope from host %q: empty or invalid DNS label", host)
		}
	}
	// VPC interface endpoints: vpce-0a1b.lambda.us-east-1.vpce.amazonaws.com.
	if len(labels) > 1 && labels[len(labels)-1] == "vpce" {
		labels = labels[:len(labels)-1]
	}

	if sc, ok, err := s3Scope(labels, p); ok || err != nil {
		if err != nil {
			return Scope{}, fmt.Errorf("scope from host %q: %w", host, err)
		}
		return sc, nil
	}
	sc, err := serviceScope(labels, p)
	if err != nil {
		return Scope{}, fmt.Errorf("scope from host %q: %w", host, err)
	}
	return sc, nil
}

// s3Scope recognises S3 endpoints: the rightmost S3 endpoint label followed
// only by "dualstack", "fips" and at most one region.
func s3Scope(labels []string, p partition) (Scope, bool, error) {
	for i := len(labels) - 1; i >= 0; i-- {
		region, ok := trailingRegion(labels[i+1:])
		if !ok {
			// Labels to the right are not all region/dualstack: any S3
			// label further left cannot be the endpoint label either.
			return Scope{}, false, nil
		}
		sc, bucketInFront, ok := s3Label(labels[i])
		if !ok {
			continue
		}
		switch {
		case sc.Region != "" && region != "" && sc.Region != region:
			return Scope{}, true, fmt.Errorf("two regions in one S3 host: %s and %s", sc.Region, region)
		case sc.Region == "" && region != "":
			sc.Region = region
		case sc.Region == "":
			sc.Region = p.defaultRegion
		}
		if bucketInFront {
			prefix := labels[:i]
			if n := len(prefix); n > 0 && strings.HasPrefix(prefix[n-1], "vpce-") {
				prefix = prefix[:n-1]
			}
			sc.Bucket = strings.Join(prefix, ".")
		}
		return sc, true, nil
	}
	return Scope{}, false, nil
}

// trailingRegion reads the labels after an endpoint label: any number of
// "dualstack" and "fips" plus at most one region.
func trailingRegion(labels []string) (string, bool) {
	region := ""
	for _, l := range labels {
		switch {
		case l == "dualstack" || l == "fips":
		case isRegion(l) && region == "":
			region = l
		default:
			return "", false
		}
	}
	return region, true
}

// s3Label maps one DNS label to an S3 scope. bucketInFront is true when
// the labels in front of it name a bucket (virtual-host style).
func s3Label(l string) (sc Scope, bucketInFront, ok bool) {
	switch l {
	case "s3", "s3-fips", "s3-accelerate", "s3-website":
		return Scope{Service: "s3", S3: true}, true, true
	case "s3-external-1":
		return Scope{Service: "s3", Region: "us-east-1", S3: true}, true, true
	case "s3-control", "s3-control-fips", "s3-accesspoint", "s3-accesspoint-fips":
		return Scope{Service: "s3", S3: true}, false, true
	case "s3-object-lambda", "s3-object-lambda-fips":
		return Scope{Service: "s3-object-lambda", S3: true}, false, true
	case "s3-outposts", "s3-outposts-fips":
		return Scope{Service: "s3-outposts", S3: true}, false, true
	case "s3express-control", "s3express-control-fips":
		return Scope{Service: "s3express", S3: true}, false, true
	}
	if strings.HasPrefix(l, "s3express-") {
		// Directory buckets: bucket--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com
		return Scope{Service: "s3express", S3: true}, true, true
	}
	// Legacy dash forms: s3-us-west-2, s3-website-us-east-1, s3-fips-us-gov-west-1.
	for _, pre := range [...]string{"s3-website-", "s3-fips-", "s3-"} {
		if r, ok := strings.CutPrefix(l, pre); ok && isRegion(r) {
			return Scope{Service: "s3", Region: r, S3: true}, true, true
		}
	}
	return Scope{}, false, false
}

// globalRegion is the signing region of global endpoints that do not sign
// for their partition's default region.
func globalRegion(service string, p partition) string {
	switch {
	case service == "globalaccelerator" || service == "networkmanager":
		return "us-west-2"
	case service == "route53" && p.defaultRegion == "cn-north-1":
		return "cn-northwest-1"
	}
	return p.defaultRegion
}

// serviceScope handles non-S3 endpoints: [prefix.]service[-fips][.dualstack].region
// and global service[.global] forms.
func serviceScope(labels []string, p partition) (Scope, error) {
	last := len(labels) - 1
	region := ""
	svcAt := -1
	switch {
	case isRegion(labels[last]):
		region = labels[last]
		svcAt = last - 1
		for svcAt >= 0 && (labels[svcAt] == "dualstack" || labels[svcAt] == "fips") {
			svcAt--
		}
	case labels[last] == "us-gov" && last >= 1: // iam.us-gov.amazonaws.com
		region, svcAt = "us-gov-west-1", last-1
	case labels[last] == "global" && last >= 1: // iam.global.api.aws
		svcAt = last - 1
	case last == 0:
		svcAt = 0
	default:
		return Scope{}, errors.New("no region or known global form in host")
	}
	if svcAt < 0 {
		return Scope{}, errors.New("no service label in host")
	}
	svc := strings.TrimSuffix(labels[svcAt], "-fips")
	if svc == "" || isRegion(svc) {
		return Scope{}, errors.New("no service label in host")
	}
	switch svc {
	case "lambda-url":
		svc = "lambda"
	case "email":
		svc = "ses"
	}
	if region == "" {
		region = globalRegion(svc, p)
	}
	return Scope{Service: svc, Region: region}, nil
}

// isRegion reports whether l looks like an AWS region name such as
// us-east-1, us-gov-west-1, cn-northwest-1, us-isob-east-1 or eusc-de-east-1.
func isRegion(l string) bool {
	parts := strings.Split(l, "-")
	if len(parts) < 3 {
		return false
	}
	if n := len(parts[0]); n < 2 || n > 4 || !isLower(parts[0]) {
		return false
	}
	for _, mid := range parts[1 : len(parts)-1] {
		if mid == "" || !isLower(mid) {
			return false
		}
	}
	num := parts[len(parts)-1]
	if num == "" || len(num) > 2 {
		return false
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return false
		}
	}
	return true
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}
