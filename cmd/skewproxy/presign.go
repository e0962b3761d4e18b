package main

// Presigned URLs that live as long as promised: `skewproxy presign` and
// POST /presign on the admin port. Both sign with the corrected clock, and
// both refuse (or, when asked, clamp) an expiry beyond the life of the
// temporary credentials that sign the URL, because a URL never outlives the
// session that signed it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/urfave/cli/v2"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

const (
	// presignMaxExpires is the longest X-Amz-Expires SigV4 allows.
	presignMaxExpires = 7 * 24 * time.Hour
	// presignDefaultExpires is the expiry when none is asked for (as the AWS CLI).
	presignDefaultExpires = time.Hour
	// presignDefaultRegion signs s3:// URLs when no region is configured.
	presignDefaultRegion = "us-east-1"
	// presignUnsignedPayload is the payload hash of presigned S3 URLs.
	presignUnsignedPayload = "UNSIGNED-PAYLOAD"
)

// presignInput is one presign order as the user wrote it, from flags or
// from the JSON body of POST /presign. buildPresign validates it.
type presignInput struct {
	Method      string
	Target      string // s3://BUCKET/KEY or an http(s) URL
	Bucket, Key string // instead of Target (admin JSON)
	EndpointURL string // S3-compatible endpoint for s3:// targets (path-style)
	Region      string
	Header      http.Header // extra headers the holder of the URL must send
	ContentType string
	Expires     string // Go duration or whole seconds; "" means one hour
	Clamp       bool
}

// presignRequest is a validated presign order.
type presignRequest struct {
	Method  string
	URL     *url.URL
	Header  http.Header
	Expires time.Duration
	Clamp   bool
	// Custom is true for a host outside AWS (an S3-compatible endpoint):
	// signed for S3 in Region, since no scope can be read from the host.
	Custom bool
	Region string
}

// presignResult is what both the command (--json) and POST /presign print.
type presignResult struct {
	URL                 string     `json:"url"`
	ExpiresAt           time.Time  `json:"expires_at"`
	CredentialExpiresAt *time.Time `json:"credential_expires_at"`
	Clamped             bool       `json:"clamped"`
	// SignedAt is the corrected time the URL was signed at (its X-Amz-Date).
	SignedAt time.Time `json:"signed_at"`
	// Headers are the signed headers the holder of the URL must send.
	Headers map[string]string `json:"headers,omitempty"`
	// Warnings say what the caller should know (clamped expiry, unknown
	// session end); the command also prints them on stderr.
	Warnings []string `json:"warnings,omitempty"`
}

// presignInputError is a problem with the order itself (flag or JSON).
type presignInputError struct{ msg string }

func (e *presignInputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &presignInputError{msg: fmt.Sprintf(format, args...)}
}

// credentialLifeError refuses an expiry beyond the signing credentials' life.
type credentialLifeError struct {
	Source    string        // where the credentials came from
	Expires   time.Time     // when they expire
	Remaining time.Duration // their remaining life at signing time
	Asked     time.Duration // the expiry asked for
	ClampHint string        // how to ask for clamping ("--clamp", `"clamp": true`)
}

func (e *credentialLifeError) Error() string {
	fix := fmt.Sprintf("use IAM-user access keys (URLs up to 7 days), ask for an expiry of %s or less, or pass %s to shorten it to the credentials' life",
		e.Remaining.Truncate(time.Second), e.ClampHint)
	if e.Remaining < time.Second {
		fix = "refresh the credentials or use IAM-user access keys"
	}
	return fmt.Sprintf("expiry %s is beyond the life of the temporary credentials from %s: they expire at %s (in %s), and a presigned URL never outlives the credentials that signed it; fix: %s",
		e.Asked, e.Source, e.Expires.UTC().Format(time.RFC3339), e.Remaining.Truncate(time.Second), fix)
}

