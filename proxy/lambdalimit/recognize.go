package lambdalimit

import (
	"net/http"
	"net/url"
	"strings"
)

// InvocationType is the value of the X-Amz-Invocation-Type header.
type InvocationType string

// The Lambda invocation types.
const (
	RequestResponse InvocationType = "RequestResponse"
	Event           InvocationType = "Event"
	DryRun          InvocationType = "DryRun"
)

// Invoke describes a recognised Lambda invoke request.
type Invoke struct {
	// Function is the queue key: the bare function name (no account,
	// region or qualifier), so that every form a client may use for one
	// function (name, name:qualifier, partial ARN, full ARN) maps to one
	// queue. See ParseFunction.
	Function string
	// Qualifier is the version or alias, from the Qualifier query
	// parameter or a ":qualifier" suffix of the function identifier.
	Qualifier string
	// Account and Region are set when the identifier is a (partial) ARN
	// that names them; Region falls back to the lambda.REGION.* host name.
	Account, Region string
	// Type is the invocation type; RequestResponse when the header is absent.
	Type InvocationType
	// Streaming is true for InvokeWithResponseStream.
	Streaming bool
	// FunctionURL is true for a request to a Lambda function URL; Function
	// is then the URL id (the first label of the host), which
	// --lambda-function-max-inflight accepts as NAME.
	FunctionURL bool
}

// The invoke paths: POST /2015-03-31/functions/{FunctionName}/invocations
// and POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations.
const (
	invokePrefix = "/2015-03-31/functions/"
	invokeSuffix = "/invocations"
	streamPrefix = "/2021-11-15/functions/"
	streamSuffix = "/response-streaming-invocations"
)

// Recognize reports whether req is a Lambda Invoke or
// InvokeWithResponseStream request and, if so, describes it. It looks only
// at the method, the path, the X-Amz-Invocation-Type header, the Qualifier
// query parameter and the host name; it never reads the body.
//
// Every request to a Lambda function URL
// (https://URL-ID.lambda-url.REGION.on.aws/...) invokes the function behind
// it, whatever its method and path: it is recognised with the URL id as
// the key.
func Recognize(req *http.Request) (Invoke, bool) {
	if req == nil || req.URL == nil {
		return Invoke{}, false
	}
	if id, region, ok := FunctionURLHost(req.Host); ok {
		return Invoke{Function: id, Region: region, Type: RequestResponse, FunctionURL: true}, true
	}
	if req.Method != http.MethodPost {
		return Invoke{}, false
	}
	path := req.URL.EscapedPath()
	var seg string
	var streaming bool
	if s, ok := between(path, invokePrefix, invokeSuffix); ok {
		seg = s
	} else if s, ok := between(path, streamPrefix, streamSuffix); ok {
		seg, streaming = s, true
	} else {
		return Invoke{}, false
	}
	if seg == "" || strings.Contains(seg, "/") {
		return Invoke{}, false
	}
	ident, err := url.PathUnescape(seg)
	if err != nil || ident == "" || strings.Contains(ident, "/") {
		return Invoke{}, false
	}
	inv := ParseFunction(ident)
	inv.Streaming = streaming
	if q := req.URL.Query().Get("Qualifier"); q != "" {
		inv.Qualifier = q
	}
	if inv.Region == "" {
		inv.Region = regionFromHost(req.Host)
	}
	inv.Type = parseInvocationType(req.Header.Get("X-Amz-Invocation-Type"))
	return inv, true
}

// FunctionURLHost reports whether host (a port is ignored) is a Lambda
// function URL, URL-ID.lambda-url.REGION.on.aws, and returns its URL id and
// region.
func FunctionURLHost(host string) (id, region string, ok bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	rest, found := strings.CutSuffix(h, ".on.aws")
	if !found {
		return "", "", false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 3 || labels[1] != "lambda-url" || labels[0] == "" || labels[2] == "" {
		return "", "", false
	}
	return labels[0], labels[2], true
}

// between returns what lies between prefix and suffix in s. The two must not
// overlap: "/2015-03-31/functions/invocations" has both, sharing one slash,
// and names no function.
func between(s, prefix, suffix string) (string, bool) {
	if len(s) < len(prefix)+len(suffix) || !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		return "", false
	}
	return s[len(prefix) : len(s)-len(suffix)], true
}

// ParseFunction normalises a Lambda function identifier as the FunctionName
// path parameter (or the NAME of --lambda-function-max-inflight NAME=N) may
// spell it:
//
//	my-fn
//	my-fn:qualifier
//	123456789012:function:my-fn[:qualifier]
//	arn:PARTITION:lambda:REGION:123456789012:function:my-fn[:qualifier]
//
// The key (Invoke.Function) is the bare name. Reserved concurrency belongs
// to a function, not to a version or alias, so a qualifier counts toward the
// same queue. The key deliberately leaves out the account and the region:
// the proxy signs with one set of credentials (one account), and two
// same-named functions in different regions sharing a queue can only make
// the proxy stricter, never let a burst through. An identifier of no known
// form is used whole as the key.
func ParseFunction(ident string) Invoke {
	parts := strings.Split(ident, ":")
	switch {
	case len(parts) == 1:
		return Invoke{Function: parts[0]}
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return Invoke{Function: parts[0], Qualifier: parts[1]}
	case (len(parts) == 3 || len(parts) == 4) && parts[1] == "function" && parts[2] != "":
		inv := Invoke{Function: parts[2], Account: parts[0]}
		if len(parts) == 4 {
			inv.Qualifier = parts[3]
		}
		return inv
	case (len(parts) == 7 || len(parts) == 8) && parts[0] == "arn" && parts[2] == "lambda" &&
		parts[5] == "function" && parts[6] != "":
		inv := Invoke{Function: parts[6], Region: parts[3], Account: parts[4]}
		if len(parts) == 8 {
			inv.Qualifier = parts[7]
		}
		return inv
	}
	return Invoke{Function: ident}
}

// FunctionKey returns the queue key of a function identifier in any of the
// forms ParseFunction accepts.
func FunctionKey(ident string) string { return ParseFunction(ident).Function }

func parseInvocationType(v string) InvocationType {
	switch {
	case strings.EqualFold(v, string(Event)):
		return Event
	case strings.EqualFold(v, string(DryRun)):
		return DryRun
	}
	// Absent or unknown: treat as synchronous (Lambda rejects unknown
	// values itself; holding such a request is the safe side).
	return RequestResponse
}

// regionFromHost returns REGION from lambda.REGION.amazonaws.com (and the
// .com.cn, .api.aws and fips forms), or "".
func regionFromHost(host string) string {
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	labels := strings.Split(strings.ToLower(host), ".")
	if len(labels) < 3 {
		return ""
	}
	switch labels[0] {
	case "lambda", "lambda-fips":
		return labels[1]
	}
	return ""
}
