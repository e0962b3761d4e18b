package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// proxyKeys are the proxy's real credentials in end-to-end tests; clients
// hold only placeholderKeys.
var (
	proxyKeys       = proxytest.Credentials{AccessKeyID: "AKIDSKEWPROXYTEST", SecretAccessKey: "proxy-secret-key-for-tests"}
	placeholderKeys = credentials.NewStaticCredentialsProvider("AKIDPLACEHOLDER", "placeholder-secret", "")
)

func proxyCredsEnv(c proxytest.Credentials) []string {
	env := []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_REGION=us-east-1"}
	if c.SessionToken != "" {
		env = append(env, "AWS_SESSION_TOKEN="+c.SessionToken)
	}
	return env
}

// awsConfig is an SDK config with placeholder keys that goes through p.
// Request bodies are handed to net/http as in-memory copies: smithy-go closes
// its body as soon as the answer's headers arrive, and on a fast loopback
// answer net/http may still be making its last read of it, which closes the
// connection under the SDK (a client-side race: aws/smithy-go#218, #226).
func (p *runningProxy) awsConfig() aws.Config {
	return aws.Config{
		Region:           "us-east-1",
		Credentials:      placeholderKeys,
		HTTPClient:       bufferedBodyClient{p.Client()},
		RetryMaxAttempts: 1,
	}
}

// bufferedBodyClient is an aws.HTTPClient that buffers small request bodies.
type bufferedBodyClient struct{ c *http.Client }

// Do implements aws.HTTPClient.
func (b bufferedBodyClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength >= 0 && req.ContentLength <= 1<<20 {
		data, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("buffer request body: %w", err)
		}
		req.Body = io.NopCloser(bytes.NewReader(data))
	}
	return b.c.Do(req)
}

// TestSmokeSTSAndLambdaThroughProxy: real SDK clients with placeholder keys
// reach a SigV4-verifying endpoint through the real binary; directly they fail.
func TestSmokeSTSAndLambdaThroughProxy(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := p.awsConfig()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity through the proxy: %v", err)
	}
	if aws.ToString(out.Account) != proxytest.AccountID {
		t.Errorf("account = %q, want %q", aws.ToString(out.Account), proxytest.AccountID)
	}
	inv, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"hello":"world"}`)})
	if err != nil {
		t.Fatalf("Invoke through the proxy: %v", err)
	}
	if !strings.Contains(string(inv.Payload), "hello") {
		t.Errorf("payload = %q", inv.Payload)
	}

	// Directly, the placeholder keys are refused.
	direct := aws.Config{Region: "us-east-1", Credentials: placeholderKeys, HTTPClient: fake.Client(), RetryMaxAttempts: 1,
		BaseEndpoint: aws.String(fake.URL())}
	if _, err := sts.NewFromConfig(direct).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err == nil {
		t.Fatal("GetCallerIdentity with placeholder keys straight to the endpoint succeeded")
	}
}
