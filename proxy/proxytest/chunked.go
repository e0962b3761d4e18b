package proxytest

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// StreamingPayload is the x-amz-content-sha256 value of a SigV4-signed
// aws-chunked body.
const StreamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

// VerifyChunked checks an aws-chunked body signed with
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk
// ("<hex size>;chunk-signature=<sig>\r\n<data>\r\n", ending with a
// zero-size chunk) must carry the signature chained from v.Signature. It
// returns the decoded payload. v is what Verify returned for the request's
// headers. Errors are *VerifyError of kind FailChunkSignature.
// Trailer variants (STREAMING-...-TRAILER) are not supported.
func VerifyChunked(body []byte, v *Verified, creds Credentials) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return &VerifyError{Kind: FailChunkSignature, Detail: fmt.Sprintf(format, args...)}
	}
	if v == nil || v.PayloadHash != StreamingPayload {
		return nil, fail("request is not signed as %s", StreamingPayload)
	}
	day := v.SigningTime.Format(scopeDayFmt)
	key := signingKey(creds.SecretAccessKey, day, v.Region, v.Service)
	scope := strings.Join([]string{day, v.Region, v.Service, "aws4_request"}, "/")
	prev := v.Signature
	var out []byte
	rest := body
	for i := 0; ; i++ {
		line, after, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return nil, fail("chunk %d: no header line", i)
		}
		sizeHex, ext, ok := strings.Cut(string(line), ";chunk-signature=")
		if !ok {
			return nil, fail("chunk %d: header without chunk-signature", i)
		}
		size, err := strconv.ParseUint(sizeHex, 16, 31)
		if err != nil || uint64(len(after)) < size+2 || string(after[size:size+2]) != "\r\n" {
			return nil, fail("chunk %d: bad size or framing", i)
		}
		data := after[:size]
		sts := strings.Join([]string{"AWS4-HMAC-SHA256-PAYLOAD", FormatAMZDate(v.SigningTime), scope, prev, emptySHA256, hexSHA256(data)}, "\n")
		want := hex.EncodeToString(hmacSHA256(key, sts))
		if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(ext))) != 1 {
			return nil, fail("chunk %d: signature does not match", i)
		}
		prev = want
		out = append(out, data...)
		rest = after[size+2:]
		if size == 0 {
			if len(rest) != 0 {
				return nil, fail("%d bytes after the final chunk", len(rest))
			}
			return out, nil
		}
	}
}