// buildPresign validates in and turns it into a presignRequest.
func buildPresign(in presignInput) (presignRequest, error) {
	var r presignRequest
	method, err := presignMethod(in.Method)
	if err != nil {
		return r, err
	}
	r.Method = method
	if r.Expires, err = parsePresignExpires(in.Expires); err != nil {
		return r, err
	}
	r.Clamp = in.Clamp
	region := in.Region
	if region != "" && !validRegion(region) {
		return r, inputErrorf("region %q: want a region name such as us-east-1", region)
	}

	switch {
	case in.Target != "" && (in.Bucket != "" || in.Key != ""):
		return r, inputErrorf("give either a URL or a bucket and key, not both")
	case in.Target == "" && in.Bucket == "" && in.Key == "":
		return r, inputErrorf("nothing to presign: give s3://BUCKET/KEY or an https:// URL")
	case in.Target == "":
		in.Target = "s3://" + in.Bucket + "/" + in.Key
	}
	if strings.HasPrefix(in.Target, "s3://") {
		if region == "" {
			region = presignDefaultRegion
		}
		r.URL, r.Custom, err = s3TargetURL(in.Target, in.EndpointURL, region)
		if err != nil {
			return r, err
		}
		r.Region = region
	} else {
		if in.EndpointURL != "" {
			return r, inputErrorf("--endpoint-url applies to s3://BUCKET/KEY targets; give the full URL instead")
		}
		if r.URL, r.Custom, r.Region, err = httpTargetURL(in.Target, region); err != nil {
			return r, err
		}
	}

	if r.Header, err = presignHeaders(in.Header, in.ContentType, r.Method); err != nil {
		return r, err
	}
	return r, nil
}

func presignMethod(m string) (string, error) {
	if m == "" {
		return http.MethodGet, nil
	}
	switch up := strings.ToUpper(m); up {
	case http.MethodGet, http.MethodPut, http.MethodHead, http.MethodDelete:
		return up, nil
	}
	return "", inputErrorf("method %q: want GET, PUT, HEAD or DELETE", m)
}

// parsePresignExpires reads a Go duration ("90m") or whole seconds ("3600")
// between 1 s and 7 days.
func parsePresignExpires(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return presignDefaultExpires, nil
	}
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1 || n > int64(presignMaxExpires/time.Second) {
			return 0, inputErrorf("expires %s seconds: want 1 second to 7 days (604800 seconds)", s)
		}
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, inputErrorf("expires %q: want a duration such as 15m or 24h (1s to 168h), or whole seconds", s)
	}
	switch {
	case d < time.Second || d > presignMaxExpires:
		return 0, inputErrorf("expires %s: want 1s to 7 days (168h)", s)
	case d%time.Second != 0:
		return 0, inputErrorf("expires %s: want a whole number of seconds", s)
	}
	return d, nil
}

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
		prefix := strings.TrimSuffix(base.EscapedPath(), "/")
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

// presign signs r at now (the corrected time) with sgn's credentials,
// refusing or clamping an expiry beyond the credentials' life. source
// describes the credentials provider for messages; clampHint says how the
// caller asks for clamping.
func presign(ctx context.Context, sgn *signer.Signer, source string, now time.Time, r presignRequest, clampHint string) (presignResult, error) {
	// The URL's life is counted from its X-Amz-Date, which has whole seconds.
	now = now.UTC().Truncate(time.Second)
	res := presignResult{SignedAt: now}
	creds, err := sgn.Credentials(ctx)
	if err != nil {
		return res, fmt.Errorf("presign: credentials: %w", err)
	}
	from := credentialSource(creds, source)
	expires := r.Expires
	if creds.CanExpire && !creds.Expires.IsZero() {
		ce := creds.Expires.UTC()
		res.CredentialExpiresAt = &ce
		remaining := creds.Expires.Sub(now)
		if remaining < expires {
			lifeErr := &credentialLifeError{Source: from, Expires: creds.Expires, Remaining: remaining, Asked: expires, ClampHint: clampHint}
			if !r.Clamp || remaining < time.Second {
				return res, lifeErr
			}
			expires = remaining.Truncate(time.Second)
			res.Clamped = true
			res.Warnings = append(res.Warnings, fmt.Sprintf("expiry clamped from %s to %s: the temporary credentials from %s expire at %s",
				r.Expires, expires, from, ce.Format(time.RFC3339)))
		}
	} else if creds.SessionToken != "" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the credentials from %s carry a session token but no expiry, so the URL's life cannot be checked: it stops working when that session ends, whatever its X-Amz-Expires", from))
	}

	req := &http.Request{Method: r.Method, URL: r.URL, Host: r.URL.Host, Header: r.Header.Clone()}
	req = req.WithContext(ctx)
	var signed string
	if r.Custom {
		signed, err = presignCustom(ctx, creds, req, now, expires, r.Region)
	} else {
		signed, _, err = sgn.Presign(ctx, req, now, expires)
	}
	if err != nil {
		return res, fmt.Errorf("presign: %w", err)
	}
	res.URL = signed
	res.ExpiresAt = res.SignedAt.Add(expires)
	res.Headers = signedHeaderValues(signed, r.Header)
	return res, nil
}

