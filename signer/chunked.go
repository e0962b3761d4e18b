package signer

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ChunkParams says how to re-sign an aws-chunked body.
type ChunkParams struct {
	Mode          StreamingMode // StreamingSigned or StreamingSignedTrailer
	SigningKey    []byte        // derived key (kSigning) of the credentials that signed the seed
	Time          time.Time     // the seed's signing time (X-Amz-Date)
	Scope         string        // "20130524/us-east-1/s3/aws4_request"
	SeedSignature string        // hex signature of the re-signed headers (the new seed)
	DecodedLength int64         // x-amz-decoded-content-length; -1 if unknown
	MaxChunkSize  int           // 0 means 16 MiB
}

const (
	// DefaultMaxChunkSize is the largest chunk accepted when
	// ChunkParams.MaxChunkSize is 0 (S3 and MinIO refuse larger ones).
	DefaultMaxChunkSize = 16 << 20

	chunkSigPrefix      = ";chunk-signature="
	trailerSigPrefix    = "x-amz-trailer-signature:"
	chunkEmptySHA256    = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxChunkSizeDigits  = 16      // hex digits in a chunk size; 16 cannot overflow uint64
	chunkLineBufferSize = 4 << 10 // longest header or trailer line accepted
	maxTrailerBytes     = 16 << 10
	maxTrailerEntries   = 64
	chunkBufferQuantum  = 64 << 10 // chunk buffers are sized in multiples of this
)

// The aws-chunked error codes a client gets from a malformed body.
const (
	CodeInvalidChunkEncoding = "InvalidChunkEncoding"
	CodeIncompleteBody       = "IncompleteBody"
)

// chunkBufPool recycles chunk buffers (*[]byte) between re-signers so that a
// busy proxy does not allocate one chunk per request.
var chunkBufPool sync.Pool

// NewChunkResigner returns a reader that decodes the client's aws-chunked
// body and emits the same framing with every chunk signature (and, in
// StreamingSignedTrailer mode, the trailer signature) replaced by one chained
// from p.SeedSignature with p.SigningKey. Chunk sizes, data and trailer lines
// pass through untouched, so the output is exactly as long as the input.
//
// The client's own chunk signatures are checked for syntax only: they were
// made with the client's keys, which the proxy need not know.
//
// Memory use is one chunk (at most MaxChunkSize) plus a few KiB. A malformed
// body makes Read fail with a *RequestError (Status 400, Code
// CodeInvalidChunkEncoding or CodeIncompleteBody); a failure of body itself
// is returned wrapped. Close closes body if it is an io.Closer; Close may be
// called concurrently with Read.
func NewChunkResigner(body io.Reader, p ChunkParams) io.ReadCloser {
	r := &chunkResigner{src: bufio.NewReaderSize(body, chunkLineBufferSize), p: p}
	r.crlf = [2]byte{'\r', '\n'}
	if c, ok := body.(io.Closer); ok {
		r.closer = c
	}
	r.max = p.MaxChunkSize
	if r.max <= 0 {
		r.max = DefaultMaxChunkSize
	}
	if err := r.init(); err != nil {
		r.err = err
	}
	return r
}

// chunkResigner is the io.ReadCloser built by NewChunkResigner.
type chunkResigner struct {
	src    *bufio.Reader
	closer io.Closer
	p      ChunkParams
	max    int

	mac           hash.Hash
	sha           hash.Hash
	payloadPrefix []byte // "AWS4-HMAC-SHA256-PAYLOAD\n<time>\n<scope>\n"
	trailerPrefix []byte // "AWS4-HMAC-SHA256-TRAILER\n<time>\n<scope>\n"
	emptyLine     []byte // sha256("") in hex and "\n"
	prev          [64]byte
	sum           [sha256.Size]byte
	hexSum        [64]byte
	crlf          [2]byte
	scratch       [2]byte
	sigPrefix     []byte // ";chunk-signature="

	hdr  []byte  // the current chunk's header line as emitted
	tail []byte  // the final chunk's trailer section as emitted
	bufp *[]byte // chunk data buffer from chunkBufPool

	segs     [3][]byte // output waiting to be read, in order
	nseg     int
	iseg     int
	total    int64 // decoded bytes seen so far
	finished bool  // the whole body has been decoded and checked
	err      error // sticky: returned once segs are drained
	closed   atomic.Bool
}

