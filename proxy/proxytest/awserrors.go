package proxytest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// protocol is how a service spells its errors.
type protocol int

const (
	// protoJSON: REST-JSON / JSON services (Lambda, API Gateway, most others):
	// x-amzn-ErrorType header and a {"message": ...} body.
	protoJSON protocol = iota
	// protoQuery: the query protocol (STS): <ErrorResponse> XML.
	protoQuery
	// protoS3: S3's <Error> XML.
	protoS3
)

// FailMode is a failure the fake answers with on purpose (see AWS.FailNext),
// whatever the request's signature.
type FailMode int

// The injectable failures.
const (
	// FailModeSignatureExpired answers "Signature expired: <X-Amz-Date> is now
	// earlier than ..." quoting the server time (S3: RequestTimeTooSkewed).
	FailModeSignatureExpired FailMode = iota + 1
	// FailModeSignatureNotYetCurrent answers "Signature not yet current: ...".
	FailModeSignatureNotYetCurrent
	// FailModeSignatureMismatch answers the "signature we calculated does
	// not match" error.
	FailModeSignatureMismatch
	// FailModeUnknownKey answers UnrecognizedClientException / InvalidClientTokenId.
	FailModeUnknownKey
	// FailModeExpiredToken answers ExpiredTokenException / ExpiredToken.
	FailModeExpiredToken
	// FailModeThrottle answers 429 TooManyRequestsException (STS: 400
	// Throttling, S3: 503 SlowDown).
	FailModeThrottle
	// FailModeInternalError answers a 500 service error.
	FailModeInternalError
)

// String names the mode.
func (m FailMode) String() string {
	switch m {
	case FailModeSignatureExpired:
		return "signature_expired"
	case FailModeSignatureNotYetCurrent:
		return "signature_not_yet_current"
	case FailModeSignatureMismatch:
		return "signature_mismatch"
	case FailModeUnknownKey:
		return "unknown_key"
	case FailModeExpiredToken:
		return "expired_token"
	case FailModeThrottle:
		return "throttle"
	case FailModeInternalError:
		return "internal_error"
	}
	return "FailMode(" + strconv.Itoa(int(m)) + ")"
}

// The AWS message texts, exactly as AWS words them.
const (
	msgMismatch      = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgS3Mismatch    = "The request signature we calculated does not match the signature you provided. Check your key and signing method."
	msgInvalidToken  = "The security token included in the request is invalid."
	msgExpiredToken  = "The security token included in the request is expired"
	msgS3Skewed      = "The difference between the request time and the current time is too large."
	msgRequestExpire = "Request has expired"
)

// FormatAMZDate formats t the way SigV4 and AWS error messages do
// (20230118T161739Z).
func FormatAMZDate(t time.Time) string { return t.UTC().Format(amzDateFmt) }

// SignatureExpiredMessage is AWS's text for a signing time older than the
// window: "Signature expired: 20230118T161739Z is now earlier than
// 20230118T162240Z (20230118T162740Z - 5 min.)".
func SignatureExpiredMessage(signed, now time.Time, window time.Duration) string {
	return fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
		FormatAMZDate(signed), FormatAMZDate(now.Add(-window)), FormatAMZDate(now), windowText(window))
}

// SignatureNotYetCurrentMessage is AWS's text for a signing time beyond the
// window in the future: "Signature not yet current: 20230118T164739Z is still
// later than 20230118T164240Z (20230118T162740Z + 15 min.)".
func SignatureNotYetCurrentMessage(signed, now time.Time, window time.Duration) string {
	return fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s.)",
		FormatAMZDate(signed), FormatAMZDate(now.Add(window)), FormatAMZDate(now), windowText(window))
}

func windowText(d time.Duration) string {
	return strconv.FormatFloat(d.Minutes(), 'f', -1, 64) + " min"
}

// awsError is one error answer before it is spelled for a protocol.
type awsError struct {
	status  int
	code    string
	message string
	// body fields for JSON beyond "message" (Lambda's Reason and Type).
	jsonExtra map[string]string
	// extra elements for S3's <Error> (RequestTime, ServerTime, ...).
	s3Extra [][2]string
}

