package awserrors

import (
	"bytes"
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Failure is a class of AWS failure, the value of the skewproxy.failure span
// attribute.
type Failure string

// The failure classes.
const (
	FailureNone                   Failure = ""
	FailureSignatureExpired       Failure = "signature_expired"
	FailureSignatureNotYetCurrent Failure = "signature_not_yet_current"
	FailureRequestTimeTooSkewed   Failure = "request_time_too_skewed"
	FailurePresignedExpired       Failure = "presigned_expired"
	FailureExpiredToken           Failure = "expired_token"
	FailureSignatureMismatch      Failure = "signature_mismatch"
	FailureThrottled              Failure = "throttled"
	FailureQueueTimeout           Failure = "queue_timeout"
)

// IsSkew reports whether f is a clock problem that re-signing with a
// corrected time fixes.
func (f Failure) IsSkew() bool {
	return f == FailureSignatureExpired || f == FailureSignatureNotYetCurrent || f == FailureRequestTimeTooSkewed
}

// Classification is what an AWS error answer says.
type Classification struct {
	Failure Failure
	// Code is the AWS error code (e.g. "InvalidSignatureException").
	Code string
	// Message is the AWS error message.
	Message string
	// ServerTime is the server's time when the answer carries it; zero otherwise.
	ServerTime time.Time
	// SigningTime is the request's signing time as the server quoted it; zero otherwise.
	SigningTime time.Time
	// RequestID is the AWS request id (x-amzn-RequestId, x-amz-request-id), if any.
	RequestID string
	// HostID is S3's extended request id (x-amz-id-2 or <HostId>), if any.
	HostID string
	// Expires is when a presigned URL expired (S3's <Expires>); zero otherwise.
	Expires time.Time
	// Window is the clock tolerance the server quoted ("- 5 min." in a
	// signature error, MaxAllowedSkewMilliseconds from S3); zero if none.
	Window time.Duration
}

const (
	// classifyMaxBody bounds how much of a body is searched.
	classifyMaxBody = 64 << 10
	// classifyMaxMessage bounds Classification.Message.
	classifyMaxMessage = 1 << 10
)

// errorFields are the raw strings an AWS error answer carries.
type errorFields struct {
	code, message                             string
	requestID, hostID                         string
	requestTime, serverTime, expires, maxSkew string
}

// Classify reads an AWS answer (status, headers, and up to the first few KiB
// of the body) and says which failure it is. A successful or unrecognised
// answer gives Failure == FailureNone. It never panics, whatever the input;
// the body may be truncated. Status 0 means "unknown" (as in Explain).
func Classify(status int, h http.Header, body []byte) Classification {
	f := parseErrorBody(body)
	if h != nil {
		if f.code == "" {
			f.code = h.Get("X-Amzn-Errortype")
		}
		if f.code == "" {
			// Query-compatible services: "AWS.SimpleQueueService.NonExistentQueue;Sender".
			f.code, _, _ = strings.Cut(h.Get("X-Amzn-Query-Error"), ";")
		}
		if f.message == "" {
			f.message = h.Get("X-Amzn-Errormessage")
		}
		for _, k := range []string{"X-Amzn-Requestid", "X-Amz-Request-Id"} {
			if v := h.Get(k); v != "" {
				f.requestID = v
				break
			}
		}
		if v := h.Get("X-Amz-Id-2"); v != "" {
			f.hostID = v
		}
	}
	c := classifyFields(status, f)
	if status > 0 && status < 400 {
		// A success that merely looks like an error is not one.
		return Classification{RequestID: c.RequestID, HostID: c.HostID}
	}
	return c
}

// parseErrorBody pulls the error fields out of a JSON, XML or plain-text
// error body, tolerating truncation.
func parseErrorBody(body []byte) errorFields {
	if len(body) > classifyMaxBody {
		body = body[:classifyMaxBody]
	}
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	var f errorFields
	switch {
	case len(body) == 0:
	case body[0] == '{':
		f.code = firstJSONString(body, "__type", "code", "Code", "errorCode", "ErrorCode")
		f.message = firstJSONString(body, "message", "Message", "errorMessage", "ErrorMessage")
		f.requestID = firstJSONString(body, "RequestId", "requestId", "RequestID")
	case body[0] == '<':
		f.code = xmlTag(body, "Code")
		f.message = xmlTag(body, "Message")
		f.requestID = xmlTag(body, "RequestId")
		if f.requestID == "" {
			f.requestID = xmlTag(body, "RequestID")
		}
		f.hostID = xmlTag(body, "HostId")
		f.requestTime = xmlTag(body, "RequestTime")
		f.serverTime = xmlTag(body, "ServerTime")
		f.expires = xmlTag(body, "Expires")
		f.maxSkew = xmlTag(body, "MaxAllowedSkewMilliseconds")
	default:
		f.message = string(body)
	}
	return f
}

var (
	// "Signature expired: X is now earlier than Y (Z - 5 min.)": X is the
	// signing time, Z the server time, Y = Z - window.
	sigExpiredRE = regexp.MustCompile(`Signature expired:\s*(\S+)\s+is now earlier than\s+(\S+?)(?:\s*\(\s*(\S+?)\s*-\s*(\d+)\s*min\.?\s*\))?(?:\s|\.|$)`)
	// "Signature not yet current: X is still later than Y (Z + 15 min.)".
	sigNotYetRE = regexp.MustCompile(`Signature not yet current:\s*(\S+)\s+is still later than\s+(\S+?)(?:\s*\(\s*(\S+?)\s*\+\s*(\d+)\s*min\.?\s*\))?(?:\s|\.|$)`)
)

// Error codes by class.
var (
	expiredTokenCodes = []string{"ExpiredToken", "ExpiredTokenException", "TokenExpired"}
	throttleCodes     = []string{
		"TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
		"SlowDown", "RequestLimitExceeded", "ProvisionedThroughputExceededException",
		"RequestThrottled", "RequestThrottledException", "TooManyRequests", "BandwidthLimitExceeded",
		"EC2ThrottledException", "PriorRequestNotComplete",
	}
)

// classifyFields decides the failure from the fields of an answer.
func classifyFields(status int, f errorFields) Classification {
	c := Classification{
		Code:      normalizeCode(f.code),
		Message:   clip(strings.TrimSpace(f.message), classifyMaxMessage),
		RequestID: clip(strings.TrimSpace(f.requestID), 256),
		HostID:    clip(strings.TrimSpace(f.hostID), 256),
	}
	msg, code := c.Message, c.Code
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(msg, "Signature expired"):
		c.Failure = FailureSignatureExpired
		if m := sigExpiredRE.FindStringSubmatch(msg); m != nil {
			c.SigningTime = parseAWSTime(m[1])
			c.ServerTime = parseAWSTime(m[3])
			c.Window = minutes(m[4])
		}
	case strings.Contains(msg, "Signature not yet current"):
		c.Failure = FailureSignatureNotYetCurrent
		if m := sigNotYetRE.FindStringSubmatch(msg); m != nil {
			c.SigningTime = parseAWSTime(m[1])
			c.ServerTime = parseAWSTime(m[3])
			c.Window = minutes(m[4])
		}
	case code == "RequestTimeTooSkewed" ||
		strings.Contains(lower, "difference between the request time and the current time is too large") ||
		strings.Contains(lower, "difference between the request time and the server's time is too large"):
		c.Failure = FailureRequestTimeTooSkewed
		c.SigningTime = parseAWSTime(f.requestTime)
		c.ServerTime = parseAWSTime(f.serverTime)
		if ms, err := strconv.ParseInt(strings.TrimSpace(f.maxSkew), 10, 64); err == nil && ms > 0 && ms < int64(365*24*time.Hour/time.Millisecond) {
			c.Window = time.Duration(ms) * time.Millisecond
		}
	case code == "RequestExpired" && status != http.StatusForbidden:
		// EC2 and other query services: the request (not a URL) arrived
		// more than the allowed window after its X-Amz-Date.
		c.Failure = FailureSignatureExpired
		c.ServerTime = parseAWSTime(f.serverTime)
	case strings.Contains(lower, "request has expired") &&
		(status == 0 || status == http.StatusForbidden || code == "AccessDenied" || code == "RequestExpired"):
		c.Failure = FailurePresignedExpired
		c.Expires = parseAWSTime(f.expires)
		c.ServerTime = parseAWSTime(f.serverTime)
	case oneOf(code, expiredTokenCodes) ||
		strings.Contains(lower, "security token included in the request is expired") ||
		strings.Contains(lower, "the provided token has expired"):
		c.Failure = FailureExpiredToken
	case code == "SignatureDoesNotMatch" ||
		strings.Contains(lower, "the request signature we calculated does not match"):
		c.Failure = FailureSignatureMismatch
	case status == http.StatusTooManyRequests || oneOf(code, throttleCodes) ||
		strings.Contains(lower, "rate exceeded"):
		c.Failure = FailureThrottled
	}
	return c
}

