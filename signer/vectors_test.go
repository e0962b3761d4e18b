package signer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/logging"
)

// vectorDir holds the aws-c-auth SigV4 suite (copied from /work/shared).
var vectorDir = filepath.Join("testdata", "aws-signing-test-suite", "v4")

type vectorContext struct {
	Credentials struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
		Token           string `json:"token"`
	} `json:"credentials"`
	Expiration       int64  `json:"expiration_in_seconds"`
	Normalize        bool   `json:"normalize"`
	Region           string `json:"region"`
	Service          string `json:"service"`
	SignBody         bool   `json:"sign_body"`
	Timestamp        string `json:"timestamp"`
	OmitSessionToken bool   `json:"omit_session_token"`
}

type vectorCase struct {
	name string
	ctx  vectorContext
	time time.Time
	req  vectorRequest
	dir  string
}

func (c vectorCase) file(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(b), "\n")
}

func (c vectorCase) creds() aws.Credentials {
	return aws.Credentials{AccessKeyID: c.ctx.Credentials.AccessKeyID, SecretAccessKey: c.ctx.Credentials.SecretAccessKey, SessionToken: c.ctx.Credentials.Token}
}

func (c vectorCase) payloadHash() string {
	sum := sha256.Sum256([]byte(c.req.Body))
	return hex.EncodeToString(sum[:])
}

func loadVectors(t *testing.T) []vectorCase {
	t.Helper()
	entries, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	var cases []vectorCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := vectorCase{name: e.Name(), dir: filepath.Join(vectorDir, e.Name())}
		raw, err := os.ReadFile(filepath.Join(c.dir, "context.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &c.ctx); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.time, err = time.Parse(time.RFC3339, c.ctx.Timestamp); err != nil {
			t.Fatal(err)
		}
		c.req = parseVectorRequest(t, c.file(t, "request.txt"))
		cases = append(cases, c)
	}
	if len(cases) < 30 {
		t.Fatalf("only %d vector cases found in %s", len(cases), vectorDir)
	}
	return cases
}

// signingLog captures the canonical request and string to sign the aws
// signer logs with LogSigning.
type signingLog struct{ canonical, stringToSign string }

func (l *signingLog) logger() logging.Logger {
	return logging.LoggerFunc(func(_ logging.Classification, format string, v ...interface{}) {
		msg := fmt.Sprintf(format, v...)
		const c1 = "---[ CANONICAL STRING  ]-----------------------------\n"
		const c2 = "\n---[ STRING TO SIGN ]--------------------------------\n"
		i, j := strings.Index(msg, c1), strings.Index(msg, c2)
		if i < 0 || j < 0 {
			return
		}
		l.canonical = msg[i+len(c1) : j]
		rest := msg[j+len(c2):]
		if k := strings.Index(rest, "\n---"); k >= 0 {
			rest = rest[:k]
		}
		l.stringToSign = rest
	})
}

// sdkRequest builds the request the aws signer is handed for a vector:
// the raw path goes in URL.Opaque (it may hold spaces or raw UTF-8), and
// for normalize=true vectors it is normalised the way Sign does it.
func (c vectorCase) sdkRequest(query string) *http.Request {
	p := c.req.Path
	if c.ctx.Normalize {
		p = normalizePath(p)
	}
	r := &http.Request{
		Method: c.req.Method,
		URL:    &url.URL{Scheme: "https", Opaque: "//" + c.req.Host + p, RawQuery: query},
		Host:   c.req.Host,
		Header: http.Header{},
	}
	for k, v := range c.req.Header {
		if k == "Content-Length" {
			continue
		}
		r.Header[k] = append([]string(nil), v...)
	}
	r.ContentLength = int64(len(c.req.Body))
	return r
}

func (c vectorCase) signedNames(extra ...string) []string {
	names := append([]string{"host"}, extra...)
	for k := range c.req.Header {
		names = append(names, strings.ToLower(k))
	}
	sort.Strings(names)
	return names
}