// verifyFailure maps a verification failure to the protocol's answer.
func verifyFailure(p protocol, ve *VerifyError) awsError {
	switch ve.Kind {
	case FailMissingAuth:
		return pick(p,
			awsError{status: 403, code: "MissingAuthenticationTokenException", message: "Missing Authentication Token"},
			awsError{status: 403, code: "MissingAuthenticationToken", message: "Request is missing Authentication Token"},
			awsError{status: 403, code: "AccessDenied", message: "Access Denied"})
	case FailMalformed:
		return pick(p,
			awsError{status: 400, code: "IncompleteSignatureException", message: ve.Detail},
			awsError{status: 400, code: "IncompleteSignature", message: ve.Detail},
			awsError{status: 400, code: "AuthorizationHeaderMalformed", message: ve.Detail})
	case FailUnknownKey:
		return pick(p,
			awsError{status: 403, code: "UnrecognizedClientException", message: msgInvalidToken},
			awsError{status: 403, code: "InvalidClientTokenId", message: msgInvalidToken},
			awsError{status: 403, code: "InvalidAccessKeyId", message: "The AWS Access Key Id you provided does not exist in our records."})
	case FailExpiredToken:
		return pick(p,
			awsError{status: 403, code: "ExpiredTokenException", message: msgExpiredToken},
			awsError{status: 403, code: "ExpiredToken", message: msgExpiredToken},
			awsError{status: 400, code: "ExpiredToken", message: "The provided token has expired."})
	case FailBadToken:
		return pick(p,
			awsError{status: 403, code: "UnrecognizedClientException", message: msgInvalidToken},
			awsError{status: 403, code: "InvalidClientTokenId", message: msgInvalidToken},
			awsError{status: 400, code: "InvalidToken", message: "The provided token is malformed or otherwise invalid."})
	case FailExpired, FailNotYetCurrent:
		msg := SignatureExpiredMessage(ve.SigningTime, ve.ServerTime, ve.Window)
		if ve.Kind == FailNotYetCurrent {
			msg = SignatureNotYetCurrentMessage(ve.SigningTime, ve.ServerTime, ve.Window)
		}
		return pick(p,
			awsError{status: 403, code: "InvalidSignatureException", message: msg},
			awsError{status: 403, code: "SignatureDoesNotMatch", message: msg},
			awsError{status: 403, code: "RequestTimeTooSkewed", message: msgS3Skewed, s3Extra: [][2]string{
				{"RequestTime", FormatAMZDate(ve.SigningTime)},
				{"ServerTime", ve.ServerTime.UTC().Format(time.RFC3339)},
				{"MaxAllowedSkewMilliseconds", strconv.FormatInt(ve.Window.Milliseconds(), 10)},
			}})
	case FailPresignedExpired:
		return pick(p,
			awsError{status: 403, code: "InvalidSignatureException", message: msgRequestExpire},
			awsError{status: 403, code: "SignatureDoesNotMatch", message: msgRequestExpire},
			awsError{status: 403, code: "AccessDenied", message: msgRequestExpire, s3Extra: [][2]string{
				{"X-Amz-Expires", strconv.Itoa(int(ve.Expires / time.Second))},
				{"Expires", ve.SigningTime.Add(ve.Expires).UTC().Format(time.RFC3339)},
				{"ServerTime", ve.ServerTime.UTC().Format(time.RFC3339)},
			}})
	case FailPayloadHash:
		return pick(p,
			awsError{status: 403, code: "InvalidSignatureException", message: msgMismatch},
			awsError{status: 403, code: "SignatureDoesNotMatch", message: msgMismatch},
			awsError{status: 400, code: "XAmzContentSHA256Mismatch", message: "The provided 'x-amz-content-sha256' header does not match what was computed."})
	default: // FailMismatch
		return pick(p,
			awsError{status: 403, code: "InvalidSignatureException", message: msgMismatch},
			awsError{status: 403, code: "SignatureDoesNotMatch", message: msgMismatch},
			awsError{status: 403, code: "SignatureDoesNotMatch", message: msgS3Mismatch})
	}
}