// presignCustom signs for an S3-compatible endpoint outside AWS, whose
// scope cannot be read from its host: S3 rules in region. (signer.Presign
// takes its scope from AWS host names only.)
func presignCustom(ctx context.Context, creds aws.Credentials, req *http.Request, now time.Time, expires time.Duration, region string) (string, error) {
	r := req.Clone(ctx)
	q := r.URL.Query()
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	r.URL.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	u, _, err := v4.NewSigner().PresignHTTP(ctx, creds, r, presignUnsignedPayload, "s3", region, now,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		return "", fmt.Errorf("sign for S3-compatible endpoint %s: %w", r.URL.Host, err)
	}
	return u, nil
}

// signedHeaderValues lists the headers (other than host) named in the
// URL's X-Amz-SignedHeaders with the values the holder must send.
func signedHeaderValues(signed string, h http.Header) map[string]string {
	u, err := url.Parse(signed)
	if err != nil {
		return nil
	}
	var out map[string]string
	for _, name := range strings.Split(u.Query().Get("X-Amz-SignedHeaders"), ";") {
		if name == "" || name == "host" {
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[http.CanonicalHeaderKey(name)] = strings.Join(h.Values(name), ",")
	}
	return out
}

// credentialSource names where creds came from: the SDK's Source and the
// provider description.
func credentialSource(creds aws.Credentials, provider string) string {
	switch {
	case creds.Source != "" && provider != "":
		return creds.Source + " (" + provider + ")"
	case creds.Source != "":
		return creds.Source
	case provider != "":
		return provider
	}
	return "the AWS credential chain"
}

// sortedHeaderLines renders headers as "Name: value" lines in name order.
func sortedHeaderLines(h map[string]string) []string {
	lines := make([]string, 0, len(h))
	for k, v := range h {
		lines = append(lines, k+": "+v)
	}
	sort.Strings(lines)
	return lines
}

// loadPresignCredentials is the standard chain, with the cache's early
// expiry window turned off so that the expiry reported and enforced is the
// credentials' own.
func loadPresignCredentials(ctx context.Context) (*signer.Signer, string, error) {
	provider, name, err := signer.LoadCredentials(ctx, config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = 0
	}))
	if err != nil {
		return nil, "", fmt.Errorf("AWS credentials: %w", err)
	}
	return signer.New(provider, signer.Options{ProviderName: name}), name, nil
}