func TestSigningSuiteHeader(t *testing.T) {
	for _, c := range loadVectors(t) {
		t.Run(c.name, func(t *testing.T) {
			wantCanon := c.file(t, "header-canonical-request.txt")
			wantSTS := c.file(t, "header-string-to-sign.txt")
			wantSig := c.file(t, "header-signature.txt")

			// Independent checker.
			hdr := c.req.Header.Clone()
			hdr.Set("X-Amz-Date", c.time.Format("20060102T150405Z"))
			extra := []string{"x-amz-date"}
			if c.ctx.SignBody {
				hdr.Set("X-Amz-Content-Sha256", c.payloadHash())
				extra = append(extra, "x-amz-content-sha256")
			}
			if c.ctx.Credentials.Token != "" && !c.ctx.OmitSessionToken {
				hdr.Set("X-Amz-Security-Token", c.ctx.Credentials.Token)
				extra = append(extra, "x-amz-security-token")
			}
			canon := checkCanonicalRequest(checkInput{
				Method: c.req.Method, Path: c.req.Path, RawQuery: c.req.RawQuery, Host: c.req.Host,
				Header: hdr, Signed: c.signedNames(extra...), Payload: c.payloadHash(), Normalize: c.ctx.Normalize,
			})
			if canon != wantCanon {
				t.Errorf("checker canonical request:\n%s\nwant:\n%s", canon, wantCanon)
			}
			sts := checkStringToSign(c.time, c.ctx.Region, c.ctx.Service, canon)
			if sts != wantSTS {
				t.Errorf("checker string to sign:\n%s\nwant:\n%s", sts, wantSTS)
			}
			if sig := checkSig(c.ctx.Credentials.SecretAccessKey, c.time, c.ctx.Region, c.ctx.Service, sts); sig != wantSig {
				t.Errorf("checker signature %s, want %s", sig, wantSig)
			}

			// aws-sdk-go-v2 signer.
			var log signingLog
			r := c.sdkRequest(c.req.RawQuery)
			if c.ctx.SignBody {
				r.Header.Set("X-Amz-Content-Sha256", c.payloadHash())
			}
			err := v4.NewSigner().SignHTTP(context.Background(), c.creds(), r, c.payloadHash(), c.ctx.Service, c.ctx.Region, c.time,
				func(o *v4.SignerOptions) {
					o.LogSigning, o.Logger = true, log.logger()
					o.DisableSessionToken = c.ctx.OmitSessionToken
				})
			if err != nil {
				t.Fatal(err)
			}
			if log.canonical != wantCanon {
				t.Errorf("aws signer canonical request:\n%s\nwant:\n%s", log.canonical, wantCanon)
			}
			if log.stringToSign != wantSTS {
				t.Errorf("aws signer string to sign:\n%s\nwant:\n%s", log.stringToSign, wantSTS)
			}
			if got := seedSignature(r.Header.Get("Authorization")); got != wantSig {
				t.Errorf("aws signer signature %s, want %s", got, wantSig)
			}
		})
	}
}

func TestSigningSuiteQuery(t *testing.T) {
	for _, c := range loadVectors(t) {
		t.Run(c.name, func(t *testing.T) {
			wantCanon := c.file(t, "query-canonical-request.txt")
			wantSTS := c.file(t, "query-string-to-sign.txt")
			wantSig := c.file(t, "query-signature.txt")

			// Independent checker: the canonical query holds every
			// X-Amz-* parameter of the signed URL except the signature
			// (and a token added after signing).
			signedLine := strings.SplitN(c.file(t, "query-signed-request.txt"), "\n", 2)[0]
			target := signedLine[strings.IndexByte(signedLine, ' ')+1 : strings.LastIndex(signedLine, " HTTP/")]
			_, rawQuery, _ := strings.Cut(target, "?")
			var kept []string
			for _, kv := range strings.Split(rawQuery, "&") {
				if strings.HasPrefix(kv, "X-Amz-Signature=") || (c.ctx.OmitSessionToken && strings.HasPrefix(kv, "X-Amz-Security-Token=")) {
					continue
				}
				kept = append(kept, kv)
			}
			canon := checkCanonicalRequest(checkInput{
				Method: c.req.Method, Path: c.req.Path, RawQuery: strings.Join(kept, "&"), Host: c.req.Host,
				Header: c.req.Header, Signed: c.signedNames(), Payload: c.payloadHash(), Normalize: c.ctx.Normalize,
			})
			if canon != wantCanon {
				t.Errorf("checker canonical request:\n%s\nwant:\n%s", canon, wantCanon)
			}
			sts := checkStringToSign(c.time, c.ctx.Region, c.ctx.Service, canon)
			if sts != wantSTS {
				t.Errorf("checker string to sign:\n%s\nwant:\n%s", sts, wantSTS)
			}
			if sig := checkSig(c.ctx.Credentials.SecretAccessKey, c.time, c.ctx.Region, c.ctx.Service, sts); sig != wantSig {
				t.Errorf("checker signature %s, want %s", sig, wantSig)
			}

			// aws-sdk-go-v2 presigner.
			q := c.req.RawQuery
			if q != "" {
				q += "&"
			}
			q += fmt.Sprintf("X-Amz-Expires=%d", c.ctx.Expiration)
			var log signingLog
			u, _, err := v4.NewSigner().PresignHTTP(context.Background(), c.creds(), c.sdkRequest(q), c.payloadHash(), c.ctx.Service, c.ctx.Region, c.time,
				func(o *v4.SignerOptions) {
					o.LogSigning, o.Logger = true, log.logger()
					o.DisableSessionToken = c.ctx.OmitSessionToken
				})
			if err != nil {
				t.Fatal(err)
			}
			if log.canonical != wantCanon {
				t.Errorf("aws presigner canonical request:\n%s\nwant:\n%s", log.canonical, wantCanon)
			}
			if log.stringToSign != wantSTS {
				t.Errorf("aws presigner string to sign:\n%s\nwant:\n%s", log.stringToSign, wantSTS)
			}
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			if got := pu.Query().Get("X-Amz-Signature"); got != wantSig {
				t.Errorf("aws presigner signature %s, want %s", got, wantSig)
			}
		})
	}
}

