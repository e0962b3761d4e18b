package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/signer"
)

// cannedTransport answers every request with the same small JSON body, as
// a Lambda Invoke answer, without a network.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(c.body))},
		"X-Amzn-Requestid": {"8f7c2d1e-0000-4000-8000-000000000000"}, "Date": {time.Now().UTC().Format(http.TimeFormat)}}
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(c.body)), ContentLength: int64(len(c.body)), Request: req}, nil
}

// BenchmarkPipelineInvoke is the pipeline's own cost for one small signed
// Lambda Invoke inside an intercepted tunnel: classify, admit (no
// admitter), re-sign, "send" to a canned transport, wrap and drain the
// answer. No sockets: what is left is the proxy's user-space work per
// request.
func BenchmarkPipelineInvoke(b *testing.B) {
	ca, err := certs.LoadOrCreate(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	sgn := signer.New(credentials.NewStaticCredentialsProvider(proxyKeys.AccessKeyID, proxyKeys.SecretAccessKey, ""), signer.Options{})
	p := &Proxy{Signer: sgn, Clock: &testClock{}, CA: ca, Transport: cannedTransport{body: []byte(`{"ok":true,"n":1}`)}}
	e, err := p.init()
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"orderId":"b6b2f0a4-6d5d-4c61","items":[1,2,3],"note":"bench"}`)
	const host = "lambda.us-east-1.amazonaws.com"
	tmpl, _ := http.NewRequest(http.MethodPost, "https://"+host+"/2015-03-31/functions/bench/invocations", bytes.NewReader(payload))
	tmpl.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(payload)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder-secret"}, tmpl, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		b.Fatal(err)
	}
	tun := &tunnel{host: host + ":443", scheme: "https"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		u := *tmpl.URL
		req := &http.Request{Method: http.MethodPost, URL: &u, Host: host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: tmpl.Header.Clone(), Body: io.NopCloser(bytes.NewReader(payload)), ContentLength: int64(len(payload))}
		req = req.WithContext(context.Background())
		resp := e.roundTrip(req, tun)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