// correctedNow queries the time sources until one answers or wait passes,
// and returns the corrected time; without an answer it returns the host
// clock (shifted by offset) and a warning.
func correctedNow(ctx context.Context, sources []string, offset, wait time.Duration) (now time.Time, st timesource.Status, warning string) {
	clock := timesource.New(timesource.Config{Sources: sources, HostOffset: offset})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = clock.Run(ctx)
	}()
	timer := time.NewTimer(wait)
	select {
	case <-clock.Ready():
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	now, st = clock.Now(), clock.Status()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if !st.Synced {
		warning = fmt.Sprintf("no time source answered within %s (%s): signing with the host clock", wait, st.Reason)
		if offset != 0 {
			warning += fmt.Sprintf(" shifted by --clock-offset %s", offset)
		}
	}
	return now, st, warning
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isInputError reports whether err is the caller's mistake.
func isInputError(err error) bool {
	var ie *presignInputError
	var le *credentialLifeError
	return errors.As(err, &ie) || errors.As(err, &le)
}

// presignLogAttrs describes a presigned URL for logs without its query
// (which holds the credential and signature).
func presignLogAttrs(r presignRequest, res presignResult) []any {
	return []any{"method", r.Method, "host", r.URL.Host, "expires_at", res.ExpiresAt, "clamped", res.Clamped}
}

func presignCommand() *cli.Command {
	flags := []cli.Flag{
		stringFlag("method", "GET", "HTTP `METHOD` the URL allows: GET, PUT, HEAD or DELETE"),
		stringFlag("expires", "1h", "validity `D` (a duration such as 15m, or seconds), 1s to 7 days"),
		stringFlag("endpoint-url", "", "S3-compatible endpoint `URL` for s3:// targets (path-style), e.g. http://127.0.0.1:9000"),
		&cli.StringFlag{Name: "region", Usage: "signing `REGION` for s3:// targets and non-AWS endpoints (default us-east-1)",
			EnvVars: append(envFor("region"), "AWS_REGION", "AWS_DEFAULT_REGION")},
		sliceFlag("header", nil, "extra signed header `NAME:VALUE` the holder of the URL must send (repeatable)"),
		stringFlag("content-type", "", "Content-Type `T` a PUT must send (signed)"),
		boolFlag("clamp", "shorten --expires to the life of temporary credentials instead of refusing"),
		boolFlag("json", `print JSON: {"url","expires_at","credential_expires_at","clamped",...}`),
		stringFlag("time-timeout", "2s", "wait up to `D` for a time source before signing with the host clock"),
	}
	return &cli.Command{
		Name:  "presign",
		Usage: "print a presigned URL signed with corrected time",
		Description: "Signs with the corrected clock (the --time-source list, queried once) and the standard AWS credential chain.\n" +
			"A URL never outlives the temporary credentials that sign it: a longer --expires is refused, or shortened with --clamp.",
		ArgsUsage: "s3://BUCKET/KEY | https://...",
		Flags:     append(flags, clockFlags()...),
		Action:    runPresignCommand,
	}
}

func runPresignCommand(c *cli.Context) error {
	switch {
	case c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-"):
		return cli.Exit(fmt.Sprintf("presign: flags go before the URL (skewproxy presign --expires 15m s3://BUCKET/KEY); got %q after it", c.Args().Get(1)), 2)
	case c.NArg() != 1:
		return cli.Exit("presign: give exactly one s3://BUCKET/KEY or https:// URL", 2)
	}
	hdr, err := parseHeaderFlags(c.StringSlice("header"))
	if err != nil {
		return cli.Exit("presign: "+err.Error(), 2)
	}
	req, err := buildPresign(presignInput{
		Method: c.String("method"), Target: c.Args().First(), EndpointURL: c.String("endpoint-url"),
		Region: c.String("region"), Header: hdr, ContentType: c.String("content-type"),
		Expires: c.String("expires"), Clamp: c.Bool("clamp"),
	})
	if err != nil {
		return cli.Exit("presign: "+err.Error(), 2)
	}
	var cfg Config
	if err := readClockFlags(c, &cfg); err != nil {
		return cli.Exit("presign: "+err.Error(), 2)
	}
	if _, err := timesource.ParseSources(cfg.TimeSources); err != nil {
		return cli.Exit(fmt.Sprintf("presign: --time-source: %v", err), 2)
	}
	wait, err := parseDuration("time-timeout", c.String("time-timeout"))
	if err != nil {
		return cli.Exit("presign: "+err.Error(), 2)
	}
	sgn, provider, err := loadPresignCredentials(c.Context)
	if err != nil {
		return cli.Exit("presign: "+err.Error(), 1)
	}
	// Fail before waiting for the time sources when there are no credentials.
	if _, err := sgn.Credentials(c.Context); err != nil {
		return cli.Exit("presign: "+err.Error(), 1)
	}
	now, _, warning := correctedNow(c.Context, cfg.TimeSources, cfg.ClockOffset, wait)
	if warning != "" {
		fmt.Fprintln(c.App.ErrWriter, "skewproxy: warning:", warning)
	}
	res, err := presign(c.Context, sgn, provider, now, req, "--clamp")
	if err != nil {
		code := 1
		if isInputError(err) {
			code = 2
		}
		return cli.Exit("presign: "+err.Error(), code)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "skewproxy: warning:", w)
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, res)
	}
	if len(res.Headers) > 0 {
		fmt.Fprintln(c.App.ErrWriter, "skewproxy: the holder of the URL must send these signed headers:")
		for _, l := range sortedHeaderLines(res.Headers) {
			fmt.Fprintln(c.App.ErrWriter, "  "+l)
		}
	}
	_, err = fmt.Fprintln(c.App.Writer, res.URL)
	return err
}

