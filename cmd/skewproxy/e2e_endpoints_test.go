package main

// Endpoint coverage and guards, through the built binary: Lambda function
// URLs (*.on.aws, intercepted by default) and the signing allowlist
// (--allow-service, --allow-region).

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// functionURLID is the URL id of the test's function URL.
const functionURLID = "f3xkq7l2vbn4mzc6tyw5aeh8pu9rsd0o"

// functionURL is https://<id>.lambda-url.us-east-1.on.aws.
const functionURL = "https://" + functionURLID + ".lambda-url.us-east-1.on.aws"

// TestEndpointsE2EFunctionURLWithCurl: curl, sending no signature at all,
// calls a Lambda function URL through the proxy (the default --intercept
// list covers *.on.aws); the verifying endpoint sees a request signed for
// service lambda in the host's region.
func TestEndpointsE2EFunctionURLWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl not found: run `make deps`")
	}
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		// No --intercept: *.on.aws must be in the defaults. --resolve
		// only redirects the traffic to the fake.
		Args: []string{"--resolve", "*.lambda-url.us-east-1.on.aws:443=" + fake.URL(), "--upstream-ca", fake.CAFile(t),
			"--no-time-bootstrap"}, // the endpoint must see only curl's request
		Env: proxyCredsEnv(proxyKeys),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--fail-with-body", "-x", p.ProxyURL.String(), "--cacert", p.CAFile,
		"-H", "Content-Type: application/json", "--data", `{"order":7}`, functionURL+"/orders?x=1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s\nproxy logs:\n%s", err, out, p.Logs())
	}
	if string(out) != `{"order":7}` {
		t.Errorf("curl got %q, want the echoed payload", out)
	}
	fake.WaitIdle(ctx)
	reqs := fake.Requests()
	if len(reqs) != 1 || reqs[0].Verified == nil {
		t.Fatalf("endpoint saw %+v, want one verified request", reqs)
	}
	v := reqs[0].Verified
	if v.Service != "lambda" || v.Region != "us-east-1" || v.AccessKeyID != proxyKeys.AccessKeyID || reqs[0].Operation != "InvokeFunctionUrl" {
		t.Errorf("signed for %s/%s with %s (operation %s), want lambda/us-east-1 with the proxy's key", v.Service, v.Region, v.AccessKeyID, reqs[0].Operation)
	}
}

// TestEndpointsE2EFunctionURLAdmissionAndStreaming: the Lambda limiter
// covers function URLs, keyed by URL id (--lambda-function-max-inflight
// ID=1 holds four concurrent calls to one at a time, all succeed), and a
// streamed answer reaches the client as it arrives.
func TestEndpointsE2EFunctionURLAdmissionAndStreaming(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys, Functions: map[string]proxytest.FunctionBehavior{
		functionURLID: {Delay: 300 * time.Millisecond},
		"streamer":    {Delay: 1500 * time.Millisecond, Stream: true},
	}})
	p := startProxy(t, proxyOptions{
		Args: []string{"--resolve", "*.lambda-url.us-east-1.on.aws:443=" + fake.URL(), "--upstream-ca", fake.CAFile(t),
			"--lambda-function-max-inflight", functionURLID + "=1"},
		Env: proxyCredsEnv(proxyKeys),
	})
	c := p.Client()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			resp, err := c.Post(functionURL+"/", "application/json", strings.NewReader(`{"i":`+string(rune('0'+i))+`}`))
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- errors.New(resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call through the proxy: %v", err)
	}
	if got := fake.Stats().MaxInFlight[functionURLID]; got != 1 {
		t.Errorf("%d calls in flight at once at the endpoint, want 1 (--lambda-function-max-inflight %s=1)", got, functionURLID)
	}

	start := time.Now()
	resp, err := c.Post("https://streamer.lambda-url.us-east-1.on.aws/", "application/json", strings.NewReader(`"0123456789abcdef"`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 750*time.Millisecond {
		t.Errorf("first byte of the streamed answer after %v: held by the proxy (the upstream paused 1.5 s)", d)
	}
	rest, _ := io.ReadAll(resp.Body)
	if got := string(first) + string(rest); got != `"0123456789abcdef"` {
		t.Errorf("streamed body %q", got)
	}
}

// TestEndpointsE2EAllowlist: with --allow-service sts --allow-region
// us-east-1, an STS call in us-east-1 is signed and sent; a Lambda call, or
// an STS call in another region, gets a 403 AccessDenied naming the flag,
// is logged, and never reaches the endpoint.
func TestEndpointsE2EAllowlist(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--resolve", "sts.us-west-2.amazonaws.com:443=" + fake.URL(),
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--allow-service", "sts", "--allow-region", "us-east-1",
			"--no-time-bootstrap", // the endpoint must see only the allowed request
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := p.awsConfig()
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("allowed STS call: %v", err)
	}
	refused := []struct {
		name, flag string
		call       func() error
	}{
		{"lambda (service not allowed)", "--allow-service", func() error {
			_, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)})
			return err
		}},
		{"sts in us-west-2 (region not allowed)", "--allow-region", func() error {
			west := cfg.Copy()
			west.Region = "us-west-2"
			_, err := sts.NewFromConfig(west).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden ||
				!strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("got %v, want 403 AccessDenied naming %s", err, tc.flag)
			}
		})
	}
	fake.WaitIdle(ctx)
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("endpoint saw %d requests, want only the allowed one", n)
	}
	if logs := p.Logs(); strings.Count(logs, "outside the signing allowlist") != 2 {
		t.Errorf("want two log lines for the refused requests; logs:\n%s", logs)
	}
}