// injectedFailure maps a FailMode to the protocol's answer. signed is the
// request's signing time (or a stand-in), now the server time.
func injectedFailure(p protocol, m FailMode, signed, now time.Time, past, future time.Duration) awsError {
	switch m {
	case FailModeSignatureExpired:
		return verifyFailure(p, &VerifyError{Kind: FailExpired, SigningTime: signed, ServerTime: now, Window: past})
	case FailModeSignatureNotYetCurrent:
		return verifyFailure(p, &VerifyError{Kind: FailNotYetCurrent, SigningTime: signed, ServerTime: now, Window: future})
	case FailModeSignatureMismatch:
		return verifyFailure(p, &VerifyError{Kind: FailMismatch})
	case FailModeUnknownKey:
		return verifyFailure(p, &VerifyError{Kind: FailUnknownKey})
	case FailModeExpiredToken:
		return pick(p,
			awsError{status: 403, code: "ExpiredTokenException", message: msgExpiredToken},
			awsError{status: 403, code: "ExpiredToken", message: msgExpiredToken},
			awsError{status: 400, code: "ExpiredToken", message: "The provided token has expired."})
	case FailModeThrottle:
		return pick(p,
			awsError{status: 429, code: "TooManyRequestsException", message: "Rate exceeded", jsonExtra: map[string]string{"Reason": "CallerRateLimitExceeded", "Type": "User"}},
			awsError{status: 400, code: "Throttling", message: "Rate exceeded"},
			awsError{status: 503, code: "SlowDown", message: "Please reduce your request rate."})
	default:
		return pick(p,
			awsError{status: 500, code: "ServiceException", message: "An internal error occurred."},
			awsError{status: 500, code: "InternalFailure", message: "An internal error occurred."},
			awsError{status: 500, code: "InternalError", message: "We encountered an internal error. Please try again."})
	}
}

func pick(p protocol, jsonErr, queryErr, s3Err awsError) awsError {
	switch p {
	case protoQuery:
		return queryErr
	case protoS3:
		return s3Err
	}
	return jsonErr
}

// write sends e spelled for protocol p. The caller has set Date and the
// request id headers.
func (e awsError) write(w http.ResponseWriter, p protocol, requestID string) {
	var body []byte
	switch p {
	case protoQuery:
		typ := "Sender"
		if e.status >= 500 {
			typ = "Receiver"
		}
		var b bytes.Buffer
		b.WriteString(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">` + "\n  <Error>\n")
		writeXMLElem(&b, "    ", "Type", typ)
		writeXMLElem(&b, "    ", "Code", e.code)
		writeXMLElem(&b, "    ", "Message", e.message)
		b.WriteString("  </Error>\n")
		writeXMLElem(&b, "  ", "RequestId", requestID)
		b.WriteString("</ErrorResponse>\n")
		body = b.Bytes()
		w.Header().Set("Content-Type", "text/xml")
	case protoS3:
		var b bytes.Buffer
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error>")
		writeXMLElem(&b, "", "Code", e.code)
		writeXMLElem(&b, "", "Message", e.message)
		for _, kv := range e.s3Extra {
			writeXMLElem(&b, "", kv[0], kv[1])
		}
		writeXMLElem(&b, "", "RequestId", requestID)
		writeXMLElem(&b, "", "HostId", requestID)
		b.WriteString("</Error>")
		body = b.Bytes()
		w.Header().Set("Content-Type", "application/xml")
	default:
		m := map[string]string{"message": e.message}
		for k, v := range e.jsonExtra {
			m[k] = v
		}
		body, _ = json.Marshal(m)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", e.code)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

func writeXMLElem(b *bytes.Buffer, indent, name, value string) {
	b.WriteString(indent + "<" + name + ">")
	_ = xml.EscapeText(b, []byte(value))
	b.WriteString("</" + name + ">")
	if indent != "" {
		b.WriteByte('\n')
	}
}
