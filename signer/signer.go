package signer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Authorization is a parsed SigV4 Authorization header.
type Authorization struct {
	AccessKeyID   string
	Date          string // YYYYMMDD from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lower-case, as the client listed them
	Signature     string
}

// PresignedQuery is a parsed SigV4 presigned query string.
type PresignedQuery struct {
	Authorization
	Time    time.Time     // X-Amz-Date
	Expires time.Duration // X-Amz-Expires
}

// Options configures a Signer.
type Options struct {
	// MaxBufferedBody caps how much of a body is buffered to hash it
	// (default 64 MiB). Larger bodies get a 413 RequestError.
	MaxBufferedBody int64
	// Logger receives debug detail; nil means discard. Nothing secret is
	// ever logged.
	Logger *slog.Logger
	// ProviderName describes the credentials provider (LoadCredentials
	// returns one) for CredentialsError when the credentials themselves do
	// not say where they came from. Empty means "AWS credential chain".
	ProviderName string
	// UseSDKSigner makes every request go through aws-sdk-go-v2's
	// aws/signer/v4 instead of the package's own header signer. The two
	// produce the same bytes (the tests prove it on the AWS suite, on
	// requests captured from the SDK clients and on random requests); the
	// SDK signer takes several times as long as the fast one and allocates
	// about 60 times per request instead of once. Requests the fast signer
	// does not handle use the SDK signer whatever this says.
	UseSDKSigner bool
	// MaxExpressSessions bounds how many S3 Express One Zone sessions
	// (from CreateSession answers, see Prepared.ObserveAnswer) are kept in
	// memory; when full, expired sessions and then the one that expires
	// first make room. 0 means DefaultMaxExpressSessions; a negative value
	// keeps none, so that every session-signed request passes through with
	// the client's own signature.
	MaxExpressSessions int
}

// DefaultMaxBufferedBody is the default Options.MaxBufferedBody.
const DefaultMaxBufferedBody = 64 << 20

// Signer re-signs requests with the proxy's credentials. It is safe for
// concurrent use and holds no per-request state.
type Signer struct {
	creds aws.CredentialsProvider
	opts  Options
	// v4 is shared by all requests; per-request options (S3 path escaping)
	// are passed to each SignHTTP call, never set on it.
	v4   *v4.Signer
	keys keyCache
	// source is the Source of the last credentials retrieved, for errors.
	source atomic.Pointer[string]
	// sessions holds the S3 Express sessions created through the proxy;
	// nil when none are kept (express.go).
	sessions *expressSessions
}

// New returns a Signer that signs with credentials from provider.
func New(provider aws.CredentialsProvider, opts Options) *Signer {
	if opts.MaxBufferedBody <= 0 {
		opts.MaxBufferedBody = DefaultMaxBufferedBody
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Signer{creds: provider, opts: opts, v4: v4.NewSigner()}
	s.sessions = newExpressSessions(opts.MaxExpressSessions, s.keys.forget)
	return s
}

// Credentials returns the proxy's current credentials, or a
// *CredentialsError naming the provider when they cannot be retrieved.
func (s *Signer) Credentials(ctx context.Context) (aws.Credentials, error) {
	if s.creds == nil {
		return aws.Credentials{}, &CredentialsError{Provider: s.providerName(), Err: errors.New("no credentials provider configured")}
	}
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, &CredentialsError{Provider: s.providerName(), Err: err}
	}
	if c.Source != "" {
		// Store only a change: this runs on every Sign.
		if p := s.source.Load(); p == nil || *p != c.Source {
			src := c.Source
			s.source.Store(&src)
		}
	}
	if !c.HasKeys() {
		return aws.Credentials{}, &CredentialsError{Provider: s.providerName(), Err: errors.New("credentials have no access key id or secret key")}
	}
	return c, nil
}

func (s *Signer) providerName() string {
	if p := s.source.Load(); p != nil {
		return *p
	}
	if s.opts.ProviderName != "" {
		return s.opts.ProviderName
	}
	return "AWS credential chain"
}

