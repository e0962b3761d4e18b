package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

const (
	// emptySHA256 is the hex SHA-256 of an empty payload.
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// unsignedPayload is the X-Amz-Content-Sha256 value of an unsigned body.
	unsignedPayload = "UNSIGNED-PAYLOAD"
	// replayBufferMax is the largest body of known length that is buffered
	// (though its hash is already known) so that a skew retry can send it
	// again. Larger bodies stream through once.
	replayBufferMax = 1 << 20
)

// payload is Prepare's decision about a request body.
type payload struct {
	hash          string        // value signed as the payload hash
	mode          StreamingMode // aws-chunked mode, "" if none
	addHashHeader bool          // add X-Amz-Content-Sha256 (S3 requires it)
	decodedLen    int64         // X-Amz-Decoded-Content-Length, -1 unknown
}

// preparePayload keeps the client's X-Amz-Content-Sha256 when it sent one
// and otherwise hashes the body, buffering it (up to MaxBufferedBody). The
// body goes into b.
func (s *Signer) preparePayload(req *http.Request, sc Scope, b *body) (payload, error) {
	pl := payload{decodedLen: -1}
	vals := headerValues(req.Header, "X-Amz-Content-Sha256")
	if len(vals) > 1 {
		return pl, badRequest("InvalidArgument", "more than one X-Amz-Content-Sha256 header", nil)
	}
	v := ""
	if len(vals) == 1 {
		v = strings.TrimSpace(vals[0])
	}
	switch m := StreamingMode(v); {
	case v == "":
		sum, err := s.hashBody(req, b)
		if err != nil {
			return pl, err
		}
		pl.hash, pl.addHashHeader = sum, sc.S3
		return pl, nil
	case v == unsignedPayload || isHex64(v):
		pl.hash = v
	case m == StreamingECDSA || m == StreamingECDSATrailer:
		return pl, &RequestError{Status: http.StatusNotImplemented, Code: "NotImplemented",
			Message: "aws-chunked payload mode " + v + " (SigV4A) is not supported by skewproxy"}
	case m == StreamingUnsignedTrailer || m == StreamingSigned || m == StreamingSignedTrailer:
		pl.hash, pl.mode = v, m
		if d := headerValues(req.Header, "X-Amz-Decoded-Content-Length"); len(d) == 1 {
			if n, err := strconv.ParseInt(strings.TrimSpace(d[0]), 10, 64); err == nil && n >= 0 {
				pl.decodedLen = n
			}
		}
	case strings.HasPrefix(v, "STREAMING-"):
		return pl, &RequestError{Status: http.StatusNotImplemented, Code: "NotImplemented",
			Message: "payload mode " + quoteShort(v) + " is not supported by skewproxy"}
	default:
		return pl, badRequest("InvalidArgument", "X-Amz-Content-Sha256 is neither a SHA-256 hex digest nor a known payload mode", nil)
	}
	if err := s.passthroughBody(req, b); err != nil {
		return pl, err
	}
	return pl, nil
}

// hashBody buffers the whole body (up to MaxBufferedBody) into b and
// hashes it.
func (s *Signer) hashBody(req *http.Request, b *body) (string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		b.buffered = true
		return emptySHA256, nil
	}
	max := s.opts.MaxBufferedBody
	if req.ContentLength > max {
		return "", tooLarge(req.ContentLength, max)
	}
	data, err := readBody(req.Body, req.ContentLength, max, &b.probe)
	if err != nil {
		return "", badRequest("IncompleteBody", "could not read the request body", fmt.Errorf("read body: %w", err))
	}
	if int64(len(data)) > max {
		return "", tooLarge(-1, max)
	}
	sum := sha256.Sum256(data)
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], sum[:])
	b.buffered, b.buf, b.length = true, data, int64(len(data))
	return string(hexSum[:]), nil
}

// passthroughBody leaves a body whose hash is already known as it is,
// except that a small body of known length is buffered to be replayable.
// The body goes into b.
func (s *Signer) passthroughBody(req *http.Request, b *body) error {
	if req.Body == nil || req.Body == http.NoBody {
		b.buffered = true
		return nil
	}
	if n := req.ContentLength; n > 0 && n <= replayBufferMax {
		data, err := readBody(req.Body, n, n, &b.probe)
		if err != nil {
			return badRequest("IncompleteBody", "could not read the request body", fmt.Errorf("read body: %w", err))
		}
		if int64(len(data)) != n {
			return badRequest("IncompleteBody", "request body length differs from Content-Length", nil)
		}
		b.buffered, b.buf, b.length = true, data, n
		return nil
	}
	b.stream, b.length = req.Body, req.ContentLength
	return nil
}

