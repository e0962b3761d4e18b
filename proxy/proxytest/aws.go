package proxytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// AWSOptions configures NewAWS. The zero value works: it accepts nothing
// but requests signed with empty keys, so set Credentials.
type AWSOptions struct {
	// Credentials are the keys a request must be signed with (in an
	// end-to-end test: the proxy's real keys, not the client's).
	Credentials Credentials
	// MoreCredentials are other keys the server accepts, chosen by the
	// request's access key id (successive credential_process outputs, say).
	MoreCredentials []Credentials
	// Window is how far in the past a signing time may be. Default 5m.
	Window time.Duration
	// FutureWindow is how far in the future a signing time may be.
	// Default: Window. (Real AWS services mostly allow 15m here.)
	FutureWindow time.Duration
	// Now is the server's clock, the "true" time. Default time.Now.
	Now func() time.Time
	// CertValidity, when set, makes the server's certificate valid only
	// from CertValidity before to CertValidity after Now() at start (a
	// real AWS certificate is not valid years away from true time): the
	// wrong-clock world. Default: a year each way around the host clock,
	// so that a Now fixed in the past (the signing test vectors) still
	// gets a certificate clients on the host clock accept.
	CertValidity time.Duration
	// Functions sets the behaviour of Lambda functions by name. A function
	// not listed echoes its payload at once.
	Functions map[string]FunctionBehavior
	// AccountConcurrency, when > 0, caps concurrent Lambda invocations over
	// all functions; beyond it: 429 TooManyRequestsException with Reason
	// ConcurrentInvocationLimitExceeded.
	AccountConcurrency int
	// HTTP2 serves HTTP/2 (h2 over TLS) as well as HTTP/1.1.
	HTTP2 bool
	// ExtraNames are more DNS names for the server certificate. It already
	// covers localhost, 127.0.0.1, *.amazonaws.com, *.api.aws and the
	// regional names (*.REGION.amazonaws.com, *.execute-api.REGION...,
	// *.s3.REGION...) of the common regions.
	ExtraNames []string
	// WebIdentity, when set, makes STS answer AssumeRoleWithWebIdentity
	// (an unsigned call, as on AWS) with these credentials, valid until
	// their Expires, to a request carrying WebIdentityToken.
	WebIdentity *WebIdentity
	// MaxRecorded caps how many requests Requests keeps (oldest dropped).
	// Default 1000.
	MaxRecorded int
}

// AWS is a fake AWS endpoint on a loopback TLS server. It verifies the SigV4
// signature of every request with Verify and answers like AWS:
//
//   - STS GetCallerIdentity (query protocol, GET or POST form);
//   - Lambda Invoke (POST /2015-03-31/functions/{name}/invocations) and
//     InvokeWithResponseStream (POST /2021-11-15/functions/{name}/response-streaming-invocations,
//     event-stream framed), behaviour per function from AWSOptions.Functions;
//   - API Gateway (hosts *.execute-api.*): 200 JSON echo, or a failure
//     selected by path (see the APIGW* path constants);
//   - S3 hosts: requests are verified (aws-chunked bodies chunk by chunk,
//     see VerifyChunked) and answered 200 with an empty body (use
//     StartMinIO for a real S3).
//
// The service is chosen by Host (sts.*, lambda.*, *.execute-api.*, s3.*),
// else by the request's credential scope, else by path. Every answer has a
// Date header from AWSOptions.Now and a request id. Create it with NewAWS.
type AWS struct {
	opts    AWSOptions
	srv     *httptest.Server
	pool    *x509.CertPool
	certPEM []byte

	mu        sync.Mutex
	functions map[string]FunctionBehavior
	failQueue []FailMode
	inflight  map[string]int
	total     int // Lambda invocations in flight over all functions
	stats     Stats
	recorded  []Request
	handling  int // requests whose handler has not returned (and so not been recorded)
	caFile    string
}

// Stats are counters the fake keeps. Maps are keyed as documented and are
// copies: changing them does not affect the fake.
type Stats struct {
	// Requests is how many requests arrived.
	Requests int
	// Verified is how many had a valid signature.
	Verified int
	// Failures counts verification failures by kind.
	Failures map[FailureKind]int
	// Injected counts answers forced by FailNext, by mode.
	Injected map[FailMode]int
	// Operations counts verified requests by "Service.Operation"
	// (e.g. "Lambda.Invoke", "STS.GetCallerIdentity").
	Operations map[string]int
	// MaxInFlight is, per Lambda function name, the most invocations that
	// ran at the same time.
	MaxInFlight map[string]int
	// MaxInFlightTotal is the most Lambda invocations at the same time over
	// all functions.
	MaxInFlightTotal int
	// Throttled counts 429 answers for reserved or account concurrency.
	Throttled int
	// LastHeader is a copy of the headers of the last request that arrived.
	LastHeader http.Header
}

