package proxytest

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// S3ExpressOptions configures NewS3Express.
type S3ExpressOptions struct {
	// Credentials are the keys CreateSession must be signed with (in an
	// end-to-end test: the proxy's real keys).
	Credentials Credentials
	// Region is the region served. Default us-east-1.
	Region string
	// Zones are the availability zone ids served (directory buckets
	// BUCKET--ZONE--x-s3 at BUCKET--ZONE--x-s3.s3express-ZONE.REGION.amazonaws.com;
	// the certificate covers *.s3express-ZONE.REGION.amazonaws.com).
	// Default use1-az4.
	Zones []string
	// Now is the server's clock, the "true" time. Default time.Now.
	Now func() time.Time
	// Window is how far a signing time may be from Now, either way.
	// Default 15m, as S3 allows.
	Window time.Duration
	// SessionLifetime is how long a CreateSession session lasts. Default
	// 5m, as S3 Express's do. SetSessionLifetime changes it.
	SessionLifetime time.Duration
}

// S3Express is a fake S3 Express One Zone endpoint (directory buckets) on
// a loopback TLS server. It answers:
//
//   - CreateSession (GET /?session), which must be SigV4-signed with
//     S3ExpressOptions.Credentials under the signing name s3express: the
//     answer holds new session credentials for the bucket, valid for
//     SessionLifetime;
//   - PutObject, GetObject, HeadObject and DeleteObject on objects kept in
//     memory, which must carry x-amz-s3session-token (signed) with a
//     session's token and be signed with that session's keys under
//     s3express, with no x-amz-security-token. Bodies may be plain or
//     aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, chunk signatures
//     checked, or STREAMING-UNSIGNED-PAYLOAD-TRAILER); a CRC32 checksum
//     header or trailer is checked.
//
// An unknown token is refused 400 InvalidToken, an expired session 400
// ExpiredToken, a session used on another bucket 403 AccessDenied, and a
// bad signature as S3 does (403 SignatureDoesNotMatch, RequestTimeTooSkewed).
// Every answer has a Date header from Now. Create it with NewS3Express.
type S3Express struct {
	opts    S3ExpressOptions
	srv     *httptest.Server
	pool    *x509.CertPool
	certPEM []byte

	mu       sync.Mutex
	lifetime time.Duration
	sessions map[string]ExpressSession // by token
	objects  map[string]expressObject  // by bucket + "/" + key
	recorded []ExpressRequest
	caFile   string
}

// ExpressSession is a session the fake issued.
type ExpressSession struct {
	Bucket                              string
	AccessKeyID, SecretAccessKey, Token string
	Expires                             time.Time
	// viaCreateSession is false for a session from NewSession.
	viaCreateSession bool
}

// ExpressRequest is one request the fake received, as it received it.
type ExpressRequest struct {
	// Time is the server time (Now) at arrival.
	Time     time.Time
	Method   string
	Host     string
	Path     string
	RawQuery string
	Header   http.Header
	// Bucket is the directory bucket named by the host.
	Bucket string
	// Operation is CreateSession, PutObject, GetObject, HeadObject or
	// DeleteObject ("" when unknown).
	Operation string
	// Verified is set when the signature checked out.
	Verified *Verified
	// Session is true when the request was signed with a session's keys
	// (a data request), false for the base credentials (CreateSession).
	Session bool
	// Code is the S3 error code answered ("" on success).
	Code string
	// Status is the HTTP status of the answer.
	Status int
}

type expressObject struct {
	data        []byte
	contentType string
	modified    time.Time
}

