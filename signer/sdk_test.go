package signer

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

const (
	clientAKID   = "AKIDCLIENTEXAMPLE"
	clientSecret = "client/secret/EXAMPLEKEYclientclientcl"
	proxyAKID    = "AKIDPROXYEXAMPLE"
	proxySecret  = "proxy+secret/EXAMPLEKEYproxyproxyproxy"
	proxyToken   = "FwoGZXIvYXdzEXAMPLEproxySessionToken//+=="
)

// capture is an http.Client transport that records the SDK's outgoing
// request as raw wire bytes and answers with a canned response.
type capture struct {
	mu     sync.Mutex
	wire   [][]byte
	answer func(*http.Request) *http.Response
}

func (c *capture) Do(r *http.Request) (*http.Response, error) {
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.wire = append(c.wire, buf.Bytes())
	c.mu.Unlock()
	resp := c.answer(r)
	resp.Request = r
	return resp, nil
}

func (c *capture) last(t *testing.T) []byte {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.wire) == 0 {
		t.Fatal("the SDK sent nothing")
	}
	return c.wire[len(c.wire)-1]
}

func canned(status int, contentType, body string, hdr ...string) func(*http.Request) *http.Response {
	return func(*http.Request) *http.Response {
		h := http.Header{"Content-Type": {contentType}, "X-Amzn-Requestid": {"req-1"}}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	}
}

// asProxySees parses wire bytes the way the proxy's server side does.
func asProxySees(t *testing.T, wire []byte) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sdkConfig(c *capture) aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(clientAKID, clientSecret, "client-session-token"),
		HTTPClient:  c,
	}
}

func proxySigner() *Signer {
	return New(credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken), Options{ProviderName: "test"})
}

