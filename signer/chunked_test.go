package signer

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	miniosigner "github.com/minio/minio-go/v7/pkg/signer"
)

// testSigningKey derives kSigning by hand, independently of keys.go.
func testSigningKey(secret, date, region, service string) []byte {
	mac := func(k []byte, s string) []byte {
		h := hmac.New(sha256.New, k)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	return mac(mac(mac(mac([]byte("AWS4"+secret), date), region), service), "aws4_request")
}

// testSign is an independent, string-building implementation of one
// chunk or trailer signature.
func testSign(key []byte, algo, date, scope, prev string, extra ...string) string {
	parts := append([]string{algo, date, scope, prev}, extra...)
	h := hmac.New(sha256.New, key)
	h.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// chunkedBody frames data in chunks of chunkSize with signatures from sig
// (index 0 is the first chunk; the final zero chunk gets the last index).
// trailer, when not nil, holds the raw trailer section (between the final
// chunk line and the trailer signature line); trailerSig signs it.
func chunkedBody(data []byte, chunkSize int, sig func(i int, chunk []byte) string, trailer []byte, trailerSig string) []byte {
	var b bytes.Buffer
	i := 0
	for off := 0; off < len(data); off += chunkSize {
		end := min(off+chunkSize, len(data))
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", end-off, sig(i, data[off:end]))
		b.Write(data[off:end])
		b.WriteString("\r\n")
		i++
	}
	fmt.Fprintf(&b, "0;chunk-signature=%s\r\n", sig(i, nil))
	if trailer == nil {
		b.WriteString("\r\n")
		return b.Bytes()
	}
	b.Write(trailer)
	b.WriteString("x-amz-trailer-signature:" + trailerSig + "\r\n\r\n")
	return b.Bytes()
}

func dummySig(int, []byte) string { return strings.Repeat("0", 64) }

func resignAll(t testing.TB, body []byte, p ChunkParams) ([]byte, error) {
	t.Helper()
	r := NewChunkResigner(bytes.NewReader(body), p)
	defer r.Close()
	return io.ReadAll(r)
}

type s3ChunkedExample struct {
	Credentials struct {
		SecretAccessKey string `json:"secret_access_key"`
	} `json:"credentials"`
	Region    string    `json:"region"`
	Service   string    `json:"service"`
	Timestamp time.Time `json:"timestamp"`
	Request   struct {
		Headers map[string]string `json:"headers"`
	} `json:"request"`
	Payload struct {
		Byte      string `json:"byte"`
		Length    int    `json:"length"`
		ChunkSize int    `json:"chunk_size"`
	} `json:"payload"`
	Expected struct {
		SeedSignature   string   `json:"seed_signature"`
		ChunkSignatures []string `json:"chunk_signatures"`
		ChunkLengths    []int    `json:"chunk_lengths"`
	} `json:"expected"`
}

// TestChunkResignerS3Example reproduces the worked example of Amazon S3's
// streaming SigV4 documentation byte for byte.
func TestChunkResignerS3Example(t *testing.T) {
	raw, err := os.ReadFile("testdata/chunked/s3-aws-chunked-example.json")
	if err != nil {
		t.Fatal(err)
	}
	var ex s3ChunkedExample
	if err := json.Unmarshal(raw, &ex); err != nil {
		t.Fatal(err)
	}
	date := ex.Timestamp.Format("20060102")
	p := ChunkParams{
		Mode:          StreamingSigned,
		SigningKey:    testSigningKey(ex.Credentials.SecretAccessKey, date, ex.Region, ex.Service),
		Time:          ex.Timestamp,
		Scope:         date + "/" + ex.Region + "/" + ex.Service + "/aws4_request",
		SeedSignature: ex.Expected.SeedSignature,
		DecodedLength: int64(ex.Payload.Length),
	}
	data := bytes.Repeat([]byte(ex.Payload.Byte), ex.Payload.Length)
	in := chunkedBody(data, ex.Payload.ChunkSize, dummySig, nil, "")
	want := chunkedBody(data, ex.Payload.ChunkSize, func(i int, _ []byte) string { return ex.Expected.ChunkSignatures[i] }, nil, "")
	if got := fmt.Sprint(len(want)); got != ex.Request.Headers["Content-Length"] {
		t.Fatalf("test framing is %s bytes, the example's Content-Length is %s", got, ex.Request.Headers["Content-Length"])
	}
	out, err := resignAll(t, in, p)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("re-signed body differs from the S3 example:\n got %q\nwant %q", head(out), head(want))
	}
	for i, sig := range ex.Expected.ChunkSignatures {
		if !bytes.Contains(out, []byte(fmt.Sprintf("%x;chunk-signature=%s\r\n", ex.Expected.ChunkLengths[i], sig))) {
			t.Errorf("chunk %d: signature %s missing", i, sig)
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 200)] }

// md5simdHasher adapts a hash.Hash to the hasher interface minio-go wants.
type md5simdHasher struct{ hash.Hash }

func (md5simdHasher) Close() {}

// TestChunkResignerMatchesMinioGo signs bodies with minio-go's streaming
// signer (an independent implementation, with and without a signed
// trailer) and checks that re-signing them with the same key, time and seed
// reproduces them byte for byte.
func TestChunkResignerMatchesMinioGo(t *testing.T) {
	tm := time.Date(2024, 3, 9, 12, 34, 56, 0, time.UTC)
	const region, secret = "eu-west-1", "secret/KEY+example"
	tests := []struct {
		name    string
		size    int
		trailer http.Header
	}{
		{"one byte", 1, nil},
		{"exactly one 64 KiB chunk", 64 << 10, nil},
		{"several chunks and a tail", 200_000, nil},
		{"trailer, one chunk", 10, http.Header{"x-amz-checksum-crc32": {"NSRBwg=="}}},
		{"trailer, several chunks", 150_000, http.Header{"x-amz-checksum-crc32c": {"yZRlqg=="}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("skewproxy-"), tc.size/10+1)[:tc.size]
			req, err := http.NewRequest(http.MethodPut, "http://bucket.s3.eu-west-1.amazonaws.com/key", bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			req.Trailer = tc.trailer
			req = miniosigner.StreamingSignV4(req, "AKIDEXAMPLE", secret, "", region, int64(tc.size), tm, md5simdHasher{sha256.New()})
			in, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatal(err)
			}
			_, seed, ok := strings.Cut(req.Header.Get("Authorization"), "Signature=")
			if !ok {
				t.Fatalf("no seed signature in %q", req.Header.Get("Authorization"))
			}
			mode := StreamingSigned
			if tc.trailer != nil {
				mode = StreamingSignedTrailer
			}
			if got := req.Header.Get("X-Amz-Content-Sha256"); got != string(mode) {
				t.Fatalf("minio-go used %q, test expects %q", got, mode)
			}
			out, err := resignAll(t, in, ChunkParams{
				Mode:          mode,
				SigningKey:    testSigningKey(secret, "20240309", region, "s3"),
				Time:          tm,
				Scope:         "20240309/" + region + "/s3/aws4_request",
				SeedSignature: seed,
				DecodedLength: int64(tc.size),
			})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("re-signed body differs from minio-go's:\n got %q\nwant %q", tail(out), tail(in))
			}
		})
	}
}