// NewS3Express starts a fake S3 Express endpoint for the duration of the
// test; it is closed by t.Cleanup.
func NewS3Express(t testing.TB, opts S3ExpressOptions) *S3Express {
	t.Helper()
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if len(opts.Zones) == 0 {
		opts.Zones = []string{"use1-az4"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Window <= 0 {
		opts.Window = 15 * time.Minute
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = 5 * time.Minute
	}
	names := []string{"localhost", "s3express-control." + opts.Region + ".amazonaws.com"}
	for _, z := range opts.Zones {
		names = append(names, "*.s3express-"+z+"."+opts.Region+".amazonaws.com", "s3express-"+z+"."+opts.Region+".amazonaws.com")
	}
	cert, certPEM, err := selfSignedCert(names, time.Now(), 365*24*time.Hour)
	if err != nil {
		t.Fatalf("proxytest: fake S3 Express certificate: %v", err)
	}
	e := &S3Express{
		opts: opts, certPEM: certPEM, lifetime: opts.SessionLifetime,
		sessions: map[string]ExpressSession{}, objects: map[string]expressObject{},
	}
	e.pool = x509.NewCertPool()
	e.pool.AddCert(cert.Leaf)
	e.srv = httptest.NewUnstartedServer(e)
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	e.srv.Config.ReadHeaderTimeout = 10 * time.Second
	e.srv.StartTLS()
	t.Cleanup(e.Close)
	return e
}

// URL is the base URL of the fake, https://127.0.0.1:PORT.
func (e *S3Express) URL() string { return e.srv.URL }

// CertPool trusts the fake's TLS certificate.
func (e *S3Express) CertPool() *x509.CertPool { return e.pool }

// CAFile writes the fake's certificate (its own root) to a file removed
// when the test ends and returns its path (for --upstream-ca).
func (e *S3Express) CAFile(t testing.TB) string {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.caFile == "" {
		p := filepath.Join(t.TempDir(), "proxytest-fake-s3express.pem")
		if err := os.WriteFile(p, e.certPEM, 0o600); err != nil {
			t.Fatalf("proxytest: write CA file: %v", err)
		}
		e.caFile = p
	}
	return e.caFile
}

// Client returns an HTTP client that trusts the fake and dials it for any
// host name (requests keep their Host), with no proxy.
func (e *S3Express) Client() *http.Client {
	return fakeClient(e.pool, strings.TrimPrefix(e.srv.URL, "https://"), false)
}

// Close stops the server. It is called by t.Cleanup; calling it twice is
// harmless.
func (e *S3Express) Close() { e.srv.Close() }

// SetSessionLifetime sets the lifetime of sessions issued from now on.
func (e *S3Express) SetSessionLifetime(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lifetime = d
}

// NewSession issues a session for bucket without a CreateSession call: a
// session the application got some other way.
func (e *S3Express) NewSession(bucket string) ExpressSession {
	return e.issue(bucket, e.opts.Now(), false)
}

// Sessions returns the sessions issued by CreateSession, oldest first.
func (e *S3Express) Sessions() []ExpressSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ExpressSession
	for _, s := range e.sessions {
		if s.viaCreateSession {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// Requests returns the requests received so far, oldest first.
func (e *S3Express) Requests() []ExpressRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ExpressRequest(nil), e.recorded...)
}

// Object returns a stored object's bytes.
func (e *S3Express) Object(bucket, key string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	o, ok := e.objects[bucket+"/"+key]
	return o.data, ok
}

func (e *S3Express) issue(bucket string, now time.Time, viaCreateSession bool) ExpressSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ExpressSession{
		Bucket:           bucket,
		AccessKeyID:      "ASIAEXPRESS" + strings.ToUpper(randomHex(6)),
		SecretAccessKey:  randomBase64(30),
		Token:            randomBase64(150),
		Expires:          now.Add(e.lifetime).Truncate(time.Second),
		viaCreateSession: viaCreateSession,
	}
	e.sessions[s.Token] = s
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// expressBucket is the directory bucket a host names: BUCKET.s3express-ZONE.REGION.amazonaws.com.
func (e *S3Express) expressBucket(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	bucket, rest, ok := strings.Cut(strings.ToLower(host), ".")
	if !ok {
		return "", false
	}
	for _, z := range e.opts.Zones {
		if rest == "s3express-"+z+"."+e.opts.Region+".amazonaws.com" && strings.HasSuffix(bucket, "--"+z+"--x-s3") {
			return bucket, true
		}
	}
	return "", false
}

// ServeHTTP implements http.Handler.
func (e *S3Express) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := e.opts.Now()
	reqID := strings.ToUpper(randomHex(8))
	w = &dateStamp{ResponseWriter: w, now: e.opts.Now}
	w.Header().Set("X-Amz-Request-Id", reqID)
	w.Header().Set("X-Amz-Id-2", reqID)
	sw := &statusWriter{ResponseWriter: w}
	rec := ExpressRequest{Time: now, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()}
	defer func() {
		rec.Status = sw.status
		e.mu.Lock()
		e.recorded = append(e.recorded, rec)
		e.mu.Unlock()
	}()
	fail := func(ae awsError) {
		rec.Code = ae.code
		ae.write(sw, protoS3, reqID)
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		fail(awsError{status: 400, code: "IncompleteBody", message: "request body unreadable or too large"})
		return
	}
	bucket, ok := e.expressBucket(r.Host)
	if !ok {
		fail(awsError{status: 400, code: "InvalidBucketName", message: "The host does not name a directory bucket served here."})
		return
	}
	rec.Bucket = bucket
	if r.Method == http.MethodGet && r.URL.Query().Has("session") && (r.URL.Path == "" || r.URL.Path == "/") {
		rec.Operation = "CreateSession"
		e.createSession(sw, r, body, bucket, now, &rec, fail)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/")
	switch r.Method {
	case http.MethodPut:
		rec.Operation = "PutObject"
	case http.MethodGet:
		rec.Operation = "GetObject"
	case http.MethodHead:
		rec.Operation = "HeadObject"
	case http.MethodDelete:
		rec.Operation = "DeleteObject"
	}
	if rec.Operation == "" || key == "" {
		rec.Operation = ""
		fail(awsError{status: 501, code: "NotImplemented", message: "The fake S3 Express endpoint serves CreateSession and single objects only."})
		return
	}

	sess, ae := e.sessionFor(r, bucket, now)
	if ae != nil {
		fail(*ae)
		return
	}
	creds := Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.SecretAccessKey}
	v, err := VerifyWindow(r, body, creds, now, e.opts.Window, e.opts.Window)
	if err != nil {
		fail(verifyFailure(protoS3, asVerifyError(err)))
		return
	}
	switch {
	case v.Service != "s3express" || v.Region != e.opts.Region:
		fail(awsError{status: 400, code: "AuthorizationHeaderMalformed",
			message: fmt.Sprintf("The authorization header is malformed; the scope %s/%s is wrong, expecting s3express/%s", v.Region, v.Service, e.opts.Region)})
		return
	case !containsString(v.SignedHeaders, "x-amz-s3session-token"):
		fail(awsError{status: 403, code: "AccessDenied", message: "x-amz-s3session-token must be signed."})
		return
	}
	rec.Verified, rec.Session = v, true

	data := body
	switch v.PayloadHash {
	case StreamingPayload:
		if data, err = VerifyChunked(body, v, creds); err != nil {
			fail(verifyFailure(protoS3, &VerifyError{Kind: FailMismatch}))
			return
		}
	case "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
		var trailer http.Header
		if data, trailer, err = decodeUnsignedChunked(body); err != nil {
			fail(awsError{status: 400, code: "IncompleteBody", message: err.Error()})
			return
		}
		if sum := trailer.Get("X-Amz-Checksum-Crc32"); sum != "" && sum != crc32Base64(data) {
			fail(awsError{status: 400, code: "BadDigest", message: "The CRC32 you specified did not match the calculated checksum."})
			return
		}
	}
	if sum := r.Header.Get("X-Amz-Checksum-Crc32"); sum != "" && sum != crc32Base64(data) {
		fail(awsError{status: 400, code: "BadDigest", message: "The CRC32 you specified did not match the calculated checksum."})
		return
	}
	e.serveObject(sw, r, bucket, key, data, now, fail)
}

// createSession answers CreateSession signed with the base credentials.
func (e *S3Express) createSession(w http.ResponseWriter, r *http.Request, body []byte, bucket string, now time.Time, rec *ExpressRequest, fail func(awsError)) {
	v, err := VerifyWindow(r, body, e.opts.Credentials, now, e.opts.Window, e.opts.Window)
	if err != nil {
		fail(verifyFailure(protoS3, asVerifyError(err)))
		return
	}
	if v.Service != "s3express" || v.Region != e.opts.Region {
		fail(awsError{status: 400, code: "AuthorizationHeaderMalformed",
			message: fmt.Sprintf("The authorization header is malformed; the scope %s/%s is wrong, expecting s3express/%s", v.Region, v.Service, e.opts.Region)})
		return
	}
	if r.Header.Get("X-Amz-S3session-Token") != "" {
		fail(awsError{status: 400, code: "InvalidRequest", message: "CreateSession is not signed with a session."})
		return
	}
	rec.Verified = v
	s := e.issue(bucket, now, true)
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<CreateSessionResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Credentials>`)
	writeXMLElem(&b, "", "SessionToken", s.Token)
	writeXMLElem(&b, "", "SecretAccessKey", s.SecretAccessKey)
	writeXMLElem(&b, "", "AccessKeyId", s.AccessKeyID)
	writeXMLElem(&b, "", "Expiration", s.Expires.UTC().Format(time.RFC3339))
	b.WriteString(`</Credentials></CreateSessionResult>`)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// sessionFor finds the valid session a data request names.
func (e *S3Express) sessionFor(r *http.Request, bucket string, now time.Time) (ExpressSession, *awsError) {
	tok := r.Header.Get("X-Amz-S3session-Token")
	if tok == "" {
		return ExpressSession{}, &awsError{status: 403, code: "AccessDenied", message: "S3 Express requests need x-amz-s3session-token (call CreateSession)."}
	}
	e.mu.Lock()
	s, ok := e.sessions[tok]
	e.mu.Unlock()
	switch {
	case !ok:
		return ExpressSession{}, &awsError{status: 400, code: "InvalidToken", message: "The provided token is malformed or otherwise invalid."}
	case !now.Before(s.Expires):
		return ExpressSession{}, &awsError{status: 400, code: "ExpiredToken", message: "The provided token has expired."}
	case s.Bucket != bucket:
		return ExpressSession{}, &awsError{status: 403, code: "AccessDenied", message: "The session is for another bucket."}
	}
	return s, nil
}

// serveObject performs a verified object operation.
func (e *S3Express) serveObject(w http.ResponseWriter, r *http.Request, bucket, key string, data []byte, now time.Time, fail func(awsError)) {
	id := bucket + "/" + key
	switch r.Method {
	case http.MethodPut:
		e.mu.Lock()
		e.objects[id] = expressObject{data: data, contentType: r.Header.Get("Content-Type"), modified: now}
		e.mu.Unlock()
		w.Header().Set("ETag", etag(data))
		w.Header().Set("X-Amz-Checksum-Crc32", crc32Base64(data))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case http.MethodGet, http.MethodHead:
		e.mu.Lock()
		o, ok := e.objects[id]
		e.mu.Unlock()
		if !ok {
			fail(awsError{status: 404, code: "NoSuchKey", message: "The specified key does not exist."})
			return
		}
		if o.contentType != "" {
			w.Header().Set("Content-Type", o.contentType)
		}
		w.Header().Set("ETag", etag(o.data))
		w.Header().Set("Last-Modified", o.modified.UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(o.data)
		}
	case http.MethodDelete:
		e.mu.Lock()
		delete(e.objects, id)
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

func asVerifyError(err error) *VerifyError {
	var ve *VerifyError
	if !errors.As(err, &ve) {
		ve = &VerifyError{Kind: FailMalformed, Detail: err.Error()}
	}
	return ve
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func etag(data []byte) string { return `"` + hexSHA256(data)[:32] + `"` }

func crc32Base64(data []byte) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE(data))
	return base64.StdEncoding.EncodeToString(b[:])
}

// decodeUnsignedChunked decodes an aws-chunked body of
// STREAMING-UNSIGNED-PAYLOAD-TRAILER: "<hex size>\r\n<data>\r\n" chunks,
// a zero-size chunk, trailer lines "name:value\r\n" and a final "\r\n".
func decodeUnsignedChunked(body []byte) ([]byte, http.Header, error) {
	var out []byte
	rest := body
	for i := 0; ; i++ {
		line, after, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return nil, nil, fmt.Errorf("aws-chunked chunk %d: no header line", i)
		}
		sizeHex, _, _ := strings.Cut(string(line), ";")
		size, err := strconv.ParseUint(sizeHex, 16, 31)
		if err != nil {
			return nil, nil, fmt.Errorf("aws-chunked chunk %d: bad size", i)
		}
		if size == 0 {
			rest = after
			break
		}
		if uint64(len(after)) < size+2 || string(after[size:size+2]) != "\r\n" {
			return nil, nil, fmt.Errorf("aws-chunked chunk %d: bad framing", i)
		}
		out = append(out, after[:size]...)
		rest = after[size+2:]
	}
	trailer := http.Header{}
	for {
		line, after, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return nil, nil, errors.New("aws-chunked trailer not terminated")
		}
		rest = after
		if len(line) == 0 {
			break
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			return nil, nil, errors.New("aws-chunked trailer line without ':'")
		}
		trailer.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%d bytes after the aws-chunked trailer", len(rest))
	}
	return out, trailer, nil
}