// Prepare inspects req (an intercepted request bound for host req.Host) and
// returns a Prepared request ready to be signed. It strips nothing from req
// itself, but it may read (and buffer) req.Body. Errors are *RequestError.
//
// A request the client signed keeps its credential scope and its signed
// header set; an unsigned request gets its scope from the host. A
// presigned request is passed through unchanged by Sign. An S3 Express
// request carrying x-amz-s3session-token is signed with that session's
// credentials when the signer kept them (Prepared.ObserveAnswer), and is
// otherwise passed through unchanged. A request signed
// with Signature Version 2 (or the query APIs' 1 or 0) loses that
// signature and is then treated as unsigned; ClientSignatureVersion says
// which it was.
func (s *Signer) Prepare(req *http.Request) (*Prepared, error) {
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	if req.URL == nil || host == "" {
		return nil, &RequestError{Status: http.StatusBadRequest, Code: "InvalidRequest", Message: "request has no host"}
	}
	// A pre-SigV4 signature is removed here (sigv2.go); what is left is an
	// unsigned request.
	req, legacy, err := s.upgradeLegacy(req)
	if err != nil {
		return nil, err
	}
	// Most queries are plain (no escapes in names, no '+', no ';'): those
	// cannot be malformed and are checked for presign parameters without
	// building a url.Values.
	rawQuery := req.URL.RawQuery
	var query url.Values
	var qerr error
	var presigned bool
	if simpleQuery(rawQuery) {
		presigned = rawHasPresignKey(rawQuery)
		if presigned {
			query, qerr = url.ParseQuery(rawQuery)
		}
	} else {
		query, qerr = url.ParseQuery(rawQuery)
		presigned = isPresigned(query)
	}
	authz := headerValues(req.Header, "Authorization")

	if presigned {
		if len(authz) > 0 {
			return nil, badRequest("InvalidRequest", "request carries both an Authorization header and a presigned query", nil)
		}
		return s.preparePresigned(req, host, query, qerr)
	}
	if len(authz) == 0 && IsUpgrade(req.Header) {
		// An unsigned protocol switch (a WebSocket that authenticates
		// some other way) passes through untouched.
		return s.prepareUnsignedUpgrade(req, host)
	}

	// One allocation holds the Prepared and everything Sign needs.
	p := &Prepared{}
	st := &p.st
	st.s = s
	var auth *Authorization
	switch len(authz) {
	case 0:
	case 1:
		if err := parseAuthorization(authz[0], &st.auth, st.names[:0]); err != nil {
			if strings.HasPrefix(strings.TrimSpace(authz[0]), AlgorithmECDSA) {
				return nil, &RequestError{Status: http.StatusNotImplemented, Code: "NotImplemented",
					Message: "SigV4A (AWS4-ECDSA-P256-SHA256) signatures are not supported by skewproxy", Err: err}
			}
			return nil, badRequest("IncompleteSignature", "malformed Authorization header", err)
		}
		auth = &st.auth
	default:
		return nil, badRequest("InvalidRequest", "more than one Authorization header", nil)
	}
	if qerr != nil {
		return nil, badRequest("InvalidRequest", "malformed query string", qerr)
	}

	var sc Scope
	if auth != nil {
		sc = Scope{Service: auth.Service, Region: auth.Region, S3: isS3Service(auth.Service)}
	} else {
		var err error
		if sc, err = ScopeFromHost(host); err != nil {
			return nil, badRequest("InvalidRequest", "cannot tell the signing service and region from the host", err)
		}
	}

	p.Service, p.Region, p.ClientAuth, p.ClientTime = sc.Service, sc.Region, auth, clientTime(req.Header)
	if legacy.version != "" {
		p.ClientSignatureVersion, p.ClientTime, p.legacyExpires = legacy.version, legacy.clientTime, legacy.expires
	}
	if sc.Service == expressService {
		// S3 Express session tokens (express.go): a request with one the
		// signer does not know is passed through as the client signed it.
		passed, err := s.prepareExpress(p, req, host)
		if err != nil {
			return nil, err
		}
		if passed {
			return p, nil
		}
	}
	pl, err := s.preparePayload(req, sc, &st.body)
	if err != nil {
		return nil, err
	}
	p.PayloadHash, p.Streaming, p.Replayable = pl.hash, pl.mode, st.body.replayable()

	st.setTemplate(req, host, pl)
	if strings.ContainsRune(rawQuery, '+') {
		// A raw '+' means a space to Go but not to every server: put the
		// unambiguous canonical form on the wire, exactly what is signed.
		st.url.RawQuery = canonicalQuery(query)
	}
	if strings.Contains(rawQuery, "X-Amz-Security-Token") {
		// The client's session token never goes upstream, in a header or
		// in the query (the proxy signs with its own credentials).
		if query == nil {
			query, _ = url.ParseQuery(rawQuery) // plain queries always parse
		}
		if query.Has("X-Amz-Security-Token") {
			query.Del("X-Amz-Security-Token")
			st.url.RawQuery = canonicalQuery(query)
		}
	}
	plan := &st.plan
	plan.service, plan.region, plan.s3 = sc.Service, sc.Region, sc.S3
	plan.host, plan.signHost = host, sanitizeHost(host, st.url.Scheme)
	plan.payloadHash, plan.mode, plan.decodedLen = pl.hash, pl.mode, pl.decodedLen
	st.chooseSignedHeaders(auth)
	plan.signLength = auth != nil && contains(auth.SignedHeaders, "content-length") && st.body.length > 0
	if !plan.sdkOnly {
		st.planFast(query, rawQuery)
	}
	if st.body.buffered {
		st.getBody = st.body.reader
	}
	if s.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		s.opts.Logger.Debug("prepared re-signing",
			"service", sc.Service, "region", sc.Region, "client_signed", auth != nil,
			"client_signature_version", legacy.version,
			"signed_headers", len(plan.signed), "payload", payloadKind(pl.hash), "replayable", p.Replayable,
			"fast_signer", !plan.sdkOnly && !s.opts.UseSDKSigner)
	}
	return p, nil
}