// readBodyUpfront is the largest declared length readBody allocates before
// the data arrives.
const readBodyUpfront = 64 << 10

// readBody reads r up to max+1 bytes (so that an oversize body shows),
// sizing the buffer from the declared length n when known. A body of known
// length is read into a buffer of exactly n bytes (a 1 KiB body stays in
// the 1 KiB size class) and the byte past it, if any, through probe.
func readBody(r io.Reader, n, max int64, probe *[1]byte) ([]byte, error) {
	if n < 0 || n > max {
		return io.ReadAll(io.LimitReader(r, max+1))
	}
	if n > readBodyUpfront {
		// Grow with the data that arrives, not with what the client
		// declared: a slow or lying client must not pin its declared length.
		var b bytes.Buffer
		b.Grow(readBodyUpfront)
		if _, err := b.ReadFrom(io.LimitReader(r, n+1)); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(r, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:got], nil
	case err != nil:
		return nil, err
	}
	// One more byte to see a body longer than declared.
	switch extra, err := io.ReadFull(r, probe[:]); {
	case extra == 1:
		return append(buf, probe[0]), nil
	case err == io.EOF:
		return buf, nil
	default:
		return nil, err
	}
}

func tooLarge(n, max int64) *RequestError {
	detail := fmt.Errorf("body exceeds the %d-byte buffer limit", max)
	if n >= 0 {
		detail = fmt.Errorf("body of %d bytes exceeds the %d-byte buffer limit", n, max)
	}
	return &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "EntityTooLarge",
		Message: "request body too large to hash; send X-Amz-Content-Sha256 or UNSIGNED-PAYLOAD", Err: detail}
}

// body is a request body as Sign hands it out: a buffer that can be read
// any number of times, or a stream that can be sent once.
//
// A body lives inside a Prepared, which callers may copy: it holds no
// sync/atomic value (taken is used through atomic functions).
type body struct {
	buffered bool
	buf      []byte
	stream   io.ReadCloser
	taken    int32 // 1 once stream was handed out
	length   int64 // outgoing ContentLength; -1 unknown
	probe    [1]byte
}

func (b *body) replayable() bool { return b.buffered }

// bytesBody is a buffered body as one allocation (io.NopCloser around a
// bytes.Reader is two).
type bytesBody struct{ bytes.Reader }

func (*bytesBody) Close() error { return nil }

func (b *body) reader() (io.ReadCloser, error) {
	if b.buffered {
		if len(b.buf) == 0 {
			return http.NoBody, nil
		}
		r := new(bytesBody)
		r.Reset(b.buf)
		return r, nil
	}
	if atomic.SwapInt32(&b.taken, 1) != 0 {
		return nil, errors.New("signer: the request body was already sent and cannot be replayed")
	}
	return b.stream, nil
}

// attach gives out a fresh body reader, ContentLength and GetBody;
// getBody is b.reader, made once by the caller.
func (b *body) attach(out *http.Request, getBody func() (io.ReadCloser, error)) error {
	rc, err := b.reader()
	if err != nil {
		return err
	}
	out.Body = rc
	out.ContentLength = b.length
	if b.buffered {
		out.ContentLength = int64(len(b.buf))
		out.TransferEncoding = nil
		out.GetBody = getBody
	} else {
		out.GetBody = nil
	}
	return nil
}

// resignChunks replaces out's aws-chunked body with one whose chunk
// signatures chain from the new seed signature.
func (s *Signer) resignChunks(out *http.Request, creds aws.Credentials, t time.Time, plan *signPlan, seed string) error {
	if len(seed) != 64 {
		return errors.New("signer: no seed signature after signing")
	}
	t = t.UTC()
	date := t.Format("20060102")
	params := ChunkParams{
		Mode:          plan.mode,
		SigningKey:    s.SigningKey(creds.SecretAccessKey, date, plan.region, plan.service),
		Time:          t,
		Scope:         date + "/" + plan.region + "/" + plan.service + "/aws4_request",
		SeedSignature: seed,
		DecodedLength: plan.decodedLen,
	}
	out.Body = NewChunkResigner(out.Body, params)
	if get := out.GetBody; get != nil {
		out.GetBody = func() (io.ReadCloser, error) {
			rc, err := get()
			if err != nil {
				return nil, err
			}
			return NewChunkResigner(rc, params), nil
		}
	}
	return nil
}

func isHex64(v string) bool {
	if len(v) != 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// payloadKind names a payload hash for logs without printing it.
func payloadKind(h string) string {
	switch {
	case h == unsignedPayload, strings.HasPrefix(h, "STREAMING-"):
		return h
	case h == emptySHA256:
		return "empty"
	default:
		return "sha256"
	}
}