func tail(b []byte) []byte { return b[max(0, len(b)-300):] }

// TestChunkResignerTrailer checks the trailer signature in the AWS SDK
// framing (every trailing header ends in CRLF) against a computation done
// here by string building.
func TestChunkResignerTrailer(t *testing.T) {
	tm := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	key := testSigningKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
	const scope, date = "20130524/us-east-1/s3/aws4_request", "20130524T000000Z"
	seed := "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
	tests := []struct {
		name    string
		data    []byte
		chunk   int
		trailer []string
	}{
		{"one crc32 trailer", bytes.Repeat([]byte("a"), 66560), 65536, []string{"x-amz-checksum-crc32:sOO8/Q=="}},
		{"two trailers, empty data", nil, 8, []string{"x-amz-checksum-crc32c:AAAAAA==", "x-amz-meta-note:a b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var canon, rawTrailer strings.Builder
			for _, l := range tc.trailer {
				canon.WriteString(l + "\n")
				rawTrailer.WriteString(l + "\r\n")
			}
			prev := seed
			var sigs []string
			for off := 0; ; off += tc.chunk {
				chunk := tc.data[min(off, len(tc.data)):min(off+tc.chunk, len(tc.data))]
				prev = testSign(key, "AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, sha256Hex(nil), sha256Hex(chunk))
				sigs = append(sigs, prev)
				if len(chunk) == 0 {
					break
				}
			}
			trailerSig := testSign(key, "AWS4-HMAC-SHA256-TRAILER", date, scope, prev, sha256Hex([]byte(canon.String())))
			in := chunkedBody(tc.data, tc.chunk, dummySig, []byte(rawTrailer.String()), strings.Repeat("f", 64))
			want := chunkedBody(tc.data, tc.chunk, func(i int, _ []byte) string { return sigs[i] }, []byte(rawTrailer.String()), trailerSig)
			out, err := resignAll(t, in, ChunkParams{Mode: StreamingSignedTrailer, SigningKey: key, Time: tm, Scope: scope, SeedSignature: seed, DecodedLength: int64(len(tc.data))})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("re-signed body:\n got %q\nwant %q", tail(out), tail(want))
			}
		})
	}
}