// Request is one recorded request as the fake received it.
type Request struct {
	// Time is the server time (AWSOptions.Now) at arrival.
	Time     time.Time
	Method   string
	Host     string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	// Service is the service the fake served it as: "sts", "lambda",
	// "execute-api", "s3" or "" when unknown.
	Service string
	// Operation is e.g. "Invoke", "GetCallerIdentity" ("" when unknown).
	Operation string
	// Function is the Lambda function name, if any.
	Function string
	// Verified is set when the signature checked out.
	Verified *Verified
	// Failure is the verification failure kind, if any.
	Failure FailureKind
	// Injected is the FailNext mode used to answer, if any.
	Injected FailMode
	// Status is the HTTP status of the answer.
	Status int
}

// NewAWS starts a fake AWS endpoint for the duration of the test; it is
// closed by t.Cleanup.
func NewAWS(t testing.TB, opts AWSOptions) *AWS {
	t.Helper()
	if opts.Window <= 0 {
		opts.Window = 5 * time.Minute
	}
	if opts.FutureWindow <= 0 {
		opts.FutureWindow = opts.Window
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRecorded <= 0 {
		opts.MaxRecorded = 1000
	}
	certTime, validity := opts.Now(), opts.CertValidity
	if validity <= 0 {
		certTime, validity = time.Now(), 365*24*time.Hour
	}
	cert, certPEM, err := selfSignedCert(certNames(opts.ExtraNames), certTime, validity)
	if err != nil {
		t.Fatalf("proxytest: fake AWS certificate: %v", err)
	}
	a := &AWS{
		opts:      opts,
		functions: map[string]FunctionBehavior{},
		inflight:  map[string]int{},
		certPEM:   certPEM,
		stats:     newStats(),
	}
	for name, b := range opts.Functions {
		a.functions[name] = b
	}
	a.pool = x509.NewCertPool()
	a.pool.AddCert(cert.Leaf)
	a.srv = httptest.NewUnstartedServer(a)
	a.srv.EnableHTTP2 = opts.HTTP2
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	a.srv.Config.ReadHeaderTimeout = 10 * time.Second
	a.srv.StartTLS()
	t.Cleanup(a.Close)
	return a
}

func newStats() Stats {
	return Stats{
		Failures:    map[FailureKind]int{},
		Injected:    map[FailMode]int{},
		Operations:  map[string]int{},
		MaxInFlight: map[string]int{},
	}
}

// URL is the base URL of the fake, https://127.0.0.1:PORT.
func (a *AWS) URL() string { return a.srv.URL }

// Addr is the fake's host:port (127.0.0.1:PORT), e.g. for --resolve.
func (a *AWS) Addr() string { return strings.TrimPrefix(a.srv.URL, "https://") }

// CertPool trusts the fake's TLS certificate.
func (a *AWS) CertPool() *x509.CertPool { return a.pool }

// CertPEM is the fake's certificate in PEM (it is its own root).
func (a *AWS) CertPEM() []byte { return append([]byte(nil), a.certPEM...) }

// CAFile writes CertPEM to a file in a temporary directory removed when the
// fake closes, and returns its path (for --upstream-ca, AWS_CA_BUNDLE, ...).
func (a *AWS) CAFile(t testing.TB) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.caFile == "" {
		p := filepath.Join(t.TempDir(), "proxytest-fake-aws.pem")
		if err := os.WriteFile(p, a.certPEM, 0o600); err != nil {
			t.Fatalf("proxytest: write CA file: %v", err)
		}
		a.caFile = p
	}
	return a.caFile
}

// Client returns an HTTP client that trusts the fake and dials it for any
// host name (requests keep their Host), with no proxy. It buffers request
// bodies (they must fit in memory).
func (a *AWS) Client() *http.Client { return fakeClient(a.pool, a.Addr(), a.opts.HTTP2) }

// fakeClient is an HTTP client that trusts pool and dials addr for any
// host name (requests keep their Host), with no proxy, handing the
// transport a copy of each request body (bufferedBody).
func fakeClient(pool *x509.CertPool, addr string, http2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: http2,
		Proxy:             nil,
	}
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
	return &http.Client{Transport: bufferedBody{tr}, Timeout: time.Minute}
}

