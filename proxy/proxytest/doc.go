// Package proxytest provides real peers for skewproxy's tests: an independent
// AWS Signature Version 4 verifier, a fake AWS endpoint (STS, Lambda, API
// Gateway) that checks every signature and answers failures the way AWS does,
// and a launcher for a real MinIO server.
//
// The verifier is written from the SigV4 specification by hand and shares no
// code with package signer or the AWS SDK's signer, so that it is an
// independent reference the proxy is checked against.
//
// Typical use in an end-to-end test:
//
//	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
//		Credentials: proxytest.Credentials{AccessKeyID: "AKIDPROXY", SecretAccessKey: "proxy-secret"},
//		Now:         clock.Now, // the "true" time of the AWS side
//	})
//	// send traffic for lambda.us-east-1.amazonaws.com:443 to fake.URL(),
//	// trust fake.CertPool() (or fake.CAFile()) upstream, then assert on
//	// fake.Stats() and fake.Requests().
//
// This package is for tests only. It is not a general-purpose AWS emulator:
// it implements a handful of operations, keeps everything in memory, and does
// not check aws-chunked chunk signatures (MinIO does; use StartMinIO for S3).
package proxytest
