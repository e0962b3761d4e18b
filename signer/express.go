package signer

// S3 Express One Zone sessions.
//
// A directory bucket (bucket--AZID--x-s3) is reached at
// BUCKET.s3express-AZID.REGION.amazonaws.com. The client first calls
// CreateSession (GET /?session, signed as usual under the signing name
// s3express) and gets short-lived session credentials (5 minutes) back; it
// then signs every data request with those, under the signing name
// s3express, carrying the session token in x-amz-s3session-token instead
// of x-amz-security-token.
//
// The proxy signs CreateSession with its own credentials like any other
// request, and Prepared.ObserveAnswer keeps the session credentials of the
// answer in memory, keyed by the SHA-256 of the session token. A data
// request carrying a token the signer knows is re-signed at send time with
// that session's credentials; one carrying any other token (a session
// created elsewhere, or one dropped because it expired by the corrected
// clock) is passed through with the client's own signature, like a
// presigned request.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

const (
	// expressService is the signing name of S3 Express One Zone.
	expressService = "s3express"
	// expressTokenHeader carries an S3 Express session token.
	expressTokenHeader = "X-Amz-S3session-Token"
	// DefaultMaxExpressSessions is the default Options.MaxExpressSessions.
	DefaultMaxExpressSessions = 1024
	// maxCreateSessionAnswer bounds the CreateSession answer body that
	// ObserveAnswer reads (a real one is under 2 KiB).
	maxCreateSessionAnswer = 64 << 10
	// maxExpressLifetime bounds how long a session is kept, whatever
	// Expiration its answer states (S3 Express sessions last 5 minutes): a
	// broken or hostile answer cannot pin an entry for years.
	maxExpressLifetime = time.Hour
)

// sessionKey identifies a session by the SHA-256 of its token, so that the
// store holds no token.
type sessionKey [sha256.Size]byte

func sessionKeyOf(token string) sessionKey { return sha256.Sum256([]byte(token)) }

// expressSession is the part of a session's credentials the signer needs:
// the token itself travels in each request.
type expressSession struct {
	accessKeyID, secretAccessKey string
	expires                      time.Time // by the corrected clock
}

// expressSessions is the bounded, concurrency-safe store of S3 Express
// sessions a Signer owns. A session is dropped when a lookup finds it
// expired at the time it is asked about, and, when the store is full, the
// expired sessions and then the one that expires first make room.
type expressSessions struct {
	max    int
	forget func(secret string) // drops what else holds a dropped secret

	mu sync.Mutex
	m  map[sessionKey]expressSession
}

// known reports whether the store holds a session for k, expired or not
// (Prepare has no time; Sign judges expiry).
func (e *expressSessions) known(k sessionKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.m[k]
	return ok
}

// get returns the session for k when it is still valid at now; an expired
// one is dropped.
func (e *expressSessions) get(k sessionKey, now time.Time) (expressSession, bool) {
	e.mu.Lock()
	sess, ok := e.m[k]
	expired := ok && !now.Before(sess.expires)
	if expired {
		delete(e.m, k)
	}
	e.mu.Unlock()
	if expired {
		e.forget(sess.secretAccessKey)
		return expressSession{}, false
	}
	return sess, ok
}

// put stores sess under k, making room when the store is full.
func (e *expressSessions) put(k sessionKey, sess expressSession, now time.Time) (size int) {
	var dropped []string
	e.mu.Lock()
	if _, ok := e.m[k]; !ok && len(e.m) >= e.max {
		for key, s := range e.m {
			if !now.Before(s.expires) {
				delete(e.m, key)
				dropped = append(dropped, s.secretAccessKey)
			}
		}
		if len(e.m) >= e.max {
			var first sessionKey
			var firstExp time.Time
			for key, s := range e.m {
				if firstExp.IsZero() || s.expires.Before(firstExp) {
					first, firstExp = key, s.expires
				}
			}
			dropped = append(dropped, e.m[first].secretAccessKey)
			delete(e.m, first)
		}
	}
	e.m[k] = sess
	size = len(e.m)
	e.mu.Unlock()
	for _, s := range dropped {
		e.forget(s)
	}
	return size
}

// len is how many sessions the store holds, expired ones included.
func (e *expressSessions) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.m)
}

// newExpressSessions returns the store for Options.MaxExpressSessions, nil
// when sessions are not kept.
func newExpressSessions(max int, forget func(string)) *expressSessions {
	if max < 0 {
		return nil
	}
	if max == 0 {
		max = DefaultMaxExpressSessions
	}
	return &expressSessions{max: max, forget: forget, m: make(map[sessionKey]expressSession)}
}