var _ io.ReadCloser = (*chunkResigner)(nil)

func (r *chunkResigner) init() error {
	switch r.p.Mode {
	case StreamingSigned, StreamingSignedTrailer:
	default:
		return fmt.Errorf("signer: chunk re-signer cannot sign mode %q", r.p.Mode)
	}
	if len(r.p.SigningKey) == 0 {
		return errors.New("signer: chunk re-signer needs a signing key")
	}
	if r.p.Scope == "" || r.p.Time.IsZero() {
		return errors.New("signer: chunk re-signer needs a scope and a signing time")
	}
	if !lowerHexN(r.p.SeedSignature, 64) {
		return errors.New("signer: chunk re-signer seed signature must be 64 lower-case hex digits")
	}
	copy(r.prev[:], r.p.SeedSignature)
	date := r.p.Time.UTC().Format(chunkTimeLayout)
	r.payloadPrefix = []byte("AWS4-HMAC-SHA256-PAYLOAD\n" + date + "\n" + r.p.Scope + "\n")
	r.trailerPrefix = []byte("AWS4-HMAC-SHA256-TRAILER\n" + date + "\n" + r.p.Scope + "\n")
	r.sigPrefix = []byte(chunkSigPrefix)
	r.emptyLine = []byte(chunkEmptySHA256 + "\n")
	r.mac = hmac.New(sha256.New, r.p.SigningKey)
	r.sha = sha256.New()
	r.hdr = make([]byte, 0, 128)
	return nil
}

// chunkTimeLayout is the ISO 8601 basic format of X-Amz-Date.
const chunkTimeLayout = "20060102T150405Z"

// Read implements io.Reader.
func (r *chunkResigner) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if r.closed.Load() {
			return n, errors.New("signer: read from a closed chunk re-signer")
		}
		if r.iseg < r.nseg {
			seg := r.segs[r.iseg]
			c := copy(p[n:], seg)
			n += c
			if c == len(seg) {
				r.segs[r.iseg] = nil
				r.iseg++
			} else {
				r.segs[r.iseg] = seg[c:]
			}
			continue
		}
		if n > 0 {
			// Hand over what is ready before blocking on the next chunk.
			return n, nil
		}
		if r.err != nil {
			return 0, r.err
		}
		if err := r.next(); err != nil {
			r.err = err
			r.release()
		}
	}
	return n, nil
}

// Close implements io.Closer. The chunk buffer is left to the garbage
// collector because a concurrent Read may still hold it.
func (r *chunkResigner) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if r.closer != nil {
		if err := r.closer.Close(); err != nil {
			return fmt.Errorf("signer: closing aws-chunked body: %w", err)
		}
	}
	return nil
}

func (r *chunkResigner) release() {
	if r.bufp != nil {
		chunkBufPool.Put(r.bufp)
		r.bufp = nil
	}
}

// emit queues output segments for Read.
func (r *chunkResigner) emit(segs ...[]byte) {
	r.nseg = copy(r.segs[:], segs)
	r.iseg = 0
}

// next decodes one chunk (or the final chunk and its trailer) and queues
// its re-signed form.
func (r *chunkResigner) next() error {
	if r.finished {
		return io.EOF
	}
	line, err := r.readLine("chunk header")
	if err != nil {
		return err
	}
	sizeText, size, err := r.parseChunkHeader(line)
	if err != nil {
		return err
	}
	// line points into the bufio buffer: copy what is kept before reading on.
	r.hdr = append(append(r.hdr[:0], sizeText...), chunkSigPrefix...)

	if r.p.DecodedLength >= 0 && r.total+int64(size) > r.p.DecodedLength {
		return chunkError(CodeInvalidChunkEncoding,
			fmt.Sprintf("aws-chunked body carries more than the %d bytes announced in x-amz-decoded-content-length", r.p.DecodedLength), nil)
	}
	data := r.buffer(size)
	if _, err := io.ReadFull(r.src, data); err != nil {
		return r.truncated("chunk data", err)
	}
	r.total += int64(size)

	r.sha.Reset()
	r.sha.Write(data)
	r.sign(r.payloadPrefix, true)
	r.hdr = append(append(r.hdr, r.prev[:]...), '\r', '\n')

	if size > 0 {
		if err := r.expectCRLF("after chunk data"); err != nil {
			return err
		}
		r.emit(r.hdr, data, r.crlf[:])
		return nil
	}

	// The zero-length chunk ends the data.
	if r.p.DecodedLength >= 0 && r.total != r.p.DecodedLength {
		return chunkError(CodeIncompleteBody,
			fmt.Sprintf("aws-chunked body carries %d bytes but x-amz-decoded-content-length says %d", r.total, r.p.DecodedLength), nil)
	}
	if r.p.Mode == StreamingSignedTrailer {
		if err := r.readTrailer(); err != nil {
			return err
		}
	} else {
		if err := r.expectCRLF("after the final chunk"); err != nil {
			return err
		}
		r.tail = append(r.tail[:0], '\r', '\n')
	}
	if err := r.expectEOF(); err != nil {
		return err
	}
	r.finished = true
	r.emit(r.hdr, r.tail)
	return nil
}