// TestSigningSuiteResign re-signs each vector's header-signed request with
// the same keys and time through Prepare and Sign. Two kinds of case sign
// differently by design: unnormalised paths are normalised for non-S3
// services (they reproduce the normalised twin's signature), and a session
// token the client left unsigned is signed by the proxy (post-sts-header-after
// reproduces post-sts-header-before).
func TestSigningSuiteResign(t *testing.T) {
	cases := loadVectors(t)
	byName := map[string]vectorCase{}
	for _, c := range cases {
		byName[c.name] = c
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expect := c
			if twin, ok := strings.CutSuffix(c.name, "-unnormalized"); ok {
				expect = byName[twin+"-normalized"]
			}
			if c.name == "post-sts-header-after" {
				expect = byName["post-sts-header-before"]
			}
			wantSig := expect.file(t, "header-signature.txt")

			sr := parseVectorRequest(t, c.file(t, "header-signed-request.txt"))
			req := &http.Request{
				Method:     sr.Method,
				URL:        &url.URL{Scheme: "https", Opaque: "//" + sr.Host + sr.Path, RawQuery: sr.RawQuery},
				Host:       sr.Host,
				Header:     sr.Header,
				Body:       http.NoBody,
				RequestURI: sr.Path,
			}
			if sr.Body != "" {
				req.Body = ioNopCloser(sr.Body)
				req.ContentLength = int64(len(sr.Body))
				req.Header.Del("Content-Length")
			}
			prov := credentials.NewStaticCredentialsProvider(c.ctx.Credentials.AccessKeyID, c.ctx.Credentials.SecretAccessKey, c.ctx.Credentials.Token)
			s := New(prov, Options{})
			p, err := s.Prepare(req)
			if err != nil {
				t.Fatal(err)
			}
			if p.Service != c.ctx.Service || p.Region != c.ctx.Region {
				t.Errorf("scope %s/%s, want %s/%s", p.Service, p.Region, c.ctx.Service, c.ctx.Region)
			}
			if !p.ClientTime.Equal(c.time) {
				t.Errorf("ClientTime %v, want %v", p.ClientTime, c.time)
			}
			out, err := p.Sign(context.Background(), c.time)
			if err != nil {
				t.Fatal(err)
			}
			if got := seedSignature(out.Header.Get("Authorization")); got != wantSig {
				t.Errorf("re-signed signature %s, want %s\nAuthorization: %s", got, wantSig, out.Header.Get("Authorization"))
			}
			if out.RequestURI != "" || out.URL.Host == "" || out.URL.Scheme != "https" {
				t.Errorf("outgoing request not ready for a transport: RequestURI=%q URL=%v", out.RequestURI, out.URL)
			}
		})
	}
}

func ioNopCloser(s string) *nopReadCloser { return &nopReadCloser{strings.NewReader(s)} }

type nopReadCloser struct{ *strings.Reader }

func (nopReadCloser) Close() error { return nil }
