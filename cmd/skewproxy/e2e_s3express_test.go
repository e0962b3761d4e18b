package main

// S3 Express One Zone through the built binary. The world's true time is
// the machine clock plus 20 minutes (chrony under faketime; the fake's
// clock and Date headers), more than the 15 minutes S3 allows: a request
// signed by the application on the host clock is refused, one the proxy
// signs is not. aws-sdk-go-v2's S3 client does CreateSession itself for a
// directory bucket and signs the data requests with the session it got.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

const expressE2EShift = 20 * time.Minute

// expressE2EHost is the endpoint host of a use1-az4 directory bucket.
func expressE2EHost(bucket string) string {
	return bucket + ".s3express-use1-az4.us-east-1.amazonaws.com"
}

// expressE2ESent records what the application sent to the proxy.
type expressE2ESent struct {
	next aws.HTTPClient
	mu   sync.Mutex
	hdrs map[string]http.Header // by "METHOD host path"
}

// Do implements aws.HTTPClient.
func (s *expressE2ESent) Do(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.hdrs[r.Method+" "+r.URL.Host+" "+r.URL.Path] = r.Header.Clone()
	s.mu.Unlock()
	return s.next.Do(r)
}

func (s *expressE2ESent) get(t *testing.T, method, host, path string) http.Header {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hdrs[method+" "+host+" "+path]
	if !ok {
		t.Fatalf("the application sent no %s %s%s", method, host, path)
	}
	return h
}

// expressE2EClient is an S3 client with placeholder keys going through p;
// express, when set, supplies the session instead of CreateSession.
func expressE2EClient(p *runningProxy, express s3.ExpressCredentialsProvider) (*s3.Client, *expressE2ESent) {
	cfg := p.awsConfig()
	sent := &expressE2ESent{next: cfg.HTTPClient, hdrs: map[string]http.Header{}}
	cfg.HTTPClient = sent
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if express != nil {
			o.ExpressCredentials = express
		}
	}), sent
}

// fixedSession is an S3 Express session the application got elsewhere.
type fixedSession struct{ s proxytest.ExpressSession }

func (f fixedSession) Retrieve(context.Context, string) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: f.s.AccessKeyID, SecretAccessKey: f.s.SecretAccessKey, SessionToken: f.s.Token,
		CanExpire: true, Expires: f.s.Expires}, nil
}

// expressE2EFind returns the fake's requests for op on host.
func expressE2EFind(fake *proxytest.S3Express, op, host string) []proxytest.ExpressRequest {
	var out []proxytest.ExpressRequest
	for _, r := range fake.Requests() {
		if r.Operation == op && r.Host == host {
			out = append(out, r)
		}
	}
	return out
}

// expressE2EAssertUntouched fails unless the fake received the
// application's own signature.
func expressE2EAssertUntouched(t *testing.T, got proxytest.ExpressRequest, sent http.Header) {
	t.Helper()
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-S3session-Token", "X-Amz-Content-Sha256"} {
		if got.Header.Get(h) != sent.Get(h) {
			t.Errorf("%s %s: %s changed on the way (the proxy re-signed a request it should pass through)", got.Method, got.Path, h)
		}
	}
	if got.Header.Get("X-Amz-Security-Token") != "" {
		t.Errorf("%s %s: the proxy added X-Amz-Security-Token", got.Method, got.Path)
	}
}

