package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOperation(t *testing.T) {
	cases := []struct {
		name, service, method, host, target, want string
		header                                    http.Header
	}{
		{"lambda invoke", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/my-fn/invocations", "Invoke", nil},
		{"lambda stream", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2021-11-15/functions/f/response-streaming-invocations", "InvokeWithResponseStream", nil},
		{"lambda other", "lambda", "GET", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/", "", nil},
		{"lambda invoke async", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2014-11-13/functions/f/invoke-async/", "InvokeAsync", nil},
		{"lambda invoke ARN", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f:3/invocations", "Invoke", nil},
		{"lambda no function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/invocations", "", nil},
		{"lambda stream no function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2021-11-15/functions/response-streaming-invocations", "", nil},
		{"lambda empty function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions//invocations", "", nil},
		{"lambda slash in function", "lambda", "POST", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions/a%2Fb/invocations", "", nil},
		{"json target", "dynamodb", "POST", "dynamodb.us-east-1.amazonaws.com", "/", "PutItem", http.Header{"X-Amz-Target": {"DynamoDB_20120810.PutItem"}}},
		{"query action", "sts", "GET", "sts.amazonaws.com", "/?Action=GetCallerIdentity&Version=2011-06-15", "GetCallerIdentity", nil},
		{"s3 get object vhost", "s3", "GET", "bucket.s3.us-east-1.amazonaws.com", "/a/key", "GetObject", nil},
		{"s3 get object path", "s3", "GET", "s3.us-east-1.amazonaws.com", "/bucket/key", "GetObject", nil},
		{"s3 list v2", "s3", "GET", "s3.us-east-1.amazonaws.com", "/bucket?list-type=2", "ListObjectsV2", nil},
		{"s3 list buckets", "s3", "GET", "s3.amazonaws.com", "/", "ListBuckets", nil},
		{"s3 put object", "s3", "PUT", "bucket.s3.amazonaws.com", "/k%20ey", "PutObject", nil},
		{"s3 create bucket", "s3", "PUT", "s3.amazonaws.com", "/bucket", "CreateBucket", nil},
		{"s3 copy", "s3", "PUT", "s3.amazonaws.com", "/bucket/k", "CopyObject", http.Header{"X-Amz-Copy-Source": {"/b/o"}}},
		{"s3 upload part", "s3", "PUT", "s3.amazonaws.com", "/bucket/k?partNumber=1&uploadId=x", "UploadPart", nil},
		{"s3 delete object", "s3", "DELETE", "s3.amazonaws.com", "/bucket/k", "DeleteObject", nil},
		{"s3 head bucket", "s3", "HEAD", "s3.amazonaws.com", "/bucket", "HeadBucket", nil},
		{"s3 multipart", "s3", "POST", "s3.amazonaws.com", "/bucket/k?uploads", "CreateMultipartUpload", nil},
		{"s3 sdk x-id", "s3", "PUT", "b.s3.amazonaws.com", "/k?x-id=PutObject", "PutObject", nil},
		{"s3 delete objects", "s3", "POST", "s3.amazonaws.com", "/bucket?delete", "DeleteObjects", nil},
		{"form action given", "sts", "POST", "sts.amazonaws.com", "/", "AssumeRole", nil},
		{"lambda function URL", "lambda", "GET", "abc123.lambda-url.us-east-1.on.aws", "/orders", "InvokeFunctionUrl", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "https://"+tc.host+tc.target, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			formAct := ""
			if tc.name == "form action given" {
				formAct = "AssumeRole"
			}
			if got := operation(req, tc.service, formAct); got != tc.want {
				t.Errorf("operation = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("form action keeps body", func(t *testing.T) {
		body := "Action=GetCallerIdentity&Version=2011-06-15"
		req := httptest.NewRequest("POST", "https://sts.amazonaws.com/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if got := formAction(req); got != "GetCallerIdentity" {
			t.Fatalf("formAction = %q", got)
		}
		var b bytes.Buffer
		b.ReadFrom(req.Body)
		rc, _ := req.GetBody()
		var b2 bytes.Buffer
		b2.ReadFrom(rc)
		if b.String() != body || b2.String() != body {
			t.Fatalf("body after peek %q / GetBody %q", b.String(), b2.String())
		}
	})
}