// sign chains the next signature over the hash in r.sha into r.prev.
func (r *chunkResigner) sign(prefix []byte, payload bool) {
	hex.Encode(r.hexSum[:], r.sha.Sum(r.sum[:0]))
	r.mac.Reset()
	r.mac.Write(prefix)
	r.mac.Write(r.prev[:])
	r.mac.Write(r.crlf[1:]) // "\n"
	if payload {
		r.mac.Write(r.emptyLine)
	}
	r.mac.Write(r.hexSum[:])
	hex.Encode(r.prev[:], r.mac.Sum(r.sum[:0]))
}

// buffer returns a chunk buffer of n bytes, reusing the current one or one
// from the pool when it is large enough.
func (r *chunkResigner) buffer(n int) []byte {
	if r.bufp != nil && cap(*r.bufp) >= n {
		return (*r.bufp)[:n]
	}
	r.release()
	if v, ok := chunkBufPool.Get().(*[]byte); ok && cap(*v) >= n {
		r.bufp = v
		return (*v)[:n]
	}
	c := (n + chunkBufferQuantum - 1) / chunkBufferQuantum * chunkBufferQuantum
	b := make([]byte, c)
	r.bufp = &b
	return b[:n]
}

// readLine reads one line up to and including '\n'. The slice is valid
// until the next read.
func (r *chunkResigner) readLine(what string) ([]byte, error) {
	line, err := r.src.ReadSlice('\n')
	switch {
	case err == nil:
		return line, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, chunkError(CodeInvalidChunkEncoding, fmt.Sprintf("aws-chunked %s line is longer than %d bytes", what, chunkLineBufferSize), nil)
	case errors.Is(err, io.EOF) && len(line) == 0 && what == "chunk header":
		return nil, chunkError(CodeIncompleteBody, "aws-chunked body ended without the final zero-length chunk", nil)
	default:
		return nil, r.truncated(what, err)
	}
}

// truncated turns a read failure into an IncompleteBody error when the body
// simply ended, and wraps anything else.
func (r *chunkResigner) truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return chunkError(CodeIncompleteBody, "aws-chunked body ended in the middle of the "+what, nil)
	}
	return fmt.Errorf("signer: reading aws-chunked %s: %w", what, err)
}