// preparePresigned handles a request signed in its query string: it is
// never re-signed (the URL may belong to someone else), only passed on.
func (s *Signer) preparePresigned(req *http.Request, host string, query url.Values, qerr error) (*Prepared, error) {
	if qerr != nil {
		return nil, badRequest("InvalidRequest", "malformed query string", qerr)
	}
	pq, err := ParsePresignedQuery(query)
	if err != nil {
		if query.Get("X-Amz-Algorithm") == AlgorithmECDSA {
			return nil, &RequestError{Status: http.StatusNotImplemented, Code: "NotImplemented",
				Message: "SigV4A (AWS4-ECDSA-P256-SHA256) presigned URLs are not supported by skewproxy", Err: err}
		}
		return nil, badRequest("AuthorizationQueryParametersError", "malformed presigned query", err)
	}
	b := &body{}
	if err := s.passthroughBody(req, b); err != nil {
		return nil, err
	}
	tmpl := outgoingTemplate(req, host)
	p := &Prepared{
		Service: pq.Service, Region: pq.Region, ClientPresign: pq, ClientTime: pq.Time,
		PayloadHash: req.Header.Get("X-Amz-Content-Sha256"), Replayable: b.replayable(),
	}
	if IsUpgrade(req.Header) {
		// A WebSocket handshake authenticated by a presigned URL (AWS IoT
		// MQTT over WSS, API Gateway WebSocket APIs): the URL is signed
		// again at send time, as the client's clock may be wrong.
		p.sign = func(ctx context.Context, t time.Time) (*http.Request, error) {
			return s.presignUpgrade(ctx, tmpl, pq, t)
		}
		return p, nil
	}
	p.sign = func(ctx context.Context, _ time.Time) (*http.Request, error) {
		out := tmpl.Clone(ctx)
		if err := b.attach(out, b.reader); err != nil {
			return nil, err
		}
		return out, nil
	}
	return p, nil
}

