package lambdalimit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRecognize(t *testing.T) {
	const arn = "arn:aws:lambda:us-west-2:123456789012:function:my-fn"
	tests := []struct {
		name    string
		method  string
		target  string
		invType string
		want    Invoke
		ok      bool
	}{
		{name: "plain name", target: "/2015-03-31/functions/my-fn/invocations",
			want: Invoke{Function: "my-fn", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "name with qualifier", target: "/2015-03-31/functions/my-fn:prod/invocations",
			want: Invoke{Function: "my-fn", Qualifier: "prod", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "escaped name with qualifier", target: "/2015-03-31/functions/my-fn%3A7/invocations",
			want: Invoke{Function: "my-fn", Qualifier: "7", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "qualifier query", target: "/2015-03-31/functions/my-fn/invocations?Qualifier=%24LATEST",
			want: Invoke{Function: "my-fn", Qualifier: "$LATEST", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "partial ARN", target: "/2015-03-31/functions/123456789012%3Afunction%3Amy-fn/invocations",
			want: Invoke{Function: "my-fn", Account: "123456789012", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "partial ARN with qualifier", target: "/2015-03-31/functions/123456789012:function:my-fn:live/invocations",
			want: Invoke{Function: "my-fn", Qualifier: "live", Account: "123456789012", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "full ARN escaped", target: "/2015-03-31/functions/" + strings.ReplaceAll(arn, ":", "%3A") + "/invocations",
			want: Invoke{Function: "my-fn", Account: "123456789012", Region: "us-west-2", Type: RequestResponse}, ok: true},
		{name: "full ARN with qualifier", target: "/2015-03-31/functions/" + arn + ":3/invocations",
			want: Invoke{Function: "my-fn", Qualifier: "3", Account: "123456789012", Region: "us-west-2", Type: RequestResponse}, ok: true},
		{name: "china partition ARN", target: "/2015-03-31/functions/arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn/invocations",
			want: Invoke{Function: "my-fn", Account: "123456789012", Region: "cn-north-1", Type: RequestResponse}, ok: true},
		{name: "event", target: "/2015-03-31/functions/my-fn/invocations", invType: "Event",
			want: Invoke{Function: "my-fn", Region: "us-east-1", Type: Event}, ok: true},
		{name: "dry run", target: "/2015-03-31/functions/my-fn/invocations", invType: "DryRun",
			want: Invoke{Function: "my-fn", Region: "us-east-1", Type: DryRun}, ok: true},
		{name: "explicit request response", target: "/2015-03-31/functions/my-fn/invocations", invType: "RequestResponse",
			want: Invoke{Function: "my-fn", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "response stream", target: "/2021-11-15/functions/my-fn/response-streaming-invocations",
			want: Invoke{Function: "my-fn", Region: "us-east-1", Type: RequestResponse, Streaming: true}, ok: true},
		{name: "response stream ARN", target: "/2021-11-15/functions/" + arn + ":blue/response-streaming-invocations?Qualifier=green",
			want: Invoke{Function: "my-fn", Qualifier: "green", Account: "123456789012", Region: "us-west-2", Type: RequestResponse, Streaming: true}, ok: true},
		{name: "unknown identifier form kept whole", target: "/2015-03-31/functions/a:b:c:d:e/invocations",
			want: Invoke{Function: "a:b:c:d:e", Region: "us-east-1", Type: RequestResponse}, ok: true},
		{name: "GET is not an invoke", method: http.MethodGet, target: "/2015-03-31/functions/my-fn/invocations"},
		{name: "prefix and suffix share a slash", target: "/2015-03-31/functions/invocations"},
		{name: "stream prefix and suffix share a slash", target: "/2021-11-15/functions/response-streaming-invocations"},
		{name: "get function", method: http.MethodGet, target: "/2015-03-31/functions/my-fn"},
		{name: "invoke async API", target: "/2014-11-13/functions/my-fn/invoke-async/"},
		{name: "list functions", method: http.MethodGet, target: "/2015-03-31/functions/"},
		{name: "empty name", target: "/2015-03-31/functions//invocations"},
		{name: "extra segment", target: "/2015-03-31/functions/a/b/invocations"},
		{name: "escaped slash", target: "/2015-03-31/functions/a%2Fb/invocations"},
		{name: "stream path with plain suffix", target: "/2021-11-15/functions/my-fn/invocations"},
		{name: "s3 object", method: http.MethodPut, target: "/bucket/key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "http://lambda.us-east-1.amazonaws.com"+tc.target, nil)
			if tc.invType != "" {
				req.Header.Set("X-Amz-Invocation-Type", tc.invType)
			}
			got, ok := Recognize(req)
			if ok != tc.ok || got != tc.want {
				t.Errorf("Recognize(%s %s) = %+v, %v; want %+v, %v", method, tc.target, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestRecognizeRegionFromHost(t *testing.T) {
	tests := []struct{ host, want string }{
		{"lambda.eu-west-1.amazonaws.com", "eu-west-1"},
		{"lambda.eu-west-1.amazonaws.com:443", "eu-west-1"},
		{"lambda-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"},
		{"lambda.cn-north-1.amazonaws.com.cn", "cn-north-1"},
		{"127.0.0.1:9000", ""},
		{"[::1]:443", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "http://x/2015-03-31/functions/f/invocations", nil)
			req.Host = tc.host
			got, ok := Recognize(req)
			if !ok || got.Region != tc.want {
				t.Errorf("region of %q = %q (ok %v), want %q", tc.host, got.Region, ok, tc.want)
			}
		})
	}
}

func TestFunctionKeyFormsAgree(t *testing.T) {
	forms := []string{
		"my-fn",
		"my-fn:1",
		"my-fn:$LATEST",
		"123456789012:function:my-fn",
		"123456789012:function:my-fn:prod",
		"arn:aws:lambda:us-east-1:123456789012:function:my-fn",
		"arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod",
		"arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:my-fn",
	}
	for _, f := range forms {
		t.Run(f, func(t *testing.T) {
			if got := FunctionKey(f); got != "my-fn" {
				t.Errorf("FunctionKey(%q) = %q, want my-fn", f, got)
			}
		})
	}
}

func TestParseFunctionMaxInflight(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		want    map[string]int
		wantErr bool
	}{
		{name: "names and ARNs", specs: []string{"a=3", "arn:aws:lambda:us-east-1:1:function:b=0", " c = 7 "},
			want: map[string]int{"a": 3, "arn:aws:lambda:us-east-1:1:function:b": 0, "c": 7}},
		{name: "missing N", specs: []string{"a"}, wantErr: true},
		{name: "empty name", specs: []string{"=3"}, wantErr: true},
		{name: "negative", specs: []string{"a=-1"}, wantErr: true},
		{name: "not a number", specs: []string{"a=lots"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFunctionMaxInflight(tc.specs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("got[%q] = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}

func FuzzRecognize(f *testing.F) {
	for _, s := range []string{
		"/2015-03-31/functions/my-fn/invocations",
		"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations?Qualifier=1",
		"/2021-11-15/functions/123456789012:function:f:q/response-streaming-invocations",
		"/2015-03-31/functions/%zz/invocations",
		"/2015-03-31/functions/::::/invocations",
	} {
		f.Add(s, "Event")
	}
	f.Fuzz(func(t *testing.T, target, invType string) {
		req, err := http.NewRequest(http.MethodPost, "http://lambda.us-east-1.amazonaws.com"+target, nil)
		if err != nil {
			return
		}
		req.Header.Set("X-Amz-Invocation-Type", invType)
		inv, ok := Recognize(req)
		if !ok {
			return
		}
		if inv.Function == "" {
			t.Fatalf("recognised %q with an empty key", target)
		}
		if !strings.Contains(inv.Function, ":") && FunctionKey("123456789012:function:"+inv.Function+":q") != inv.Function {
			t.Fatalf("key %q does not survive the partial ARN form", inv.Function)
		}
		switch inv.Type {
		case RequestResponse, Event, DryRun:
		default:
			t.Fatalf("invocation type %q", inv.Type)
		}
	})
}

// TestRecognizeFunctionURL: every request to a Lambda function URL is an
// invocation keyed by the URL id, whatever its method and path; look-alike
// hosts are not.
func TestRecognizeFunctionURL(t *testing.T) {
	const id = "abcdefghijklmnopqrstuvwxyz012345"
	tests := []struct {
		name   string
		method string
		host   string
		path   string
		want   Invoke
		ok     bool
	}{
		{"GET root", http.MethodGet, id + ".lambda-url.us-east-1.on.aws", "/", Invoke{Function: id, Region: "us-east-1", Type: RequestResponse, FunctionURL: true}, true},
		{"POST with path and port", http.MethodPost, id + ".lambda-url.eu-west-1.on.aws:443", "/orders/7?x=1", Invoke{Function: id, Region: "eu-west-1", Type: RequestResponse, FunctionURL: true}, true},
		{"upper case, trailing dot", http.MethodPut, "ABC.LAMBDA-URL.US-WEST-2.ON.AWS.", "/", Invoke{Function: "abc", Region: "us-west-2", Type: RequestResponse, FunctionURL: true}, true},
		{"not a function URL: other on.aws", http.MethodGet, "x.y.us-east-1.on.aws", "/", Invoke{}, false},
		{"not a function URL: extra label", http.MethodGet, "a.b.lambda-url.us-east-1.on.aws", "/", Invoke{}, false},
		{"not a function URL: suffix look-alike", http.MethodGet, id + ".lambda-url.us-east-1.on.aws.evil.test", "/", Invoke{}, false},
		{"not a function URL: no id", http.MethodGet, ".lambda-url.us-east-1.on.aws", "/", Invoke{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "https://placeholder"+tc.path, nil)
			req.Host = tc.host
			got, ok := Recognize(req)
			if ok != tc.ok || got != tc.want {
				t.Errorf("Recognize = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