// normalizeCode strips the namespaces AWS puts around error codes:
// "com.amazon.coral.service#InvalidSignatureException",
// "InvalidSignatureException:http://internal.amazon.com/coral/...".
func normalizeCode(code string) string {
	code = strings.TrimSpace(code)
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	return clip(code, 128)
}

// awsTimeLayouts are the time formats AWS error bodies use.
var awsTimeLayouts = []string{
	"20060102T150405Z",
	time.RFC3339Nano,
	time.RFC1123,
	time.RFC1123Z,
	"20060102T150405",
	"2006-01-02T15:04:05",
	time.RFC850,
	time.ANSIC,
}

// parseAWSTime parses any time format AWS error bodies use, or returns the
// zero time.
func parseAWSTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return time.Time{}
	}
	for _, layout := range awsTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func minutes(s string) time.Duration {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 7*24*60 {
		return 0
	}
	return time.Duration(n) * time.Minute
}

// firstJSONString returns the string value of the first of keys found in
// a (possibly truncated) JSON object.
func firstJSONString(body []byte, keys ...string) string {
	for _, k := range keys {
		if v, ok := jsonString(body, k); ok {
			return v
		}
	}
	return ""
}

// jsonString finds "key": "value" in body without requiring the document
// to be complete. A value cut off by truncation is returned as far as it goes.
func jsonString(body []byte, key string) (string, bool) {
	needle := []byte(`"` + key + `"`)
	for off := 0; off < len(body); {
		i := bytes.Index(body[off:], needle)
		if i < 0 {
			return "", false
		}
		rest := bytes.TrimLeft(body[off+i+len(needle):], " \t\r\n")
		off += i + len(needle)
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if len(rest) == 0 || rest[0] != '"' {
			continue // null, number, object: not a string value
		}
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) { // truncated string
			return string(bytes.ReplaceAll(rest[1:], []byte(`\"`), []byte(`"`))), true
		}
		var s string
		if err := json.Unmarshal(rest[:end+1], &s); err != nil {
			return string(rest[1:end]), true
		}
		return s, true
	}
	return "", false
}