// presignBody is the JSON body of POST /presign.
type presignBody struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	Bucket      string            `json:"bucket"`
	Key         string            `json:"key"`
	Region      string            `json:"region"`
	Expires     json.RawMessage   `json:"expires"` // "15m" or 900
	Headers     map[string]string `json:"headers"`
	ContentType string            `json:"content_type"`
	Clamp       bool              `json:"clamp"`
}

// presignHandler answers POST /presign on the admin port, so that an app
// behind the sidecar can mint URLs without holding keys. It signs with
// sgn's credentials at clock's time; the admin listener is loopback unless
// the operator allowed otherwise.
func presignHandler(sgn *signer.Signer, clock timesource.Clock, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defaultRegion := presignDefaultRegion
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v := os.Getenv(k); validRegion(v) {
			defaultRegion = v
			break
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			presignReply(w, http.StatusMethodNotAllowed, map[string]string{"message": "use POST with a JSON body"})
			return
		}
		var b presignBody
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			presignReply(w, http.StatusBadRequest, map[string]string{"message": "body: want a JSON object such as {\"method\":\"GET\",\"bucket\":\"B\",\"key\":\"K\",\"expires\":\"15m\"}: " + err.Error()})
			return
		}
		req, err := presignBodyRequest(b, defaultRegion)
		if err != nil {
			presignReply(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		}
		res, err := presign(r.Context(), sgn, "", clock.Now(), req, `"clamp": true`)
		switch {
		case isInputError(err):
			presignReply(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		case err != nil:
			log.Error("presign failed", "err", err)
			presignReply(w, http.StatusServiceUnavailable, map[string]string{"message": "presign failed: the proxy's credentials are unavailable or signing failed; see the proxy log"})
			return
		}
		if !clock.Status().Synced {
			res.Warnings = append(res.Warnings, "no time source has answered yet: signed with the host clock")
		}
		log.Info("presigned URL", presignLogAttrs(req, res)...)
		presignReply(w, http.StatusOK, res)
	})
}

// presignBodyRequest turns a POST /presign body into a presignRequest.
func presignBodyRequest(b presignBody, defaultRegion string) (presignRequest, error) {
	expires := ""
	if len(b.Expires) > 0 && string(b.Expires) != "null" {
		var s string
		var n json.Number
		if err := json.Unmarshal(b.Expires, &s); err == nil {
			expires = s
		} else if err := json.Unmarshal(b.Expires, &n); err == nil {
			expires = n.String()
		} else {
			return presignRequest{}, inputErrorf("expires: want a duration string (\"15m\") or whole seconds (900)")
		}
		if expires == "" {
			return presignRequest{}, inputErrorf("expires: empty")
		}
	}
	h := make(http.Header)
	for k, v := range b.Headers {
		h.Add(k, v)
	}
	region := b.Region
	if region == "" && b.URL == "" {
		region = defaultRegion
	}
	return buildPresign(presignInput{Method: b.Method, Target: b.URL, Bucket: b.Bucket, Key: b.Key, Region: region,
		Header: h, ContentType: b.ContentType, Expires: expires, Clamp: b.Clamp})
}

func presignReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = writeJSON(w, v)
}