// forget removes the derived keys of secret from the key cache: the
// session it belonged to is gone.
func (c *keyCache) forget(secret string) {
	if e := c.last.Load(); e != nil && e.id.secret == secret {
		c.last.CompareAndSwap(e, nil)
	}
	c.once.Do(c.init)
	for _, id := range c.cache.Keys() {
		if id.secret == secret {
			c.cache.Remove(id)
		}
	}
}

// expressPlan is set on a request carrying the token of a session the
// signer knows.
type expressPlan struct {
	key sessionKey
	// passThrough is the client's request as received (its signature
	// kept), sent instead when the session has gone by signing time.
	passThrough *http.Request
}

// isCreateSession reports whether req (already known to be for the
// s3express signing name) is an S3 Express CreateSession call:
// GET /?session.
func isCreateSession(req *http.Request) bool {
	if req.Method != http.MethodGet || (req.URL.Path != "" && req.URL.Path != "/") {
		return false
	}
	for raw := req.URL.RawQuery; raw != ""; {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if name, _, _ := strings.Cut(pair, "="); name == "session" {
			return true
		}
	}
	return false
}

// prepareExpress handles a request for the s3express signing name: it
// marks CreateSession calls and plans session signing for a known session
// token; for an unknown one it makes p a pass-through (passed).
func (s *Signer) prepareExpress(p *Prepared, req *http.Request, host string) (passed bool, err error) {
	tok := headerValues(req.Header, expressTokenHeader)
	if len(tok) == 0 {
		p.createSession = isCreateSession(req)
		return false, nil
	}
	if len(tok) == 1 && s.sessions != nil {
		key := sessionKeyOf(tok[0])
		if s.sessions.known(key) {
			p.st.express = &expressPlan{key: key, passThrough: outgoingTemplate(req, host)}
			return false, nil
		}
	}
	s.opts.Logger.Debug("S3 Express session unknown to the proxy: passing the request through with the client's signature",
		"host", host, "service", p.Service, "region", p.Region)
	return true, s.preparePassThrough(p, req, host)
}

// preparePassThrough makes p send req as the client signed it.
func (s *Signer) preparePassThrough(p *Prepared, req *http.Request, host string) error {
	b := &body{}
	if err := s.passthroughBody(req, b); err != nil {
		return err
	}
	tmpl := outgoingTemplate(req, host)
	p.PayloadHash = strings.TrimSpace(req.Header.Get("X-Amz-Content-Sha256"))
	// A re-send carries the same signature, so a skew retry cannot help.
	p.Replayable = false
	p.sign = func(ctx context.Context, _ time.Time) (*http.Request, error) {
		out := tmpl.Clone(ctx)
		if err := b.attach(out, b.reader); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil
}

// expressCredentials returns the credentials to sign a known session's
// request with at t: the session's keys without a token (the token is in
// x-amz-s3session-token, which is signed; x-amz-security-token is not
// sent). ok is false when the session has gone.
func (s *Signer) expressCredentials(plan *expressPlan, t time.Time) (aws.Credentials, bool) {
	sess, ok := s.sessions.get(plan.key, t)
	if !ok {
		return aws.Credentials{}, false
	}
	return aws.Credentials{AccessKeyID: sess.accessKeyID, SecretAccessKey: sess.secretAccessKey, Source: "S3 Express session"}, true
}

// signPassThrough returns the client's own request, for a session that
// expired (by the corrected clock) or was dropped after Prepare.
func (st *prepState) signPassThrough(ctx context.Context) (*http.Request, error) {
	st.s.opts.Logger.Debug("S3 Express session expired or dropped: passing the request through with the client's signature",
		"host", st.plan.host)
	out := st.express.passThrough.Clone(ctx)
	if err := st.body.attach(out, st.getBody); err != nil {
		return nil, err
	}
	return out, nil
}

// ObserveAnswer lets the signer learn from resp, the upstream answer to
// the request p was prepared from, which arrived at now (corrected time).
// Call it once per answer, before the answer goes on to the client; it is
// a no-op for a nil p or resp and for a Prepared not made by
// Signer.Prepare.
//
// Today it reads the 200 answer to an S3 Express CreateSession the proxy
// signed (at most 64 KiB), keeps the session credentials it holds until
// their Expiration (judged against the times later passed to Sign), and
// puts the same bytes back into resp.Body for the client. Requests that
// carry that session's x-amz-s3session-token are then signed with the
// session's credentials. An answer it cannot use is logged (never its
// contents) and left as it was.
func (p *Prepared) ObserveAnswer(resp *http.Response, now time.Time) {
	if p == nil || resp == nil || !p.createSession || p.st.s == nil || p.st.s.sessions == nil ||
		resp.StatusCode != http.StatusOK || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	s := p.st.s
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		s.opts.Logger.Warn("S3 Express CreateSession answer is compressed; its session is not kept (requests with it pass through)",
			"host", p.st.plan.host, "content_encoding", ce)
		return
	}
	data, rest, err := peekAll(resp.Body, maxCreateSessionAnswer)
	resp.Body = rest
	if err != nil {
		s.opts.Logger.Warn("S3 Express CreateSession answer unreadable; its session is not kept (requests with it pass through)",
			"host", p.st.plan.host, "err", err)
		return
	}
	token, sess, err := parseCreateSession(data, now)
	if err != nil {
		s.opts.Logger.Warn("S3 Express CreateSession answer not understood; its session is not kept (requests with it pass through)",
			"host", p.st.plan.host, "err", err)
		return
	}
	n := s.sessions.put(sessionKeyOf(token), sess, now)
	s.opts.Logger.Debug("kept S3 Express session credentials",
		"host", p.st.plan.host, "expires", sess.expires, "sessions", n)
}