// bufferedBody hands the transport its own copy of the request body. The
// AWS SDK closes a request body as soon as the response headers arrive,
// while net/http may still be reading it to check for EOF; the transport
// then closes the connection mid-response (aws/aws-sdk-go-v2#2737, which
// shows up as "use of closed network connection" on streamed answers).
type bufferedBody struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (b bufferedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return b.next.RoundTrip(r)
	}
	data, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("proxytest: read request body: %w", err)
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return b.next.RoundTrip(r)
}

// Close stops the server. It is called by t.Cleanup; calling it twice is
// harmless.
func (a *AWS) Close() { a.srv.Close() }

// SetFunction sets (or replaces) the behaviour of Lambda function name.
func (a *AWS) SetFunction(name string, b FunctionBehavior) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.functions[name] = b
}

// FailNext makes the next n requests fail with mode, before and whatever
// their signature. Calls add up in order.
func (a *AWS) FailNext(n int, mode FailMode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range n {
		a.failQueue = append(a.failQueue, mode)
	}
}

// Stats returns a snapshot of the counters.
func (a *AWS) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Failures = cloneMap(a.stats.Failures)
	s.Injected = cloneMap(a.stats.Injected)
	s.Operations = cloneMap(a.stats.Operations)
	s.MaxInFlight = cloneMap(a.stats.MaxInFlight)
	s.LastHeader = a.stats.LastHeader.Clone()
	return s
}

// Requests returns the recorded requests, oldest first (at most
// AWSOptions.MaxRecorded; a request is recorded when its answer is done).
func (a *AWS) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.recorded...)
}

