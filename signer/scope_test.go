package signer

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestScopeFromHost(t *testing.T) {
	s3 := func(region, bucket string) Scope {
		return Scope{Service: "s3", Region: region, S3: true, Bucket: bucket}
	}
	svc := func(service, region string) Scope { return Scope{Service: service, Region: region} }
	cases := []struct {
		host string
		want Scope
	}{
		// Regional services.
		{"lambda.us-east-1.amazonaws.com", svc("lambda", "us-east-1")},
		{"lambda.eu-west-1.amazonaws.com:443", svc("lambda", "eu-west-1")},
		{"LAMBDA.US-WEST-2.AMAZONAWS.COM", svc("lambda", "us-west-2")},
		{"dynamodb.ap-southeast-2.amazonaws.com", svc("dynamodb", "ap-southeast-2")},
		{"sqs.us-gov-west-1.amazonaws.com", svc("sqs", "us-gov-west-1")},
		{"sts.us-east-2.amazonaws.com", svc("sts", "us-east-2")},
		{"bedrock-runtime.us-east-1.amazonaws.com", svc("bedrock-runtime", "us-east-1")},
		{"runtime.sagemaker.us-east-1.amazonaws.com", svc("sagemaker", "us-east-1")},
		{"streams.dynamodb.us-east-1.amazonaws.com", svc("dynamodb", "us-east-1")},
		{"api.ecr.eu-central-1.amazonaws.com", svc("ecr", "eu-central-1")},
		{"email.us-east-1.amazonaws.com", svc("ses", "us-east-1")},
		{"logs.il-central-1.amazonaws.com", svc("logs", "il-central-1")},
		{"kms.us-isob-east-1.sc2s.sgov.gov", svc("kms", "us-isob-east-1")},
		{"vpce-0a1b2c3d-e4f5.lambda.us-east-1.vpce.amazonaws.com", svc("lambda", "us-east-1")},
		{"lambda.us-east-1.amazonaws.com.", svc("lambda", "us-east-1")},
		// Global endpoints.
		{"sts.amazonaws.com", svc("sts", "us-east-1")},
		{"iam.amazonaws.com", svc("iam", "us-east-1")},
		{"route53.amazonaws.com", svc("route53", "us-east-1")},
		{"cloudfront.amazonaws.com", svc("cloudfront", "us-east-1")},
		{"globalaccelerator.amazonaws.com", svc("globalaccelerator", "us-west-2")},
		{"iam.us-gov.amazonaws.com", svc("iam", "us-gov-west-1")},
		{"iam.global.api.aws", svc("iam", "us-east-1")},
		// FIPS.
		{"lambda-fips.us-east-1.amazonaws.com", svc("lambda", "us-east-1")},
		{"sts-fips.us-west-2.amazonaws.com", svc("sts", "us-west-2")},
		{"dynamodb-fips.us-gov-west-1.amazonaws.com", svc("dynamodb", "us-gov-west-1")},
		{"lambda-fips.us-east-1.api.aws", svc("lambda", "us-east-1")},
		// China.
		{"lambda.cn-north-1.amazonaws.com.cn", svc("lambda", "cn-north-1")},
		{"sts.cn-northwest-1.amazonaws.com.cn", svc("sts", "cn-northwest-1")},
		{"iam.amazonaws.com.cn", svc("iam", "cn-north-1")},
		{"route53.amazonaws.com.cn", svc("route53", "cn-northwest-1")},
		// Dual-stack api.aws.
		{"lambda.us-east-1.api.aws", svc("lambda", "us-east-1")},
		{"ec2.eu-west-3.api.aws", svc("ec2", "eu-west-3")},
		{"ec2.dualstack.us-east-1.amazonaws.com", svc("ec2", "us-east-1")},
		// API Gateway and Lambda function URLs.
		{"abc123.execute-api.eu-west-1.amazonaws.com", svc("execute-api", "eu-west-1")},
		{"xyz.lambda-url.us-east-1.on.aws", svc("lambda", "us-east-1")},
		{"abcdefghijklmnopqrstuvwxyz012345.lambda-url.ap-northeast-1.on.aws", svc("lambda", "ap-northeast-1")},
		// S3 path style and legacy.
		{"s3.amazonaws.com", s3("us-east-1", "")},
		{"s3.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"s3.eu-central-1.amazonaws.com:443", s3("eu-central-1", "")},
		{"s3-us-west-2.amazonaws.com", s3("us-west-2", "")},
		{"s3-external-1.amazonaws.com", s3("us-east-1", "")},
		{"s3-fips.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"s3.dualstack.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"s3-fips.dualstack.us-gov-west-1.amazonaws.com", s3("us-gov-west-1", "")},
		{"s3.cn-north-1.amazonaws.com.cn", s3("cn-north-1", "")},
		{"s3-fips-us-gov-west-1.amazonaws.com", s3("us-gov-west-1", "")},
		// S3 virtual host.
		{"examplebucket.s3.amazonaws.com", s3("us-east-1", "examplebucket")},
		{"examplebucket.s3.us-east-1.amazonaws.com", s3("us-east-1", "examplebucket")},
		{"my.bucket.s3.us-east-1.amazonaws.com", s3("us-east-1", "my.bucket")},
		{"a.b.c.s3.eu-west-1.amazonaws.com", s3("eu-west-1", "a.b.c")},
		{"s3.s3.us-east-1.amazonaws.com", s3("us-east-1", "s3")},
		{"bucket.s3-us-west-2.amazonaws.com", s3("us-west-2", "bucket")},
		{"bucket.s3.dualstack.ap-south-1.amazonaws.com", s3("ap-south-1", "bucket")},
		{"bucket.s3-accelerate.amazonaws.com", s3("us-east-1", "bucket")},
		{"bucket.s3-accelerate.dualstack.amazonaws.com", s3("us-east-1", "bucket")},
		{"bucket.s3-website-us-east-1.amazonaws.com", s3("us-east-1", "bucket")},
		{"bucket.s3-website.eu-west-2.amazonaws.com", s3("eu-west-2", "bucket")},
		{"bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", s3("us-east-1", "bucket")},
		// S3 control, access points, Object Lambda, Outposts, Express.
		{"123456789012.s3-control.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"123456789012.s3-control-fips.dualstack.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com", s3("us-east-1", "")},
		{"myap-123456789012.s3-accesspoint.dualstack.eu-west-1.amazonaws.com", s3("eu-west-1", "")},
		{"olap-123456789012.s3-object-lambda.us-west-2.amazonaws.com", Scope{Service: "s3-object-lambda", Region: "us-west-2", S3: true}},
		{"op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com", Scope{Service: "s3-outposts", Region: "us-west-2", S3: true}},
		{"bucket--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com", Scope{Service: "s3express", Region: "us-west-2", S3: true, Bucket: "bucket--usw2-az1--x-s3"}},
		{"s3express-control.us-west-2.amazonaws.com", Scope{Service: "s3express", Region: "us-west-2", S3: true}},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d hosts", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			got, err := ScopeFromHost(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScopeFromHostRejects(t *testing.T) {
	cases := []struct {
		name, host string
		notAWS     bool
	}{
		{"empty", "", true},
		{"other domain", "example.com", true},
		{"lookalike suffix", "lambda.us-east-1.amazonaws.com.evil.example", true},
		{"bare suffix", "amazonaws.com", true},
		{"ip literal", "[::1]:443", true},
		{"loopback", "127.0.0.1:9000", true},
		{"empty label", "lambda..us-east-1.amazonaws.com", false},
		{"region not last", "us-east-1.lambda.foo.amazonaws.com", false},
		{"two regions in s3 host", "bucket.s3-us-west-2.us-east-1.amazonaws.com", false},
		{"only dualstack", "dualstack.us-east-1.amazonaws.com", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := ScopeFromHost(tc.host)
			if err == nil {
				t.Fatalf("accepted %q as %+v", tc.host, sc)
			}
			if got := errors.Is(err, ErrNotAWSHost); got != tc.notAWS {
				t.Errorf("errors.Is(ErrNotAWSHost) = %v, want %v (%v)", got, tc.notAWS, err)
			}
		})
	}
}

func FuzzScopeFromHost(f *testing.F) {
	for _, h := range []string{
		"lambda.us-east-1.amazonaws.com", "my.bucket.s3.us-east-1.amazonaws.com", "sts.amazonaws.com",
		"xyz.lambda-url.us-east-1.on.aws", "s3-us-west-2.amazonaws.com:443", "[::1]:80", "..amazonaws.com",
		"bucket.vpce-1.s3.us-east-1.vpce.amazonaws.com", "s3express-.amazonaws.com",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		sc, err := ScopeFromHost(host)
		if err != nil {
			return
		}
		if sc.Service == "" || !isRegion(sc.Region) {
			t.Fatalf("%q gave an incomplete scope %+v", host, sc)
		}
		if sc.Bucket != "" && !sc.S3 {
			t.Fatalf("%q: bucket without S3: %+v", host, sc)
		}
		if strings.ContainsAny(sc.Service+sc.Region, "./: ") {
			t.Fatalf("%q: bad characters in scope %+v", host, sc)
		}
	})
}

func ExampleScopeFromHost() {
	for _, h := range []string{"my.bucket.s3.us-west-2.amazonaws.com", "sts.amazonaws.com", "xyz.lambda-url.eu-west-1.on.aws:443"} {
		sc, err := ScopeFromHost(h)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s %s s3=%t bucket=%q\n", sc.Service, sc.Region, sc.S3, sc.Bucket)
	}
	// Output:
	// s3 us-west-2 s3=true bucket="my.bucket"
	// sts us-east-1 s3=false bucket=""
	// lambda eu-west-1 s3=false bucket=""
}