func testParams(mode StreamingMode, decoded int64) ChunkParams {
	return ChunkParams{
		Mode:          mode,
		SigningKey:    testSigningKey("secret", "20240101", "us-east-1", "s3"),
		Time:          time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		Scope:         "20240101/us-east-1/s3/aws4_request",
		SeedSignature: strings.Repeat("ab", 32),
		DecodedLength: decoded,
		MaxChunkSize:  1024,
	}
}

// TestChunkResignerFramingErrors feeds malformed bodies and expects a 400
// *RequestError with the right code for each.
func TestChunkResignerFramingErrors(t *testing.T) {
	sig := strings.Repeat("0", 64)
	good := "5;chunk-signature=" + sig + "\r\nhello\r\n0;chunk-signature=" + sig + "\r\n"
	tests := []struct {
		name    string
		mode    StreamingMode
		decoded int64
		body    string
		code    string
	}{
		{"empty body", StreamingSigned, -1, "", CodeIncompleteBody},
		{"truncated header", StreamingSigned, -1, "5;chunk-signature=00", CodeIncompleteBody},
		{"truncated data", StreamingSigned, -1, "5;chunk-signature=" + sig + "\r\nhel", CodeIncompleteBody},
		{"missing final chunk", StreamingSigned, -1, "5;chunk-signature=" + sig + "\r\nhello\r\n", CodeIncompleteBody},
		{"missing CRLF after final chunk", StreamingSigned, -1, good, CodeIncompleteBody},
		{"oversize chunk", StreamingSigned, -1, "401;chunk-signature=" + sig + "\r\n" + strings.Repeat("x", 1025) + "\r\n", CodeInvalidChunkEncoding},
		{"huge hex size", StreamingSigned, -1, "ffffffffffffffff;chunk-signature=" + sig + "\r\n", CodeInvalidChunkEncoding},
		{"seventeen hex digits", StreamingSigned, -1, "00000000000000005;chunk-signature=" + sig + "\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"bad hex", StreamingSigned, -1, "5g;chunk-signature=" + sig + "\r\n", CodeInvalidChunkEncoding},
		{"signed size", StreamingSigned, -1, "+5;chunk-signature=" + sig + "\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"negative size", StreamingSigned, -1, "-5;chunk-signature=" + sig + "\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"empty size", StreamingSigned, -1, ";chunk-signature=" + sig + "\r\n", CodeInvalidChunkEncoding},
		{"no chunk-signature", StreamingSigned, -1, "5\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"short signature", StreamingSigned, -1, "5;chunk-signature=abc\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"upper-case signature", StreamingSigned, -1, "5;chunk-signature=" + strings.Repeat("A", 64) + "\r\nhello\r\n", CodeInvalidChunkEncoding},
		{"bare LF after header", StreamingSigned, -1, "5;chunk-signature=" + sig + "\nhello\r\n", CodeInvalidChunkEncoding},
		{"bad CRLF after data", StreamingSigned, -1, "5;chunk-signature=" + sig + "\r\nhello\n\n0;chunk-signature=" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
		{"data longer than its size", StreamingSigned, -1, "5;chunk-signature=" + sig + "\r\nhello!\r\n", CodeInvalidChunkEncoding},
		{"header line too long", StreamingSigned, -1, strings.Repeat("0", 5000), CodeInvalidChunkEncoding},
		{"fewer bytes than decoded length", StreamingSigned, 6, good + "\r\n", CodeIncompleteBody},
		{"more bytes than decoded length", StreamingSigned, 4, good + "\r\n", CodeInvalidChunkEncoding},
		{"garbage after end", StreamingSigned, 5, good + "\r\nX", CodeInvalidChunkEncoding},
		{"second body after end", StreamingSigned, 5, good + "\r\n" + good + "\r\n", CodeInvalidChunkEncoding},
		{"bad final CRLF", StreamingSigned, 5, good + "\n\n", CodeInvalidChunkEncoding},
		{"trailer: none before signature", StreamingSignedTrailer, 5, good + "x-amz-trailer-signature:" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: missing signature", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\r\n", CodeIncompleteBody},
		{"trailer: blank instead of signature", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: no colon", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32 AAAAAA==\r\nx-amz-trailer-signature:" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: control byte in value", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AA\x00A==\r\nx-amz-trailer-signature:" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: short signature", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:abc\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: no closing CRLF", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:" + sig + "\r\n", CodeIncompleteBody},
		{"trailer: bare LF without separator", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\nx-amz-trailer-signature:" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
		{"trailer: garbage after end", StreamingSignedTrailer, 5, good + "x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:" + sig + "\r\n\r\nX", CodeInvalidChunkEncoding},
		{"trailer: too many lines", StreamingSignedTrailer, 5, good + strings.Repeat("a:b\r\n", maxTrailerEntries+1) + "x-amz-trailer-signature:" + sig + "\r\n\r\n", CodeInvalidChunkEncoding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resignAll(t, []byte(tc.body), testParams(tc.mode, tc.decoded))
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (%T), want *RequestError", err, err)
			}
			if re.Status != 400 || re.Code != tc.code {
				t.Fatalf("got %d %s (%q), want 400 %s", re.Status, re.Code, re.Message, tc.code)
			}
			if re.Message == "" {
				t.Fatal("empty message")
			}
		})
	}
}

// TestChunkResignerValidBodies checks accepted framings, that output has the
// input's length, and that Read honours the io.Reader contract with tiny
// reads on both sides.
func TestChunkResignerValidBodies(t *testing.T) {
	sig := strings.Repeat("0", 64)
	tests := []struct {
		name    string
		mode    StreamingMode
		decoded int64
		body    string
	}{
		{"empty object", StreamingSigned, 0, "0;chunk-signature=" + sig + "\r\n\r\n"},
		{"upper-case and zero-padded sizes", StreamingSigned, 26, "00A;chunk-signature=" + sig + "\r\n0123456789\r\n10;chunk-signature=" + sig + "\r\n0123456789abcdef\r\n000;chunk-signature=" + sig + "\r\n\r\n"},
		{"unknown decoded length", StreamingSigned, -1, "3;chunk-signature=" + sig + "\r\nabc\r\n0;chunk-signature=" + sig + "\r\n\r\n"},
		{"chunk of exactly MaxChunkSize", StreamingSigned, 1024, "400;chunk-signature=" + sig + "\r\n" + strings.Repeat("z", 1024) + "\r\n0;chunk-signature=" + sig + "\r\n\r\n"},
		{"trailer with minio-go framing", StreamingSignedTrailer, 3, "3;chunk-signature=" + sig + "\r\nabc\r\n0;chunk-signature=" + sig + "\r\nx-amz-checksum-crc32:NSRBwg==\n\r\nx-amz-trailer-signature:" + sig + "\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams(tc.mode, tc.decoded)
			out, err := resignAll(t, []byte(tc.body), p)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(out) != len(tc.body) {
				t.Fatalf("output %d bytes, input %d", len(out), len(tc.body))
			}
			if bytes.Contains(out, []byte(sig)) {
				t.Fatalf("a client signature survived: %q", out)
			}
			r := NewChunkResigner(iotest.OneByteReader(strings.NewReader(tc.body)), p)
			if err := iotest.TestReader(r, out); err != nil {
				t.Fatalf("byte-at-a-time source: %v", err)
			}
		})
	}
}

func TestChunkResignerBadParams(t *testing.T) {
	body := []byte("0;chunk-signature=" + strings.Repeat("0", 64) + "\r\n\r\n")
	tests := []struct {
		name string
		edit func(*ChunkParams)
	}{
		{"unsigned mode", func(p *ChunkParams) { p.Mode = StreamingUnsignedTrailer }},
		{"ECDSA mode", func(p *ChunkParams) { p.Mode = StreamingECDSA }},
		{"no key", func(p *ChunkParams) { p.SigningKey = nil }},
		{"no scope", func(p *ChunkParams) { p.Scope = "" }},
		{"no time", func(p *ChunkParams) { p.Time = time.Time{} }},
		{"short seed", func(p *ChunkParams) { p.SeedSignature = "abcd" }},
		{"upper-case seed", func(p *ChunkParams) { p.SeedSignature = strings.Repeat("AB", 32) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams(StreamingSigned, 0)
			tc.edit(&p)
			_, err := resignAll(t, body, p)
			var re *RequestError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("err = %v, want a configuration error that is not a RequestError", err)
			}
		})
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestChunkResignerClose(t *testing.T) {
	src := &closeRecorder{Reader: strings.NewReader("5;chunk-signature=" + strings.Repeat("0", 64) + "\r\nhello\r\n")}
	r := NewChunkResigner(src, testParams(StreamingSigned, -1))
	if _, err := r.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !src.closed {
		t.Fatal("underlying body not closed")
	}
	if _, err := r.Read(make([]byte, 4)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

// sourceError is a body that fails mid-stream like a dropped connection.
func TestChunkResignerSourceError(t *testing.T) {
	boom := errors.New("connection reset")
	src := io.MultiReader(strings.NewReader("5;chunk-signature="+strings.Repeat("0", 64)+"\r\nhel"), iotest.ErrReader(boom))
	_, err := io.ReadAll(NewChunkResigner(src, testParams(StreamingSigned, -1)))
	var re *RequestError
	if !errors.Is(err, boom) || errors.As(err, &re) {
		t.Fatalf("err = %v, want the wrapped source error", err)
	}
}

// generatedBody streams a valid aws-chunked body of n data bytes in chunks
// of size chunk without holding it in memory.
type generatedBody struct {
	left, chunk int
	hdr, data   []byte
	segs        [3][]byte
	nseg, iseg  int
	done        bool
}

func newGeneratedBody(n, chunk int) *generatedBody {
	return &generatedBody{left: n, chunk: chunk, data: bytes.Repeat([]byte{'d'}, chunk), hdr: make([]byte, 0, 128)}
}

func (g *generatedBody) Read(p []byte) (int, error) {
	for g.iseg == g.nseg {
		if g.done {
			return 0, io.EOF
		}
		size := min(g.chunk, g.left)
		g.left -= size
		g.hdr = fmt.Appendf(g.hdr[:0], "%x;chunk-signature=%064x\r\n", size, 0)
		g.iseg = 0
		if size == 0 {
			g.done = true
			g.segs[0], g.nseg = append(g.hdr, "\r\n"...), 1
		} else {
			g.segs[0], g.segs[1], g.segs[2], g.nseg = g.hdr, g.data[:size], []byte("\r\n"), 3
		}
	}
	c := copy(p, g.segs[g.iseg])
	g.segs[g.iseg] = g.segs[g.iseg][c:]
	if len(g.segs[g.iseg]) == 0 {
		g.iseg++
	}
	return c, nil
}

// TestChunkResignerMemoryBounded pushes 256 MiB through the re-signer and
// checks that the heap allocated on the way is a tiny fraction of it.
func TestChunkResignerMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB stream in -short mode")
	}
	const total, chunk = 256 << 20, 1 << 20
	p := testParams(StreamingSigned, total)
	p.MaxChunkSize = 0
	// Build the source and its reusable buffers first; measure the rest.
	src := newGeneratedBody(total, chunk)
	copyBuf := make([]byte, 32<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewChunkResigner(src, p)
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, copyBuf)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if want := int64(total + (total/chunk)*(6+17+64+4) + (1 + 17 + 64 + 4)); n != want {
		t.Fatalf("copied %d bytes, want %d", n, want)
	}
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("256 MiB re-signed with %d KiB allocated in total", grew>>10)
	// The generator allocates a little per chunk; the re-signer one chunk
	// buffer. Anything close to the object size would mean buffering.
	if grew > 8<<20 {
		t.Fatalf("allocated %d bytes for a %d byte stream", grew, total)
	}
}

func FuzzChunkResigner(f *testing.F) {
	sig := strings.Repeat("0", 64)
	f.Add([]byte("0;chunk-signature="+sig+"\r\n\r\n"), false)
	f.Add([]byte("5;chunk-signature="+sig+"\r\nhello\r\n0;chunk-signature="+sig+"\r\n\r\n"), false)
	f.Add([]byte("5;chunk-signature="+sig+"\r\nhello\r\n0;chunk-signature="+sig+"\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:"+sig+"\r\n\r\n"), true)
	f.Add([]byte("5;chunk-signature="+sig+"\r\nhello\r\n0;chunk-signature="+sig+"\r\na:b\n\r\nx-amz-trailer-signature:"+sig+"\r\n\r\n"), true)
	f.Add([]byte("ffffffffffffffff;chunk-signature="+sig+"\r\n"), false)
	f.Add([]byte("3;chunk-signature="+sig+"\r\nab"), true)
	f.Fuzz(func(t *testing.T, body []byte, trailer bool) {
		mode := StreamingSigned
		if trailer {
			mode = StreamingSignedTrailer
		}
		p := testParams(mode, -1)
		p.MaxChunkSize = 4096
		out, err := resignAll(t, body, p)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Status != 400 {
				t.Fatalf("err = %v, want a 400 RequestError", err)
			}
			return
		}
		if len(out) != len(body) {
			t.Fatalf("output %d bytes, input %d", len(out), len(body))
		}
	})
}

func BenchmarkChunkResigner(b *testing.B) {
	for _, chunk := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", chunk>>10), func(b *testing.B) {
			data := bytes.Repeat([]byte("x"), 8<<20)
			body := chunkedBody(data, chunk, dummySig, nil, "")
			p := testParams(StreamingSigned, int64(len(data)))
			p.MaxChunkSize = 0
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := NewChunkResigner(bytes.NewReader(body), p)
				if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestChunkResignerCloseUnblocksRead closes the re-signer while a Read is
// blocked on the client's body, as net/http does when a request is
// cancelled; run with -race.
func TestChunkResignerCloseUnblocksRead(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewChunkResigner(pr, testParams(StreamingSigned, -1))
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(r)
		done <- err
	}()
	if _, err := pw.Write([]byte("5;chunk-signature=" + strings.Repeat("0", 64) + "\r\nhel")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}
}
