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
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
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

// loadPresignCredentials is the standard chain on the corrected clock now,
// with the cache's early expiry window turned off so that the expiry
// reported and enforced is the credentials' own.
func loadPresignCredentials(ctx context.Context, now func() time.Time) (*signer.Signer, string, error) {
	provider, name, err := signer.LoadCredentials(ctx, signer.CredentialsOptions{
		Cache:      signer.CredentialsCacheOptions{Now: now, ExpiryWindow: -1},
		HTTPClient: sdkHTTPClient(now),
	})
	if err != nil {
		return nil, "", fmt.Errorf("AWS credentials: %w", err)
	}
	return signer.New(provider, signer.Options{ProviderName: name}), name, nil
}

// syncedClock queries the time sources until one answers or wait passes,
// and returns the corrected clock (it keeps counting on the monotonic clock
// after the sources stop); without an answer it follows the host clock
// (shifted by offset) and a warning says so.
func syncedClock(ctx context.Context, sources []string, offset, wait time.Duration) (clock *timesource.Corrected, warning string) {
	clock = timesource.New(timesource.Config{Sources: sources, HostOffset: offset, NotBefore: buildTime()})
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
	st := clock.Status()
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
	return clock, warning
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
	// Time first: the credentials' expiry is judged by the corrected clock.
	clock, warning := syncedClock(c.Context, cfg.TimeSources, cfg.ClockOffset, wait)
	if warning != "" {
		fmt.Fprintln(c.App.ErrWriter, "skewproxy: warning:", warning)
	}
	sgn, provider, err := loadPresignCredentials(c.Context, clock.Now)
	if err != nil {
		return cli.Exit("presign: "+err.Error(), 1)
	}
	if _, err := sgn.Credentials(c.Context); err != nil {
		return cli.Exit("presign: "+err.Error(), 1)
	}
	now := clock.Now()
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