// peekAll reads r up to max bytes and returns them with a body that gives
// the same bytes again followed by the rest of r. err is set when r failed
// or holds more than max bytes; the body then still gives everything r
// gives (the failure included).
func peekAll(r io.ReadCloser, max int64) ([]byte, io.ReadCloser, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	rest := &replayBody{Reader: io.MultiReader(bytes.NewReader(data), errAfter(r, err)), closer: r}
	switch {
	case err != nil:
		return nil, rest, fmt.Errorf("read CreateSession answer: %w", err)
	case int64(len(data)) > max:
		return nil, rest, fmt.Errorf("CreateSession answer longer than %d bytes", max)
	}
	return data, rest, nil
}

// errAfter is r, or a reader failing with err when err is set.
func errAfter(r io.Reader, err error) io.Reader {
	if err != nil {
		return errReader{err}
	}
	return r
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// replayBody is a response body read again from the start; Close closes
// the original.
type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }

// createSessionAnswer is the part of a CreateSession answer the signer
// reads: <CreateSessionResult><Credentials>...</Credentials></CreateSessionResult>.
type createSessionAnswer struct {
	Credentials struct {
		SessionToken    string `xml:"SessionToken"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		AccessKeyID     string `xml:"AccessKeyId"`
		Expiration      string `xml:"Expiration"`
	} `xml:"Credentials"`
}

// parseCreateSession reads the session token and credentials of a
// CreateSession answer received at now. Errors never quote the answer.
func parseCreateSession(data []byte, now time.Time) (token string, sess expressSession, err error) {
	var a createSessionAnswer
	if err := xml.Unmarshal(data, &a); err != nil {
		// Not wrapped: a syntax error may quote a fragment of the answer.
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return "", expressSession{}, fmt.Errorf("parse CreateSession answer: XML syntax error on line %d", se.Line)
		}
		return "", expressSession{}, errors.New("parse CreateSession answer: not the expected XML")
	}
	c := &a.Credentials
	token, akid, secret := strings.TrimSpace(c.SessionToken), strings.TrimSpace(c.AccessKeyID), strings.TrimSpace(c.SecretAccessKey)
	switch {
	case token == "" || akid == "" || secret == "":
		return "", expressSession{}, errors.New("CreateSession answer lacks a session token, access key id or secret key")
	case !isHeaderSafe(token) || !isHeaderSafe(akid) || !isHeaderSafe(secret):
		return "", expressSession{}, errors.New("CreateSession answer holds credentials with control or non-ASCII characters")
	}
	exp, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(c.Expiration))
	if err != nil {
		return "", expressSession{}, errors.New("CreateSession answer has no RFC 3339 Expiration")
	}
	if !exp.After(now) {
		return "", expressSession{}, fmt.Errorf("CreateSession answer expired at %s, before it arrived (%s)",
			exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if limit := now.Add(maxExpressLifetime); exp.After(limit) {
		exp = limit
	}
	return token, expressSession{accessKeyID: akid, secretAccessKey: secret, expires: exp}, nil
}

// isHeaderSafe reports whether v holds only printable ASCII (what a
// session token, key id and secret key are made of).
func isHeaderSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
