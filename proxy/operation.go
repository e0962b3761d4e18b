package proxy

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
)

// maxFormPeek is the largest query-protocol form body read to learn its
// Action (STS, SQS, SNS and EC2 requests are a few hundred bytes).
const maxFormPeek = 64 << 10

// operation derives the API operation of req where that is cheap: the
// Lambda invoke paths, the X-Amz-Target header of JSON protocols, the
// Action parameter of query protocols, and S3 from method, path and query.
// formAct is the Action of a query-protocol form body, read before the
// signer took the body (formAction). It returns "" when it cannot tell.
func operation(req *http.Request, service, formAct string) string {
	if t := req.Header.Get("X-Amz-Target"); t != "" {
		if i := strings.LastIndexByte(t, '.'); i >= 0 {
			return t[i+1:]
		}
		return t
	}
	switch service {
	case "lambda":
		return lambdaOperation(req)
	case "s3":
		return s3Operation(req)
	}
	if a := req.URL.Query().Get("Action"); a != "" {
		return a
	}
	return formAct
}

func lambdaOperation(req *http.Request) string {
	if _, _, ok := lambdalimit.FunctionURLHost(req.Host); ok {
		// The IAM action of a function URL call.
		return "InvokeFunctionUrl"
	}
	p := req.URL.Path
	switch {
	case namesFunction(p, "/response-streaming-invocations"):
		return "InvokeWithResponseStream"
	case namesFunction(p, "/invocations"):
		return "Invoke"
	case namesFunction(p, "/invoke-async/"), namesFunction(p, "/invoke-async"):
		return "InvokeAsync"
	}
	return ""
}

// namesFunction reports whether path is .../functions/{FunctionName}suffix
// with a FunctionName of one non-empty segment, as the invoke limiter reads
// it ("/2015-03-31/functions/invocations" names no function).
func namesFunction(path, suffix string) bool {
	const functions = "/functions/"
	i := strings.Index(path, functions)
	if i < 0 || !strings.HasSuffix(path, suffix) || i+len(functions) >= len(path)-len(suffix) {
		return false
	}
	return !strings.Contains(path[i+len(functions):len(path)-len(suffix)], "/")
}

// isLambdaInvoke reports whether req is a Lambda invocation (the requests
// the invoke limiter holds).
func isLambdaInvoke(op string) bool {
	return op == "Invoke" || op == "InvokeWithResponseStream" || op == "InvokeAsync" || op == "InvokeFunctionUrl"
}

// formType is the media type of query-protocol form bodies.
const formType = "application/x-www-form-urlencoded"

// formAction reads the Action of a small query-protocol form body and puts
// the body back (with GetBody, so the signer can replay it).
func formAction(req *http.Request) string {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody {
		return ""
	}
	ct := req.Header.Get("Content-Type")
	if len(ct) < len(formType) || !strings.EqualFold(ct[:len(formType)], formType) {
		return "" // checked before ParseMediaType, which allocates
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != formType || req.ContentLength <= 0 || req.ContentLength > maxFormPeek {
		return ""
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if err != nil {
		// The signer will see the short body and fail with a clear error.
		return ""
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return ""
	}
	return v.Get("Action")
}

// s3Operation names the common S3 operations from method, path and query.
func s3Operation(req *http.Request) string {
	q := req.URL.Query()
	// The AWS SDKs name the operation in an x-id query parameter.
	if id := q.Get("x-id"); id != "" {
		return id
	}
	bucket, key := s3BucketKey(req)
	has := func(k string) bool { _, ok := q[k]; return ok }
	switch req.Method {
	case http.MethodGet:
		switch {
		case bucket == "":
			return "ListBuckets"
		case key == "" && q.Get("list-type") == "2":
			return "ListObjectsV2"
		case key == "" && has("uploads"):
			return "ListMultipartUploads"
		case key == "" && has("location"):
			return "GetBucketLocation"
		case key == "" && has("versions"):
			return "ListObjectVersions"
		case key == "" && len(q) == 0 || key == "" && has("prefix") || key == "" && has("delimiter"):
			return "ListObjects"
		case key != "" && has("uploadId"):
			return "ListParts"
		case key != "" && has("tagging"):
			return "GetObjectTagging"
		case key != "" && !has("acl") && !has("attributes"):
			return "GetObject"
		}
	case http.MethodHead:
		if key != "" {
			return "HeadObject"
		}
		if bucket != "" {
			return "HeadBucket"
		}
	case http.MethodPut:
		switch {
		case key == "" && bucket != "" && len(q) == 0:
			return "CreateBucket"
		case key != "" && has("partNumber") && has("uploadId"):
			if req.Header.Get("X-Amz-Copy-Source") != "" {
				return "UploadPartCopy"
			}
			return "UploadPart"
		case key != "" && has("tagging"):
			return "PutObjectTagging"
		case key != "" && req.Header.Get("X-Amz-Copy-Source") != "":
			return "CopyObject"
		case key != "" && len(q) == 0:
			return "PutObject"
		}
	case http.MethodPost:
		switch {
		case key != "" && has("uploads"):
			return "CreateMultipartUpload"
		case key != "" && has("uploadId"):
			return "CompleteMultipartUpload"
		case key == "" && has("delete"):
			return "DeleteObjects"
		}
	case http.MethodDelete:
		switch {
		case key != "" && has("uploadId"):
			return "AbortMultipartUpload"
		case key != "" && len(q) == 0 || key != "" && has("versionId"):
			return "DeleteObject"
		case key == "" && bucket != "" && len(q) == 0:
			return "DeleteBucket"
		}
	}
	return ""
}

// s3BucketKey splits an S3 request into bucket and key, for virtual-hosted
// ("bucket.s3.region.amazonaws.com") and path-style requests.
func s3BucketKey(req *http.Request) (bucket, key string) {
	path := strings.TrimPrefix(req.URL.Path, "/")
	host := normalizeHost(req.Host)
	if first, rest, ok := strings.Cut(host, "."); ok && !strings.HasPrefix(first, "s3") && strings.Contains(rest, "s3") {
		return first, path
	}
	bucket, key, _ = strings.Cut(path, "/")
	return bucket, key
}