// signPlan is what Prepare decided about one request; Sign only reads it.
type signPlan struct {
	service, region string
	s3              bool
	host            string // the host as received
	signHost        string // the host as signed and sent: a default port dropped
	payloadHash     string
	mode            StreamingMode
	decodedLen      int64
	// signed are the headers to sign besides host, content-length,
	// x-amz-date and x-amz-security-token, sorted by name.
	signed     []signedHeader
	signedBuf  [10]signedHeader
	signLength bool // sign content-length
	// sdkOnly is set when the fast signer cannot reproduce what the SDK
	// signer would sign; then the SDK signer signs.
	sdkOnly bool
	fast    fastPlan
}

func signOptsS3(o *v4.SignerOptions)    { o.DisableURIPathEscaping = true }
func signOptsOther(o *v4.SignerOptions) { o.DisableURIPathEscaping = false }

// sign returns a fresh outgoing request for p signed at t.
func (st *prepState) sign(ctx context.Context, t time.Time) (*http.Request, error) {
	if t.IsZero() {
		return nil, errors.New("signer: zero signing time")
	}
	s, plan := st.s, &st.plan
	var creds aws.Credentials
	var err error
	if st.express != nil {
		var ok bool
		if creds, ok = s.expressCredentials(st.express, t); !ok {
			return st.signPassThrough(ctx)
		}
	} else if creds, err = s.Credentials(ctx); err != nil {
		return nil, err
	}
	// One allocation holds the outgoing request, its URL and the values
	// of the three signing headers.
	o := new(outgoing)
	o.req = *st.tmpl.WithContext(ctx) // inlined: the copy does not escape
	o.url = st.url
	out := &o.req
	out.URL = &o.url
	h := make(http.Header, len(st.hdrs)+3)
	for _, kv := range st.hdrs {
		// A full slice: an Add on the outgoing request cannot write into
		// the snapshot that a retry signs again.
		h[kv.key] = kv.vals[:len(kv.vals):len(kv.vals)]
	}
	out.Header = h

	var seed string
	if plan.sdkOnly || s.opts.UseSDKSigner {
		if seed, err = st.signSDK(ctx, out, creds, t); err != nil {
			return nil, err
		}
	} else {
		authz, date, ok := s.signFast(plan, creds, t)
		if !ok {
			if seed, err = st.signSDK(ctx, out, creds, t); err != nil {
				return nil, err
			}
		} else {
			vals := o.vals[:]
			vals[0], vals[1], vals[2] = authz, date, creds.SessionToken
			h["Authorization"] = vals[0:1:1]
			h["X-Amz-Date"] = vals[1:2:2]
			if creds.SessionToken != "" {
				h["X-Amz-Security-Token"] = vals[2:3:3]
			}
			out.Host = plan.signHost
			seed = authz[len(authz)-64:]
		}
	}

	if err := st.body.attach(out, st.getBody); err != nil {
		return nil, err
	}
	if plan.mode == StreamingSigned || plan.mode == StreamingSignedTrailer {
		if err := s.resignChunks(out, creds, t, plan, seed); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// outgoing is what Sign allocates for a fast-signed request.
type outgoing struct {
	req  http.Request
	url  url.URL
	vals [3]string // Authorization, X-Amz-Date, X-Amz-Security-Token
}

// signSDK signs out with aws-sdk-go-v2's v4 signer and returns the seed
// signature.
func (st *prepState) signSDK(ctx context.Context, out *http.Request, creds aws.Credentials, t time.Time) (string, error) {
	s, plan := st.s, &st.plan
	// The aws signer signs every header on the request it is given, so it
	// gets a bare copy carrying only the chosen ones.
	sh := make(http.Header, len(plan.signed)+3)
	for k, v := range out.Header {
		for _, sg := range plan.signed {
			if strings.EqualFold(k, sg.name) {
				sh[k] = v
				break
			}
		}
	}
	signPath := wirePath(out.URL)
	if !plan.s3 {
		signPath = normalizePath(signPath)
	}
	sreq := &http.Request{
		Method: out.Method,
		URL:    &url.URL{Scheme: out.URL.Scheme, Opaque: "//" + plan.host + signPath, RawQuery: out.URL.RawQuery},
		Host:   plan.host,
		Header: sh,
	}
	if plan.signLength {
		sreq.ContentLength = st.body.length
	}
	optFn := signOptsOther
	if plan.s3 {
		optFn = signOptsS3
	}
	if err := s.v4.SignHTTP(ctx, creds, sreq, plan.payloadHash, plan.service, plan.region, t, optFn); err != nil {
		return "", fmt.Errorf("signer: sign %s request: %w", plan.service, err)
	}
	out.Header["Authorization"] = sreq.Header["Authorization"]
	out.Header["X-Amz-Date"] = sreq.Header["X-Amz-Date"]
	if tok := sreq.Header["X-Amz-Security-Token"]; len(tok) > 0 {
		out.Header["X-Amz-Security-Token"] = tok
	}
	out.Host = sreq.Host // the signer drops a default port; the wire must match
	return seedSignature(out.Header.Get("Authorization")), nil
}

// outgoingTemplate is req made ready for http.Transport.RoundTrip: absolute
// URL, Host set, no RequestURI. Its body is attached by Sign.
func outgoingTemplate(req *http.Request, host string) *http.Request {
	out := req.Clone(context.Background())
	out.RequestURI = ""
	if out.URL.Scheme == "" {
		out.URL.Scheme = "https"
	}
	if out.URL.Host == "" {
		out.URL.Host = host
	}
	out.Host = host
	out.Body, out.GetBody = nil, nil
	return out
}

// hopByHop are the hop-by-hop headers of RFC 9110 section 7.6.1 plus the
// proxy-specific ones (the list follows net/http/httputil.ReverseProxy).
// This is the project's one list: the signer never signs them and the
// proxy never forwards them.
var hopByHop = [...]string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by curl and old clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonicalised "TE"
	"Trailer", // not Trailers, per RFC 9110
	"Transfer-Encoding",
	"Upgrade",
}

// IsHopByHop reports whether the header name (in any case) is hop-by-hop:
// connection-specific, never forwarded by a proxy and never signed, since a
// proxy or transport may change it.
func IsHopByHop(name string) bool {
	for _, h := range hopByHop {
		if len(h) == len(name) && strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// isNeverSigned reports whether the lower-case header name n is one Sign
// handles itself or the aws signer refuses to sign (it ignores User-Agent,
// X-Amzn-Trace-Id and Expect): they stay on the request, unsigned.
func isNeverSigned(n string) bool {
	switch n {
	case "authorization", "x-amz-date", "x-amz-security-token", "host",
		"content-length", "user-agent", "x-amzn-trace-id", "expect":
		return true
	}
	return false
}

// isPresigned reports whether a query carries SigV4 presign parameters.
func isPresigned(q url.Values) bool {
	return q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") || q.Has("X-Amz-Algorithm")
}

// isS3Service reports whether a signing name follows S3's rules.
func isS3Service(service string) bool {
	switch service {
	case "s3", "s3-object-lambda", "s3-outposts", "s3express":
		return true
	}
	return false
}

// headerValues returns all values of the header named name, whatever the
// case of the map keys.
func headerValues(h http.Header, name string) []string {
	if v, ok := h[name]; ok {
		return v
	}
	var out []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	return out
}

// clientTime is the client's own X-Amz-Date, zero when absent or malformed.
func clientTime(h http.Header) time.Time {
	v := headerValues(h, "X-Amz-Date")
	if len(v) != 1 {
		return time.Time{}
	}
	t, err := parseAmzDate(v[0])
	if err != nil {
		return time.Time{}
	}
	return t
}

// seedSignature extracts the signature from an Authorization value this
// package just produced.
func seedSignature(authz string) string {
	_, sig, _ := strings.Cut(authz, "Signature=")
	return sig
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func badRequest(code, msg string, err error) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Code: code, Message: msg, Err: err}
}