func TestExpressE2ESessionsThroughProxy(t *testing.T) {
	trueNow := func() time.Time { return time.Now().Add(expressE2EShift) }
	fake := proxytest.NewS3Express(t, proxytest.S3ExpressOptions{Credentials: proxyKeys, Now: trueNow})
	ntp := ntptest.StartShifted(t, expressE2EShift)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--time-source", "ntp://" + ntp,
			"--resolve", "*.s3express-use1-az4.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	p.waitReady(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The application's session signatures, made on the host clock, are
	// 20 minutes old on arrival: only the proxy's re-signing gets them in.
	t.Run("CreateSession and data requests signed by the proxy", func(t *testing.T) {
		bucket := "logs--use1-az4--x-s3"
		host := expressE2EHost(bucket)
		cl, sent := expressE2EClient(p, nil)
		small := "hello from a directory bucket"
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b c.txt"),
			Body: strings.NewReader(small), ContentType: aws.String("text/plain")}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		// A larger body from a reader the SDK cannot seek (it still sends
		// UNSIGNED-PAYLOAD with a CRC32 header over HTTPS).
		big := bytes.Repeat([]byte("0123456789abcdef"), 20<<10)
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("big.bin"),
			Body: io.MultiReader(bytes.NewReader(big)), ContentLength: aws.Int64(int64(len(big)))}); err != nil {
			t.Fatalf("PutObject (streamed): %v", err)
		}
		for key, want := range map[string][]byte{"a/b c.txt": []byte(small), "big.bin": big} {
			out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("GetObject %s: %v", key, err)
			}
			got, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("GetObject %s: %d bytes (%v), want %d", key, len(got), err, len(want))
			}
		}

		sessions := fake.Sessions()
		if len(sessions) != 1 {
			t.Fatalf("%d sessions created, want 1 (the SDK reuses its session)", len(sessions))
		}
		sess := sessions[0]
		cs := expressE2EFind(fake, "CreateSession", host)
		if len(cs) != 1 || cs[0].Verified == nil {
			t.Fatalf("CreateSession at the fake: %+v", cs)
		}
		if v := cs[0].Verified; v.AccessKeyID != proxyKeys.AccessKeyID || v.Service != "s3express" || v.Region != "us-east-1" {
			t.Errorf("CreateSession signed by %s for %s/%s, want the proxy's key for s3express/us-east-1", v.AccessKeyID, v.Service, v.Region)
		}
		if d := cs[0].Verified.SigningTime.Sub(cs[0].Time); d < -5*time.Second || d > 5*time.Second {
			t.Errorf("CreateSession signed %v from true time", d)
		}
		for _, op := range []string{"PutObject", "GetObject"} {
			reqs := expressE2EFind(fake, op, host)
			if len(reqs) != 2 {
				t.Fatalf("%d %s requests at the fake, want 2", len(reqs), op)
			}
			for _, r := range reqs {
				t.Logf("%s %s: payload %s", op, r.Path, r.Header.Get("X-Amz-Content-Sha256"))
				v := r.Verified
				if v == nil || !r.Session || r.Code != "" {
					t.Fatalf("%s %s refused: %s", op, r.Path, r.Code)
				}
				if v.AccessKeyID != sess.AccessKeyID || v.Service != "s3express" {
					t.Errorf("%s %s signed by %s under %s, want the session's key under s3express", op, r.Path, v.AccessKeyID, v.Service)
				}
				if r.Header.Get("X-Amz-Security-Token") != "" {
					t.Errorf("%s %s carries X-Amz-Security-Token", op, r.Path)
				}
				if d := v.SigningTime.Sub(r.Time); d < -5*time.Second || d > 5*time.Second {
					t.Errorf("%s %s signed %v from true time", op, r.Path, d)
				}
				app, err := time.Parse("20060102T150405Z", sent.get(t, r.Method, host, r.Path).Get("X-Amz-Date"))
				if err != nil || v.SigningTime.Sub(app) < expressE2EShift-5*time.Second {
					t.Errorf("%s %s: the application signed at %s, only %v before the proxy", op, r.Path, app, v.SigningTime.Sub(app))
				}
			}
		}
		logs := p.Logs()
		for _, secret := range []string{sess.Token, sess.SecretAccessKey, proxyKeys.SecretAccessKey} {
			if strings.Contains(logs, secret) {
				t.Error("the proxy's log holds a session token or secret key")
			}
		}
		if !strings.Contains(logs, "kept S3 Express session credentials") {
			t.Error("the debug log does not say the session was kept")
		}
	})

	t.Run("session unknown to the proxy passes through", func(t *testing.T) {
		bucket := "elsewhere--use1-az4--x-s3"
		host := expressE2EHost(bucket)
		sess := fake.NewSession(bucket)

		// Signed by the application on the host clock: the proxy cannot
		// help, and does not touch it.
		cl, sent := expressE2EClient(p, fixedSession{sess})
		_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("x")})
		if err == nil || !strings.Contains(err.Error(), "RequestTimeTooSkewed") {
			t.Errorf("PutObject with the host clock 20 minutes behind: %v, want RequestTimeTooSkewed", err)
		}
		puts := expressE2EFind(fake, "PutObject", host)
		if len(puts) != 1 {
			t.Fatalf("%d PutObject requests at the fake, want 1 (no retry of a passed-through request)", len(puts))
		}
		expressE2EAssertUntouched(t, puts[0], sent.get(t, "PUT", host, "/k"))

		// Signed by the application at true time: passed through, and good.
		for _, method := range []string{http.MethodPut, http.MethodGet} {
			body := io.Reader(nil)
			if method == http.MethodPut {
				body = strings.NewReader("made elsewhere")
			}
			req, _ := http.NewRequestWithContext(ctx, method, "https://"+host+"/own", body)
			req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			req.Header.Set("X-Amz-S3session-Token", sess.Token)
			creds := aws.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.SecretAccessKey}
			if err := v4.NewSigner().SignHTTP(ctx, creds, req, "UNSIGNED-PAYLOAD", "s3express", "us-east-1", trueNow(),
				func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
				t.Fatal(err)
			}
			want := req.Header.Clone()
			resp, err := p.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || method == http.MethodGet && string(got) != "made elsewhere" {
				t.Errorf("%s signed by the application at true time: %d %s", method, resp.StatusCode, got)
			}
			reqs := expressE2EFind(fake, map[string]string{http.MethodPut: "PutObject", http.MethodGet: "GetObject"}[method], host)
			expressE2EAssertUntouched(t, reqs[len(reqs)-1], want)
		}
	})

	t.Run("session expired by the corrected clock passes through", func(t *testing.T) {
		bucket := "short--use1-az4--x-s3"
		host := expressE2EHost(bucket)
		fake.SetSessionLifetime(3 * time.Second)
		defer fake.SetSessionLifetime(5 * time.Minute)
		cl, sent := expressE2EClient(p, nil)
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("short-lived")}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		var sess proxytest.ExpressSession
		for _, s := range fake.Sessions() {
			if s.Bucket == bucket {
				sess = s
			}
		}
		// The SDK judges the session by the host clock, 20 minutes
		// behind: it keeps using it. The proxy judges it by true time.
		time.Sleep(time.Until(sess.Expires.Add(-expressE2EShift)) + 500*time.Millisecond)
		_, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
		if err == nil || !strings.Contains(err.Error(), "ExpiredToken") {
			t.Errorf("GetObject after the session expired: %v, want ExpiredToken from the endpoint", err)
		}
		gets := expressE2EFind(fake, "GetObject", host)
		if len(gets) != 1 {
			t.Fatalf("%d GetObject requests at the fake, want 1", len(gets))
		}
		expressE2EAssertUntouched(t, gets[0], sent.get(t, "GET", host, "/k"))
		if !strings.Contains(p.Logs(), "S3 Express session expired or dropped") {
			t.Error("the debug log does not say the expired session's request passed through")
		}
		if strings.Contains(p.Logs(), sess.Token) || strings.Contains(p.Logs(), sess.SecretAccessKey) {
			t.Error("the proxy's log holds the session token or secret key")
		}
	})
}
