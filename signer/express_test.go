package signer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// S3 Express session credentials as a CreateSession answer hands them out.
const (
	expressAKID   = "ASIAEXPRESSSESSION01"
	expressSecret = "express/session+secret/EXAMPLEexpress00"
	expressToken  = "AgAAAEXAMPLEexpressSessionToken/+base64==AAAA"
	expressBucket = "logs--use1-az4--x-s3"
	expressHost   = expressBucket + ".s3express-use1-az4.us-east-1.amazonaws.com"
)

// createSessionXML is a CreateSession answer body for the session above.
func createSessionXML(token, akid, secret string, expires time.Time) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<CreateSessionResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Credentials>` +
		`<SessionToken>` + token + `</SessionToken><SecretAccessKey>` + secret + `</SecretAccessKey>` +
		`<AccessKeyId>` + akid + `</AccessKeyId><Expiration>` + expires.UTC().Format(time.RFC3339) + `</Expiration>` +
		`</Credentials></CreateSessionResult>`
}

func xmlAnswer(body string) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/xml"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

func TestExpressScopeFromHost(t *testing.T) {
	cases := []struct {
		host string
		want Scope
	}{
		{expressHost, Scope{Service: "s3express", Region: "us-east-1", S3: true, Bucket: expressBucket}},
		{expressHost + ":443", Scope{Service: "s3express", Region: "us-east-1", S3: true, Bucket: expressBucket}},
		{"b--usw2-az1--x-s3.s3express-fips-usw2-az1.us-west-2.amazonaws.com", Scope{Service: "s3express", Region: "us-west-2", S3: true, Bucket: "b--usw2-az1--x-s3"}},
		{"s3express-control.eu-north-1.amazonaws.com", Scope{Service: "s3express", Region: "eu-north-1", S3: true}},
		{"s3express-use1-az4.us-east-1.amazonaws.com", Scope{Service: "s3express", Region: "us-east-1", S3: true}},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			got, err := ScopeFromHost(tc.host)
			if err != nil || got != tc.want {
				t.Fatalf("ScopeFromHost = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestExpressParseCreateSession(t *testing.T) {
	now := signAt
	exp := now.Add(5 * time.Minute)
	ok := createSessionXML(expressToken, expressAKID, expressSecret, exp)
	cases := []struct {
		name    string
		body    string
		wantErr bool
		wantExp time.Time
	}{
		{"answer as S3 sends it", ok, false, exp},
		{"fractional seconds, no declaration, no namespace",
			`<CreateSessionResult><Credentials><SessionToken>` + expressToken + `</SessionToken><SecretAccessKey>` + expressSecret +
				`</SecretAccessKey><AccessKeyId>` + expressAKID + `</AccessKeyId><Expiration>` + exp.Format("2006-01-02T15:04:05.000Z") +
				`</Expiration></Credentials></CreateSessionResult>`, false, exp},
		{"whitespace around values", strings.ReplaceAll(ok, "<SessionToken>", "<SessionToken>\n  "), false, exp},
		{"lifetime capped at an hour", createSessionXML(expressToken, expressAKID, expressSecret, now.Add(365*24*time.Hour)), false, now.Add(time.Hour)},
		{"expired before it arrived", createSessionXML(expressToken, expressAKID, expressSecret, now.Add(-time.Second)), true, time.Time{}},
		{"expires exactly on arrival", createSessionXML(expressToken, expressAKID, expressSecret, now), true, time.Time{}},
		{"no token", createSessionXML("", expressAKID, expressSecret, exp), true, time.Time{}},
		{"no access key id", createSessionXML(expressToken, "", expressSecret, exp), true, time.Time{}},
		{"no secret", createSessionXML(expressToken, expressAKID, "", exp), true, time.Time{}},
		{"no expiration", strings.Replace(ok, "<Expiration>", "<Expired>", 1), true, time.Time{}},
		{"expiration not RFC 3339", strings.Replace(ok, exp.UTC().Format(time.RFC3339), exp.Format(time.RFC1123), 1), true, time.Time{}},
		{"control character in the secret", createSessionXML(expressToken, expressAKID, "se&#10;cret", exp), true, time.Time{}},
		{"not XML", "<CreateSessionResult><Credentials><SessionToken>" + expressToken, true, time.Time{}},
		{"an error document", `<Error><Code>AccessDenied</Code><Message>` + expressSecret + `</Message></Error>`, true, time.Time{}},
		{"empty", "", true, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, sess, err := parseCreateSession([]byte(tc.body), now)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", sess)
				}
				for _, secret := range []string{expressToken, expressSecret} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q quotes a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok != expressToken || sess.accessKeyID != expressAKID || sess.secretAccessKey != expressSecret || !sess.expires.Equal(tc.wantExp) {
				t.Errorf("parsed %q %+v, want the session expiring %s", tok, sess, tc.wantExp)
			}
		})
	}
}

// expressFlow is an S3 client's traffic to a directory bucket as the proxy
// receives it: the CreateSession call (signed with the client's keys) and
// the data requests (signed with the session's), captured from the real
// aws-sdk-go-v2 S3 client.
type expressFlow struct {
	createSession []byte // wire bytes
	answer        string // the CreateSession answer body
	data          map[string][]byte
}

func captureExpressFlow(t *testing.T, sessionExpires time.Time) expressFlow {
	t.Helper()
	answer := createSessionXML(expressToken, expressAKID, expressSecret, sessionExpires)
	c := &capture{answer: func(r *http.Request) *http.Response {
		if r.URL.Query().Has("session") {
			return canned(200, "application/xml", answer)(r)
		}
		return canned(200, "application/octet-stream", "")(r)
	}}
	cl := s3.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(clientAKID, clientSecret, ""),
		HTTPClient:  c,
	})
	ctx := context.Background()
	f := expressFlow{answer: answer, data: map[string][]byte{}}
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(expressBucket), Key: aws.String("a b/c+d.txt"),
		Body: strings.NewReader("hello express"), ContentType: aws.String("text/plain")}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	f.data["PutObject"] = c.last(t)
	f.createSession = c.wire[0]
	if _, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(expressBucket), Key: aws.String("a b/c+d.txt")}); err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	f.data["GetObject"] = c.last(t)
	if n := len(c.wire); n != 3 {
		t.Fatalf("the SDK sent %d requests, want CreateSession, PutObject, GetObject", n)
	}
	return f
}

// observeSession signs the captured CreateSession with s and hands s its
// answer at now, as the proxy does.
func observeSession(t *testing.T, s *Signer, f expressFlow, now time.Time) *http.Request {
	t.Helper()
	p, err := s.Prepare(asProxySees(t, f.createSession))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Sign(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	resp := xmlAnswer(f.answer)
	p.ObserveAnswer(resp, now)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != f.answer {
		t.Fatalf("the client would read %q (%v), want the answer unchanged", body, err)
	}
	return out
}

// TestExpressSessionSigning follows a real SDK client's directory bucket
// traffic through Prepare and Sign: CreateSession is signed with the
// proxy's keys, the data requests with the session's until it expires by
// the signing time, and then they go out as the client signed them.
func TestExpressSessionSigning(t *testing.T) {
	at := signAt
	// The SDK judges the session's expiry by the host clock: it must be
	// in the future there. The signer judges it by the times passed in.
	sdkExpiry := time.Now().Add(time.Hour)
	f := captureExpressFlow(t, sdkExpiry)
	expires := at.Add(5 * time.Minute)
	f.answer = createSessionXML(expressToken, expressAKID, expressSecret, expires)

	var logs bytes.Buffer
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken),
		Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	cs := observeSession(t, s, f, at)
	verifyAuthorization(t, cs, proxySecret, true)
	a, _ := ParseAuthorization(cs.Header.Get("Authorization"))
	if a.AccessKeyID != proxyAKID || a.Service != "s3express" || a.Region != "us-east-1" {
		t.Errorf("CreateSession signed as %s %s/%s, want the proxy's key under s3express/us-east-1", a.AccessKeyID, a.Service, a.Region)
	}
	if got := cs.Header.Get("X-Amz-Security-Token"); got != proxyToken {
		t.Errorf("CreateSession X-Amz-Security-Token = %q, want the proxy's", got)
	}
	if s.sessions.len() != 1 {
		t.Fatalf("%d sessions kept, want 1", s.sessions.len())
	}

	for _, op := range []string{"PutObject", "GetObject"} {
		t.Run(op, func(t *testing.T) {
			client := asProxySees(t, f.data[op])
			if client.Header.Get("X-Amz-S3session-Token") != expressToken {
				t.Fatalf("the SDK did not send the session token: %v", client.Header)
			}
			verifyAuthorization(t, client, expressSecret, true) // the checker agrees with the SDK

			sendAt := at.Add(4 * time.Minute)
			p, err := s.Prepare(asProxySees(t, f.data[op]))
			if err != nil {
				t.Fatal(err)
			}
			if p.Service != "s3express" || p.ClientAuth == nil || p.ClientAuth.AccessKeyID != expressAKID {
				t.Errorf("prepared %s with client key %v", p.Service, p.ClientAuth)
			}
			out, err := p.Sign(context.Background(), sendAt)
			if err != nil {
				t.Fatal(err)
			}
			verifyAuthorization(t, out, expressSecret, true)
			a, _ := ParseAuthorization(out.Header.Get("Authorization"))
			if a.AccessKeyID != expressAKID || a.Service != "s3express" {
				t.Errorf("signed with %s under %s, want the session's key under s3express", a.AccessKeyID, a.Service)
			}
			if !contains(a.SignedHeaders, "x-amz-s3session-token") {
				t.Errorf("x-amz-s3session-token not signed: %v", a.SignedHeaders)
			}
			if got := out.Header.Values("X-Amz-S3session-Token"); len(got) != 1 || got[0] != expressToken {
				t.Errorf("X-Amz-S3session-Token = %q", got)
			}
			if v, ok := out.Header["X-Amz-Security-Token"]; ok || contains(a.SignedHeaders, "x-amz-security-token") {
				t.Errorf("X-Amz-Security-Token sent (%q) or signed: S3 Express data requests carry none", v)
			}
			if got := out.Header.Get("X-Amz-Date"); got != sendAt.Format("20060102T150405Z") {
				t.Errorf("X-Amz-Date = %s, want the signing time", got)
			}
			if op == "PutObject" && p.Replayable {
				// A replay signs again with the session's credentials.
				again, err := p.Sign(context.Background(), sendAt.Add(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				verifyAuthorization(t, again, expressSecret, true)
			}

			// The fast signer and the SDK signer agree on it.
			sdkS := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken), Options{UseSDKSigner: true})
			observeSession(t, sdkS, f, at)
			ps, err := sdkS.Prepare(asProxySees(t, f.data[op]))
			if err != nil {
				t.Fatal(err)
			}
			outSDK, err := ps.Sign(context.Background(), sendAt)
			if err != nil {
				t.Fatal(err)
			}
			pf, _ := s.Prepare(asProxySees(t, f.data[op]))
			of, err := pf.Sign(context.Background(), sendAt)
			if err != nil {
				t.Fatal(err)
			}
			if pf.st.plan.sdkOnly {
				t.Error("the fast signer did not sign an S3 Express request")
			}
			if wf, ws := wireForm(t, of), wireForm(t, outSDK); wf != ws {
				t.Errorf("fast and SDK signers disagree\nfast:\n%s\nsdk:\n%s", wf, ws)
			}
		})
	}

	// Prepared while the session was valid, sent once it expired: the
	// client's own request goes out, and the session is dropped.
	p, err := s.Prepare(asProxySees(t, f.data["PutObject"]))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Sign(context.Background(), expires)
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, asProxySees(t, f.data["PutObject"]), out)
	if n := s.sessions.len(); n != 0 {
		t.Errorf("%d sessions kept after expiry, want 0", n)
	}
	for _, id := range s.keys.cache.Keys() {
		if id.secret == expressSecret {
			t.Errorf("the key cache still holds a key of the expired session (%s)", id.date[:])
		}
	}
	// Prepared after it was dropped: passed through from the start.
	p, err = s.Prepare(asProxySees(t, f.data["GetObject"]))
	if err != nil {
		t.Fatal(err)
	}
	if p.Replayable {
		t.Error("a passed-through request is Replayable: a re-send would carry the same signature")
	}
	out, err = p.Sign(context.Background(), expires.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, asProxySees(t, f.data["GetObject"]), out)

	for _, secret := range []string{expressToken, expressSecret, proxySecret, proxyToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the debug log holds a secret:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "kept S3 Express session credentials") || !strings.Contains(logs.String(), "expired or dropped") {
		t.Errorf("the debug log does not tell the session's story:\n%s", logs.String())
	}
}

// TestExpressSignedChunkedBody: an aws-chunked body signed chunk by chunk
// is re-signed with the session's key, as an independent verifier checks.
func TestExpressSignedChunkedBody(t *testing.T) {
	at := signAt
	data := bytes.Repeat([]byte("directory bucket "), 9000)
	body := chunkedBody(data, 64<<10, dummySig, nil, "")
	req := newServerRequest("PUT", "https://"+expressHost+"/big.bin", string(body), map[string]string{
		"Host": expressHost, "X-Amz-Date": "20300101T000000Z", "X-Amz-S3session-Token": expressToken,
		"X-Amz-Content-Sha256": string(StreamingSigned), "Content-Encoding": "aws-chunked",
		"X-Amz-Decoded-Content-Length": fmt.Sprint(len(data)),
		"Authorization": clientAuthz("s3express", "us-east-1", "content-encoding", "content-length", "host",
			"x-amz-content-sha256", "x-amz-date", "x-amz-decoded-content-length", "x-amz-s3session-token"),
	})
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken), Options{})
	s.sessions.put(sessionKeyOf(expressToken), expressSession{accessKeyID: expressAKID, secretAccessKey: expressSecret, expires: at.Add(5 * time.Minute)}, at)
	p, err := s.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Sign(context.Background(), at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if err := out.Write(&wire); err != nil {
		t.Fatal(err)
	}
	srv := asProxySees(t, wire.Bytes())
	got, err := io.ReadAll(srv.Body)
	if err != nil {
		t.Fatal(err)
	}
	creds := proxytest.Credentials{AccessKeyID: expressAKID, SecretAccessKey: expressSecret}
	v, err := proxytest.Verify(srv, got, creds, at.Add(time.Minute), 15*time.Minute)
	if err != nil {
		t.Fatalf("headers: %v", err)
	}
	if v.Service != "s3express" || v.SessionToken || !contains(v.SignedHeaders, "x-amz-s3session-token") {
		t.Errorf("verified %+v: want s3express, the session token header signed, no x-amz-security-token", v)
	}
	decoded, err := proxytest.VerifyChunked(got, v, creds)
	if err != nil {
		t.Fatalf("chunks: %v", err)
	}
	if !bytes.Equal(decoded, data) {
		t.Errorf("decoded %d bytes, want %d", len(decoded), len(data))
	}
}

// assertUntouched fails unless out is client as received: same method,
// URL, headers (its own signature) and body.
func assertUntouched(t *testing.T, client, out *http.Request) {
	t.Helper()
	if out.Method != client.Method || out.URL.RequestURI() != client.URL.RequestURI() || out.Host != client.Host {
		t.Errorf("sent %s %s (host %s), client sent %s %s (host %s)", out.Method, out.URL.RequestURI(), out.Host,
			client.Method, client.URL.RequestURI(), client.Host)
	}
	if wo, wc := headerForm(out.Header), headerForm(client.Header); wo != wc {
		t.Errorf("headers changed\nsent:\n%s\nclient:\n%s", wo, wc)
	}
	var ob, cb []byte
	if out.Body != nil {
		ob, _ = io.ReadAll(out.Body)
	}
	if client.Body != nil {
		cb, _ = io.ReadAll(client.Body)
	}
	if !bytes.Equal(ob, cb) {
		t.Errorf("body changed: %q -> %q", cb, ob)
	}
}

func headerForm(h http.Header) string {
	var b strings.Builder
	for _, k := range sortedKeys(h) {
		fmt.Fprintf(&b, "%s: %q\n", k, h[k])
	}
	return b.String()
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// TestExpressUnknownSessionPassesThrough: a session token the signer does
// not hold (made elsewhere, sent twice, or with sessions not kept) leaves
// the request as the client signed it.
func TestExpressUnknownSessionPassesThrough(t *testing.T) {
	at := signAt
	f := captureExpressFlow(t, time.Now().Add(time.Hour))
	f.answer = createSessionXML(expressToken, expressAKID, expressSecret, at.Add(5*time.Minute))
	twoTokens := bytes.Replace(f.data["PutObject"], []byte("X-Amz-S3session-Token: "),
		[]byte("X-Amz-S3session-Token: other\r\nX-Amz-S3session-Token: "), 1)
	cases := []struct {
		name    string
		opts    Options
		observe bool // the session was created through this signer
		wire    []byte
	}{
		{"session created elsewhere (PutObject)", Options{}, false, f.data["PutObject"]},
		{"session created elsewhere (GetObject)", Options{}, false, f.data["GetObject"]},
		{"token sent twice", Options{}, true, twoTokens},
		{"sessions not kept", Options{MaxExpressSessions: -1}, true, f.data["PutObject"]},
		{"sessions not kept, fast path off", Options{MaxExpressSessions: -1, UseSDKSigner: true}, true, f.data["GetObject"]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken), tc.opts)
			if tc.observe {
				observeSession(t, s, f, at)
			}
			p, err := s.Prepare(asProxySees(t, tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if p.Service != "s3express" || p.Region != "us-east-1" || p.ClientAuth == nil || p.ClientTime.IsZero() || p.Replayable {
				t.Errorf("prepared %+v: want the client's scope, key and time, not replayable", p)
			}
			for i := 0; i < 2; i++ { // Sign may be called again (a body buffered)
				out, err := p.Sign(context.Background(), at.Add(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				assertUntouched(t, asProxySees(t, tc.wire), out)
			}
		})
	}
}

// TestExpressObserveAnswer: only a 200 answer to a CreateSession the proxy
// signed is read, and the client always gets the answer's bytes.
func TestExpressObserveAnswer(t *testing.T) {
	at := signAt
	good := createSessionXML(expressToken, expressAKID, expressSecret, at.Add(5*time.Minute))
	createSession := func() *http.Request {
		return newServerRequest("GET", "https://"+expressHost+"/?session", "", map[string]string{
			"Host": expressHost, "X-Amz-Content-Sha256": emptySHA256, "X-Amz-Create-Session-Mode": "ReadWrite",
			"Authorization": clientAuthz("s3express", "us-east-1", "host", "x-amz-content-sha256", "x-amz-create-session-mode", "x-amz-date"),
			"X-Amz-Date":    "20300101T000000Z",
		})
	}
	readErr := errors.New("connection reset")
	big := strings.Replace(good, "</CreateSessionResult>", strings.Repeat(" ", maxCreateSessionAnswer)+"</CreateSessionResult>", 1)
	cases := []struct {
		name      string
		req       func() *http.Request
		resp      func() *http.Response
		wantKept  bool
		wantBody  string
		wantError error
	}{
		{"CreateSession answer", createSession, func() *http.Response { return xmlAnswer(good) }, true, good, nil},
		{"unsigned CreateSession", func() *http.Request {
			r := createSession()
			r.Header.Del("Authorization")
			return r
		}, func() *http.Response { return xmlAnswer(good) }, true, good, nil},
		{"CreateSession refused", createSession, func() *http.Response {
			r := xmlAnswer(good)
			r.StatusCode = http.StatusForbidden
			return r
		}, false, good, nil},
		{"not CreateSession (an object named like it)", func() *http.Request {
			r := createSession()
			r.URL.Path = "/session"
			r.URL.RawQuery = ""
			return r
		}, func() *http.Response { return xmlAnswer(good) }, false, good, nil},
		{"CreateSession on another service's host", func() *http.Request {
			r := createSession()
			r.Host = "s3.us-east-1.amazonaws.com"
			r.Header.Set("Authorization", clientAuthz("s3", "us-east-1", "host", "x-amz-content-sha256", "x-amz-date"))
			return r
		}, func() *http.Response { return xmlAnswer(good) }, false, good, nil},
		{"answer over 64 KiB", createSession, func() *http.Response { return xmlAnswer(big) }, false, big, nil},
		{"compressed answer", createSession, func() *http.Response {
			r := xmlAnswer(good)
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}, false, good, nil},
		{"answer cut short", createSession, func() *http.Response {
			r := xmlAnswer(good)
			r.Body = io.NopCloser(io.MultiReader(strings.NewReader(good[:40]), errReader{readErr}))
			return r
		}, false, good[:40], readErr},
		{"no body", createSession, func() *http.Response {
			r := xmlAnswer("")
			r.Body = http.NoBody
			return r
		}, false, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""),
				Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			p, err := s.Prepare(tc.req())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Sign(context.Background(), at); err != nil {
				t.Fatal(err)
			}
			resp := tc.resp()
			p.ObserveAnswer(resp, at.Add(time.Second))
			body, err := io.ReadAll(resp.Body)
			if string(body) != tc.wantBody || !errors.Is(err, tc.wantError) {
				t.Errorf("the client reads %d bytes (%v), want %d bytes (%v)", len(body), err, len(tc.wantBody), tc.wantError)
			}
			if kept := s.sessions.len() == 1; kept != tc.wantKept {
				t.Errorf("session kept: %v, want %v", kept, tc.wantKept)
			}
			if strings.Contains(logs.String(), expressSecret) || strings.Contains(logs.String(), expressToken) {
				t.Errorf("log holds a secret:\n%s", logs.String())
			}
		})
	}

	// Prepared values that are not the signer's own: no panic, no read.
	var nilPrep *Prepared
	nilPrep.ObserveAnswer(xmlAnswer(good), at)
	(&Prepared{}).ObserveAnswer(xmlAnswer(good), at)
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{})
	p, err := s.Prepare(createSession())
	if err != nil {
		t.Fatal(err)
	}
	p.ObserveAnswer(nil, at)
}

// TestExpressSessionStoreBounded: a full store drops expired sessions
// first, then the one that expires first; lookups drop what has expired.
func TestExpressSessionStoreBounded(t *testing.T) {
	now := signAt
	var forgotten []string
	st := newExpressSessions(3, func(secret string) { forgotten = append(forgotten, secret) })
	sess := func(name string, life time.Duration) expressSession {
		return expressSession{accessKeyID: "AKID" + name, secretAccessKey: "secret-" + name, expires: now.Add(life)}
	}
	st.put(sessionKeyOf("a"), sess("a", 5*time.Minute), now)
	st.put(sessionKeyOf("b"), sess("b", 2*time.Minute), now)
	st.put(sessionKeyOf("c"), sess("c", 4*time.Minute), now)
	if n := st.put(sessionKeyOf("d"), sess("d", 5*time.Minute), now); n != 3 {
		t.Fatalf("store holds %d, want 3", n)
	}
	if st.known(sessionKeyOf("b")) || !st.known(sessionKeyOf("a")) || !st.known(sessionKeyOf("c")) {
		t.Errorf("full store dropped the wrong session (want b, the first to expire); forgot %v", forgotten)
	}
	// At now+4m, c has expired: it makes room, and a and d stay.
	later := now.Add(4 * time.Minute)
	st.put(sessionKeyOf("e"), sess("e", 10*time.Minute), later)
	for _, k := range []string{"a", "d", "e"} {
		if _, ok := st.get(sessionKeyOf(k), later); !ok {
			t.Errorf("session %s gone", k)
		}
	}
	if st.known(sessionKeyOf("c")) {
		t.Error("expired session c still kept")
	}
	// Replacing a kept session does not evict another.
	st.put(sessionKeyOf("a"), sess("a2", 5*time.Minute), later)
	if st.len() != 3 {
		t.Errorf("store holds %d after a replace, want 3", st.len())
	}
	if got, _ := st.get(sessionKeyOf("a"), later); got.accessKeyID != "AKIDa2" {
		t.Errorf("replaced session reads %+v", got)
	}
	if _, ok := st.get(sessionKeyOf("d"), now.Add(5*time.Minute)); ok {
		t.Error("session d valid at its expiry")
	}
	if st.known(sessionKeyOf("d")) {
		t.Error("a lookup at expiry did not drop session d")
	}
	if want := "secret-b secret-c secret-d"; strings.Join(forgotten, " ") != want {
		t.Errorf("forgot %v, want %s", forgotten, want)
	}
	if newExpressSessions(-1, nil) != nil || newExpressSessions(0, nil).max != DefaultMaxExpressSessions {
		t.Error("MaxExpressSessions: negative keeps none, 0 is the default")
	}
}

// TestExpressConcurrentSessions runs CreateSession answers, session-signed
// requests and expiries at once (run with -race).
func TestExpressConcurrentSessions(t *testing.T) {
	at := signAt
	s := New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, ""), Options{MaxExpressSessions: 8})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				tok := fmt.Sprintf("token-%d-%d", g, i%12)
				secret := fmt.Sprintf("secret-%d-%d", g, i%12)
				cs, err := s.Prepare(newServerRequest("GET", "https://"+expressHost+"/?session", "", map[string]string{"Host": expressHost}))
				if err != nil {
					t.Error(err)
					return
				}
				now := at.Add(time.Duration(i) * time.Second)
				cs.ObserveAnswer(xmlAnswer(createSessionXML(tok, "ASIA"+tok, secret, now.Add(10*time.Second))), now)
				p, err := s.Prepare(newServerRequest("GET", "https://"+expressHost+"/k", "", map[string]string{
					"Host": expressHost, "X-Amz-S3session-Token": tok, "X-Amz-Content-Sha256": emptySHA256}))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := p.Sign(context.Background(), now.Add(time.Duration(i%3)*5*time.Second)); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if n := s.sessions.len(); n > 8 {
		t.Errorf("store holds %d sessions, bound 8", n)
	}
}

// FuzzExpressParseCreateSession: any answer parses to a usable session or
// an error that quotes none of it, and never panics.
func FuzzExpressParseCreateSession(f *testing.F) {
	now := signAt
	f.Add(createSessionXML(expressToken, expressAKID, expressSecret, now.Add(5*time.Minute)))
	f.Add(createSessionXML(expressToken, expressAKID, expressSecret, now.Add(-5*time.Minute)))
	f.Add(`<CreateSessionResult><Credentials><SessionToken>t</SessionToken></Credentials></CreateSessionResult>`)
	f.Add(`<a><Credentials><SessionToken>&lt;x</SessionToken><AccessKeyId>k</AccessKeyId><SecretAccessKey>s</SecretAccessKey><Expiration>2031-07-08T09:15:11.5+02:00</Expiration></Credentials></a>`)
	f.Add(`<?xml version="1.0" encoding="ISO-8859-1"?><x/>`)
	f.Fuzz(func(t *testing.T, body string) {
		tok, sess, err := parseCreateSession([]byte(body), now)
		if err != nil {
			return
		}
		if tok == "" || sess.accessKeyID == "" || sess.secretAccessKey == "" ||
			!isHeaderSafe(tok) || !isHeaderSafe(sess.accessKeyID) || !isHeaderSafe(sess.secretAccessKey) {
			t.Fatalf("parsed unusable credentials %q %+v", tok, sess)
		}
		if !sess.expires.After(now) || sess.expires.After(now.Add(maxExpressLifetime)) {
			t.Fatalf("session expires %s, outside (now, now+%s]", sess.expires, maxExpressLifetime)
		}
	})
}

// The proxy signs CreateSession with its own keys, hands the answer to
// ObserveAnswer, and then signs requests carrying the session's token with
// the session's keys.
func ExamplePrepared_ObserveAnswer() {
	s := New(credentials.NewStaticCredentialsProvider("AKIDPROXY", "proxy-secret", ""), Options{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	host := "logs--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com"

	cs, _ := http.NewRequest(http.MethodGet, "https://"+host+"/?session", nil)
	p, _ := s.Prepare(cs)
	out, _ := p.Sign(context.Background(), now)
	a, _ := ParseAuthorization(out.Header.Get("Authorization"))
	fmt.Println("CreateSession signed by", a.AccessKeyID, "for", a.Service)

	answer := `<CreateSessionResult><Credentials><SessionToken>session-token</SessionToken>` +
		`<SecretAccessKey>session-secret</SecretAccessKey><AccessKeyId>ASIASESSION</AccessKeyId>` +
		`<Expiration>2030-01-02T03:09:05Z</Expiration></Credentials></CreateSessionResult>`
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(answer))}
	p.ObserveAnswer(resp, now.Add(100*time.Millisecond))

	get, _ := http.NewRequest(http.MethodGet, "https://"+host+"/key", nil)
	get.Header.Set("X-Amz-S3session-Token", "session-token")
	p, _ = s.Prepare(get)
	out, _ = p.Sign(context.Background(), now.Add(time.Minute))
	a, _ = ParseAuthorization(out.Header.Get("Authorization"))
	fmt.Println("GetObject signed by", a.AccessKeyID, "for", a.Service, "signing", strings.Join(a.SignedHeaders, ";"))
	// Output:
	// CreateSession signed by AKIDPROXY for s3express
	// GetObject signed by ASIASESSION for s3express signing host;x-amz-content-sha256;x-amz-date;x-amz-s3session-token
}
