// Command envclient is a child process of the skewproxy end-to-end tests: a
// real aws-sdk-go-v2 program configured only by its environment, the way an
// unmodified application would be. It finds the proxy through HTTPS_PROXY
// (http.ProxyFromEnvironment, the SDK's default) and trusts the proxy's CA
// through SSL_CERT_FILE (Go's system roots), calls STS GetCallerIdentity and
// Lambda Invoke with the credentials of the default chain, and prints one
// JSON line with what it got. It exits 1 on the first failure.
//
// It is not a general tool and is built only by the tests.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(1))
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("GetCallerIdentity: %w", err)
	}
	inv, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("echo"),
		Payload:      []byte(`{"from":"envclient"}`),
	})
	if err != nil {
		return fmt.Errorf("Invoke: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{
		"account": aws.ToString(id.Account),
		"payload": string(inv.Payload),
	})
}