// xmlTag returns the unescaped text of the first <tag>...</tag> in body.
func xmlTag(body []byte, tag string) string {
	open := []byte("<" + tag + ">")
	i := bytes.Index(body, open)
	if i < 0 {
		return ""
	}
	rest := body[i+len(open):]
	j := bytes.Index(rest, []byte("</"+tag+">"))
	if j < 0 {
		if tag != "Message" {
			return ""
		}
		j = len(rest) // truncated message: keep what arrived
		if k := bytes.IndexByte(rest, '<'); k >= 0 {
			j = k
		}
	}
	return html.UnescapeString(string(rest[:j]))
}

func oneOf(s string, list []string) bool {
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}

// clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// API Gateway failure classes returned by ClassifyAPIGateway.
const (
	APIGatewayExplicitDeny        = "explicit_deny"
	APIGatewayImplicitDeny        = "implicit_deny"
	APIGatewayUnauthorized        = "unauthorized"
	APIGatewayAuthorizerOrConfig  = "authorizer_or_config_error"
	APIGatewayIntegrationError    = "integration_error"
	APIGatewayIntegrationTimeout  = "integration_timeout"
	apiGatewayMessageNullCompact  = `{"message":null}`
	apiGatewayNotAuthorizedPrefix = "is not authorized to perform"
)

// ClassifyAPIGateway tells the standard answers of Amazon API Gateway
// apart: "explicit_deny" (403, an IAM or resource policy denies),
// "implicit_deny" (403, nothing allows), "unauthorized" (401, a Lambda or
// Cognito authorizer refused), "authorizer_or_config_error" (500 with
// {"message": null}), "integration_error" (502), "integration_timeout"
// (504), and "" for anything else.
func ClassifyAPIGateway(status int, body []byte) string {
	if len(body) > classifyMaxBody {
		body = body[:classifyMaxBody]
	}
	msg := firstJSONString(body, "message", "Message")
	if msg == "" {
		msg = string(body)
	}
	lower := strings.ToLower(msg)
	switch status {
	case http.StatusForbidden:
		switch {
		case strings.Contains(lower, "with an explicit deny"):
			return APIGatewayExplicitDeny
		case strings.Contains(lower, "user is not authorized to access this resource"),
			strings.Contains(lower, apiGatewayNotAuthorizedPrefix):
			return APIGatewayImplicitDeny
		}
	case http.StatusUnauthorized:
		if strings.Contains(lower, "unauthorized") {
			return APIGatewayUnauthorized
		}
	case http.StatusInternalServerError:
		compact := strings.Join(strings.Fields(string(body)), "")
		if compact == apiGatewayMessageNullCompact {
			return APIGatewayAuthorizerOrConfig
		}
	case http.StatusBadGateway:
		if strings.Contains(lower, "internal server error") {
			return APIGatewayIntegrationError
		}
	case http.StatusGatewayTimeout:
		if strings.Contains(lower, "endpoint request timed out") {
			return APIGatewayIntegrationTimeout
		}
	}
	return ""
}