// WaitIdle waits until every request that has arrived is recorded (its
// handler returned) or ctx ends, and reports whether it got there. A client
// can hold its whole answer a moment before the fake records the request,
// so a test counting requests right after an answer calls this first.
func (a *AWS) WaitIdle(ctx context.Context) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		a.mu.Lock()
		idle := a.handling == 0
		a.mu.Unlock()
		if idle {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// Reset clears the counters, recorded requests and pending FailNext modes.
func (a *AWS) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats = newStats()
	a.recorded = nil
	a.failQueue = nil
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// maxBody caps how much of a request body the fake reads.
const maxBody = 64 << 20

// ServeHTTP implements http.Handler.
func (a *AWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := a.opts.Now()
	reqID := newRequestID()
	// Like AWS, Date says when the answer left, not when the request came
	// (a Lambda invoke may run for seconds in between).
	w = &dateStamp{ResponseWriter: w, now: a.opts.Now}
	w.Header().Set("X-Amzn-RequestId", reqID)
	svc := serviceOf(r)
	proto := protocolOf(svc)
	if proto == protoS3 {
		w.Header().Set("X-Amz-Request-Id", reqID)
		w.Header().Set("X-Amz-Id-2", reqID)
	}
	rec := Request{
		Time: now, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Service: svc,
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() { a.record(rec, sw.status) }()

	a.mu.Lock()
	a.handling++
	a.stats.Requests++
	a.stats.LastHeader = rec.Header
	var mode FailMode
	if len(a.failQueue) > 0 {
		mode, a.failQueue = a.failQueue[0], a.failQueue[1:]
		a.stats.Injected[mode]++
	}
	a.mu.Unlock()

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(sw, "request body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	rec.Body = body

	if svc == "sts" && a.opts.WebIdentity != nil {
		if op, ok := a.serveWebIdentity(sw, r, body, reqID); ok {
			rec.Operation = op
			return
		}
	}
	if mode != 0 {
		rec.Injected = mode
		signed, err := time.Parse(amzDateFmt, signingDate(r))
		if err != nil {
			signed = now.Add(-a.opts.Window - time.Minute)
		}
		injectedFailure(proto, mode, signed, now, a.opts.Window, a.opts.FutureWindow).write(sw, proto, reqID)
		return
	}

	v, err := VerifyWindow(r, body, a.credentialsFor(r), now, a.opts.Window, a.opts.FutureWindow)
	if err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) {
			ve = &VerifyError{Kind: FailMalformed, Detail: err.Error()}
		}
		rec.Failure = ve.Kind
		a.mu.Lock()
		a.stats.Failures[ve.Kind]++
		a.mu.Unlock()
		verifyFailure(proto, ve).write(sw, proto, reqID)
		return
	}
	rec.Verified = v
	a.mu.Lock()
	a.stats.Verified++
	a.mu.Unlock()

	switch svc {
	case "sts":
		rec.Operation = a.serveSTS(sw, r, body, reqID)
	case "lambda":
		rec.Operation, rec.Function = a.serveLambda(sw, r, body, reqID)
	case "execute-api":
		rec.Operation = serveAPIGateway(sw, r, body)
	case "s3":
		rec.Operation = "S3"
		if v.PayloadHash == StreamingPayload {
			if _, err := VerifyChunked(body, v, a.opts.Credentials); err != nil {
				rec.Failure = FailChunkSignature
				a.mu.Lock()
				a.stats.Failures[FailChunkSignature]++
				a.mu.Unlock()
				verifyFailure(proto, &VerifyError{Kind: FailMismatch}).write(sw, proto, reqID)
				return
			}
		}
		sw.Header().Set("Content-Length", "0")
		sw.WriteHeader(http.StatusOK)
	default:
		awsError{status: 400, code: "UnknownOperationException", message: "Unknown service or operation"}.write(sw, proto, reqID)
	}
	if rec.Operation != "" {
		a.mu.Lock()
		a.stats.Operations[operationKey(svc, rec.Operation)]++
		a.mu.Unlock()
	}
}

func operationKey(svc, op string) string {
	switch svc {
	case "sts":
		return "STS." + op
	case "lambda":
		return "Lambda." + op
	case "execute-api":
		return "APIGateway." + op
	}
	return svc + "." + op
}

func (a *AWS) record(rec Request, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	rec.Status = status
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handling--
	a.recorded = append(a.recorded, rec)
	if over := len(a.recorded) - a.opts.MaxRecorded; over > 0 {
		a.recorded = append([]Request(nil), a.recorded[over:]...)
	}
}

// signingDate is the request's X-Amz-Date, from the header or the query.
func signingDate(r *http.Request) string {
	if d := r.Header.Get("X-Amz-Date"); d != "" {
		return d
	}
	return r.URL.Query().Get("X-Amz-Date")
}

// serviceOf picks the service by host, else credential scope, else path.
func serviceOf(r *http.Request) string {
	host := strings.ToLower(r.Host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	switch {
	case strings.Contains(host, ".execute-api."):
		return "execute-api"
	case strings.HasPrefix(host, "sts.") || host == "sts.amazonaws.com":
		return "sts"
	case strings.HasPrefix(host, "lambda."), strings.Contains(host, ".lambda-url."):
		return "lambda"
	case strings.HasPrefix(host, "s3.") || strings.HasPrefix(host, "s3-") || strings.Contains(host, ".s3.") || strings.Contains(host, ".s3-"):
		return "s3"
	}
	if s := scopeService(r); s != "" {
		if isS3(s) {
			return "s3"
		}
		return s
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/2015-03-31/functions/"), strings.HasPrefix(r.URL.Path, "/2021-11-15/functions/"):
		return "lambda"
	case r.URL.Query().Get("Action") != "", strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		return "sts"
	}
	return ""
}

// scopeService is the service of the request's credential scope, or "".
func scopeService(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		_, after, ok := strings.Cut(auth, "Credential=")
		if !ok {
			return ""
		}
		cred, _, _ = strings.Cut(after, ",")
	}
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
}

func protocolOf(svc string) protocol {
	switch svc {
	case "sts":
		return protoQuery
	case "s3":
		return protoS3
	}
	return protoJSON
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// statusWriter remembers the status code and passes Flush through.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dateStamp sets the Date header when the answer's headers are written.
type dateStamp struct {
	http.ResponseWriter
	now   func() time.Time
	wrote bool
}

func (d *dateStamp) stamp() {
	if !d.wrote {
		d.wrote = true
		d.Header().Set("Date", d.now().UTC().Format(http.TimeFormat))
	}
}

func (d *dateStamp) WriteHeader(code int) { d.stamp(); d.ResponseWriter.WriteHeader(code) }

func (d *dateStamp) Write(b []byte) (int, error) { d.stamp(); return d.ResponseWriter.Write(b) }

// Flush passes flushes through (streamed answers).
func (d *dateStamp) Flush() {
	d.stamp()
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (d *dateStamp) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// credentialsFor picks the accepted credentials whose access key the
// request names (Credentials when none does: verification then refuses
// the key).
func (a *AWS) credentialsFor(r *http.Request) Credentials {
	if len(a.opts.MoreCredentials) == 0 {
		return a.opts.Credentials
	}
	p, err := parseSigParams(r)
	if err != nil {
		return a.opts.Credentials
	}
	for _, c := range a.opts.MoreCredentials {
		if c.AccessKeyID == p.accessKey {
			return c
		}
	}
	return a.opts.Credentials
}