func (r *chunkResigner) expectCRLF(where string) error {
	b := r.scratch[:]
	if _, err := io.ReadFull(r.src, b); err != nil {
		return r.truncated("CRLF "+where, err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return chunkError(CodeInvalidChunkEncoding, "aws-chunked body lacks the CRLF "+where, nil)
	}
	return nil
}

func (r *chunkResigner) expectEOF() error {
	_, err := r.src.ReadByte()
	switch {
	case err == nil:
		return chunkError(CodeInvalidChunkEncoding, "aws-chunked body has data after its end", nil)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return fmt.Errorf("signer: reading the end of an aws-chunked body: %w", err)
	}
}

// parseChunkHeader checks "<hex size>;chunk-signature=<64 hex>\r\n" and
// returns the size text as sent and its value.
func (r *chunkResigner) parseChunkHeader(line []byte) ([]byte, int, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, 0, chunkError(CodeInvalidChunkEncoding, "aws-chunked chunk header does not end in CRLF", nil)
	}
	content := line[:len(line)-2]
	i := bytes.IndexByte(content, ';')
	if i < 0 || !bytes.HasPrefix(content[i:], r.sigPrefix) {
		return nil, 0, chunkError(CodeInvalidChunkEncoding, "aws-chunked chunk header lacks \";chunk-signature=\"", nil)
	}
	sizeText, sig := content[:i], content[i+len(r.sigPrefix):]
	if len(sizeText) == 0 || len(sizeText) > maxChunkSizeDigits {
		return nil, 0, chunkError(CodeInvalidChunkEncoding, "aws-chunked chunk size must be 1 to 16 hex digits", nil)
	}
	var size uint64
	for _, c := range sizeText {
		d, ok := chunkHexDigit(c)
		if !ok {
			return nil, 0, chunkError(CodeInvalidChunkEncoding, "aws-chunked chunk size is not a hex number", nil)
		}
		size = size<<4 | uint64(d)
	}
	if size > uint64(r.max) {
		return nil, 0, chunkError(CodeInvalidChunkEncoding,
			fmt.Sprintf("aws-chunked chunk of %d bytes is larger than the %d allowed", size, r.max), nil)
	}
	if !lowerHexN(sig, 64) {
		return nil, 0, chunkError(CodeInvalidChunkEncoding, "aws-chunked chunk signature must be 64 lower-case hex digits", nil)
	}
	return sizeText, int(size), nil
}

// readTrailer reads the trailing header lines and the trailer signature
// after the final chunk, re-signs them into r.tail, and checks the closing
// empty line.
//
// Each trailing header is hashed as "name:value\n", exactly as sent: this is
// what MinIO verifies and what the SDKs produce. Lines may end in CRLF (the
// AWS SDKs) or in a bare LF followed by one empty CRLF line before the
// signature (minio-go).
func (r *chunkResigner) readTrailer() error {
	r.tail = r.tail[:0]
	r.sha.Reset()
	entries := 0
	bareLF, separated := false, false
	for {
		line, err := r.readLine("trailer")
		if err != nil {
			return err
		}
		if rest, ok := bytes.CutPrefix(line, []byte(trailerSigPrefix)); ok {
			if entries == 0 {
				return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer signature without trailing headers", nil)
			}
			sig, ok := bytes.CutSuffix(rest, []byte("\r\n"))
			if !ok || !lowerHexN(sig, 64) {
				return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer signature must be 64 lower-case hex digits and CRLF", nil)
			}
			break
		}
		switch {
		case len(line) == 2 && line[0] == '\r':
			if !bareLF || separated {
				return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer has an unexpected empty line", nil)
			}
			separated = true
			r.tail = append(r.tail, line...)
			continue
		case separated:
			return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer has a header after its empty line", nil)
		}
		entry, crlf := bytes.CutSuffix(line, []byte("\r\n"))
		if !crlf {
			entry = line[:len(line)-1]
			bareLF = true
		}
		if !validTrailerEntry(entry) {
			return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer line is not \"name:value\"", nil)
		}
		entries++
		if entries > maxTrailerEntries || len(r.tail)+len(line) > maxTrailerBytes {
			return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer is too large", nil)
		}
		r.sha.Write(entry)
		r.sha.Write(r.crlf[1:])
		r.tail = append(r.tail, line...)
	}
	if bareLF && !separated {
		return chunkError(CodeInvalidChunkEncoding, "aws-chunked trailer lacks the empty line before its signature", nil)
	}
	r.sign(r.trailerPrefix, false)
	r.tail = append(r.tail, trailerSigPrefix...)
	r.tail = append(r.tail, r.prev[:]...)
	r.tail = append(r.tail, '\r', '\n')
	if err := r.expectCRLF("that ends the trailer"); err != nil {
		return err
	}
	r.tail = append(r.tail, '\r', '\n')
	return nil
}

// validTrailerEntry reports whether b is "name:value" with a token name and
// a value of visible ASCII, spaces and tabs.
func validTrailerEntry(b []byte) bool {
	name, value, ok := bytes.Cut(b, []byte(":"))
	if !ok || len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte("\"(),/:;<=>?@[\\]{}"), c) >= 0 {
			return false
		}
	}
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func chunkError(code, msg string, err error) error {
	return &RequestError{Status: 400, Code: code, Message: msg, Err: err}
}

func chunkHexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// lowerHexN reports whether s is exactly n lower-case hex digits.
func lowerHexN[T string | []byte](s T, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