// resignAndVerify re-signs what the SDK sent and checks the result with the
// independent checker and the header-set rules.
func resignAndVerify(t *testing.T, wire []byte, s3 bool) (client, out *http.Request) {
	t.Helper()
	// The SDK's own signature verifies with the checker: the checker and
	// the SDK agree on this request's canonical form.
	verifyAuthorization(t, asProxySees(t, wire), clientSecret, s3)

	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// The fast signer signs it, and exactly as the SDK signer would.
	prov := credentials.NewStaticCredentialsProvider(proxyAKID, proxySecret, proxyToken)
	if fast, err := signBothWays(t, prov, func() *http.Request { return asProxySees(t, wire) }, at); err != nil || !fast {
		t.Errorf("fast signer used: %v (err %v), want the fast signer", fast, err)
	}

	client = asProxySees(t, wire)
	p, err := proxySigner().Prepare(asProxySees(t, wire))
	if err != nil {
		t.Fatal(err)
	}
	out, err = p.Sign(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	verifyAuthorization(t, out, proxySecret, s3)
	a, _ := ParseAuthorization(out.Header.Get("Authorization"))
	if a.AccessKeyID != proxyAKID {
		t.Errorf("signed with %s, want the proxy's key", a.AccessKeyID)
	}
	if got := out.Header.Get("X-Amz-Date"); got != "20300102T030405Z" {
		t.Errorf("X-Amz-Date %q, want the signing time", got)
	}
	if got := out.Header.Values("X-Amz-Security-Token"); len(got) != 1 || got[0] != proxyToken {
		t.Errorf("X-Amz-Security-Token = %q, want only the proxy's", got)
	}
	if out.URL.EscapedPath() != client.URL.EscapedPath() {
		t.Errorf("path on the wire changed: %q -> %q", client.URL.EscapedPath(), out.URL.EscapedPath())
	}
	// The client's signed set is kept, plus the token.
	ca, _ := ParseAuthorization(client.Header.Get("Authorization"))
	want := map[string]bool{"x-amz-security-token": true}
	for _, h := range ca.SignedHeaders {
		if h != "user-agent" && h != "expect" && h != "x-amzn-trace-id" {
			want[h] = true
		}
	}
	if len(a.SignedHeaders) != len(want) {
		t.Errorf("signed %v, client signed %v", a.SignedHeaders, ca.SignedHeaders)
	}
	for _, h := range a.SignedHeaders {
		if !want[h] {
			t.Errorf("signed %q which the client did not", h)
		}
	}
	// Every other header is unchanged.
	for k, v := range client.Header {
		switch k {
		case "Authorization", "X-Amz-Date", "X-Amz-Security-Token":
			continue
		}
		if got := out.Header[k]; strings.Join(got, "\x00") != strings.Join(v, "\x00") {
			t.Errorf("header %s changed: %q -> %q", k, v, got)
		}
	}
	return client, out
}

func TestResignSDKRequests(t *testing.T) {
	ctx := context.Background()
	stsXML := `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/x</Arn><UserId>AIDAX</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>`

	t.Run("sts GetCallerIdentity", func(t *testing.T) {
		c := &capture{answer: canned(200, "text/xml", stsXML)}
		if _, err := sts.NewFromConfig(sdkConfig(c)).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatal(err)
		}
		_, out := resignAndVerify(t, c.last(t), false)
		if out.Host != "sts.us-east-1.amazonaws.com" && out.Host != "sts.amazonaws.com" {
			t.Errorf("host %q", out.Host)
		}
	})

	for _, fn := range []string{"my-function", "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST"} {
		t.Run("lambda Invoke "+fn, func(t *testing.T) {
			c := &capture{answer: canned(200, "application/json", `{"ok":true}`, "X-Amz-Executed-Version", "$LATEST")}
			payload := []byte(`{"key":"value","n":[1,2,3]}`)
			if _, err := lambda.NewFromConfig(sdkConfig(c)).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: payload}); err != nil {
				t.Fatal(err)
			}
			_, out := resignAndVerify(t, c.last(t), false)
			body, err := io.ReadAll(out.Body)
			if err != nil || !bytes.Equal(body, payload) {
				t.Errorf("body %q (%v), want %q", body, err, payload)
			}
		})
	}

	for _, key := range []string{"plain.txt", "dir/with space/key+plus.txt", "unicode/ünïcødé"} {
		t.Run("s3 GetObject "+key, func(t *testing.T) {
			c := &capture{answer: canned(200, "application/octet-stream", "data", "ETag", `"abc"`)}
			cl := s3.NewFromConfig(sdkConfig(c))
			out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("mybucket"), Key: aws.String(key),
				Range: aws.String("bytes=0-3"), ChecksumMode: "ENABLED"})
			if err != nil {
				t.Fatal(err)
			}
			out.Body.Close()
			resignAndVerify(t, c.last(t), true)
		})
	}
	t.Run("s3 ListObjectsV2 with query", func(t *testing.T) {
		c := &capture{answer: canned(200, "application/xml", `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></ListBucketResult>`)}
		cl := s3.NewFromConfig(sdkConfig(c))
		_, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("mybucket"), Prefix: aws.String("a b+c/ü"),
			Delimiter: aws.String("/"), StartAfter: aws.String("x=y&z"), MaxKeys: aws.Int32(10)})
		if err != nil {
			t.Fatal(err)
		}
		client, _ := resignAndVerify(t, c.last(t), true)
		if client.URL.RawQuery == "" {
			t.Errorf("the SDK sent no query")
		}
	})

	keys := []string{
		"plain.txt",
		"with space/and+plus=equals:colon.txt",
		"percent%25literal%/x",
		"unicode/ünïcødé/日本語.txt",
		"double//slash///triple",
		"/leading-slash",
		"tilde~and-dash_under.dot",
		"parens(and)brackets[x]!*'",
	}
	type onlyReader struct{ io.Reader }
	for _, style := range []string{"virtual-host", "path-style"} {
		for _, key := range keys {
			for _, mode := range []string{"https", "http", "https-unseekable"} {
				t.Run("s3 PutObject "+style+" "+mode+" "+key, func(t *testing.T) {
					c := &capture{answer: canned(200, "application/xml", "", "ETag", `"abc"`)}
					cl := s3.NewFromConfig(sdkConfig(c), func(o *s3.Options) {
						o.UsePathStyle = style == "path-style"
						if mode == "http" {
							o.BaseEndpoint = aws.String("http://s3.us-east-1.amazonaws.com")
						}
					})
					body := strings.Repeat("0123456789abcdef", 100)
					var r io.Reader = strings.NewReader(body)
					if mode == "https-unseekable" {
						r = onlyReader{r}
					}
					bucket := "my.bucket"
					if style == "virtual-host" {
						bucket = "mybucket"
					}
					_, err := cl.PutObject(ctx, &s3.PutObjectInput{
						Bucket: aws.String(bucket), Key: aws.String(key),
						Body: r, ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("text/plain"),
						Metadata: map[string]string{"Owner": "test"},
					})
					if err != nil {
						t.Fatal(err)
					}
					client, out := resignAndVerify(t, c.last(t), true)
					t.Logf("payload %s, path %s, host %s", payloadKind(client.Header.Get("X-Amz-Content-Sha256")), client.URL.EscapedPath(), client.Host)
					if client.Header.Get("X-Amz-Content-Sha256") != out.Header.Get("X-Amz-Content-Sha256") {
						t.Errorf("payload hash changed")
					}
					got, err := io.ReadAll(out.Body)
					if err != nil {
						t.Fatal(err)
					}
					clientBody, _ := io.ReadAll(client.Body)
					if !bytes.Equal(got, clientBody) {
						t.Errorf("body changed")
					}
				})
			}
		}
	}
}
