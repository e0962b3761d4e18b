package proxytest_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// Verify checks a request the way AWS would, and says why it fails.
func ExampleVerify() {
	creds := proxytest.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	signedAt := time.Date(2023, 1, 18, 16, 17, 39, 0, time.UTC)
	body := []byte(`{"hello":"world"}`)
	r, _ := http.NewRequest("POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations", bytes.NewReader(body))
	_ = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey},
		r, proxytest.HexSHA256(body), "lambda", "us-east-1", signedAt)

	v, err := proxytest.Verify(r, body, creds, signedAt.Add(time.Minute), 5*time.Minute)
	fmt.Println(v.Service, v.Region, err)

	_, err = proxytest.Verify(r, body, creds, signedAt.Add(10*time.Minute), 5*time.Minute)
	fmt.Println(proxytest.KindOf(err))
	// Output:
	// lambda us-east-1 <nil>
	// signature_expired
}
