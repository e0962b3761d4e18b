package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// TestChunkResignerAgainstMinIO uploads aws-chunked bodies whose chunk
// signatures are junk (as a client with placeholder keys would send them)
// through the re-signer to a real MinIO, which verifies every chunk and
// trailer signature and the trailing checksum.
func TestChunkResignerAgainstMinIO(t *testing.T) {
	m := proxytest.StartMinIO(t)
	base := m.Endpoint()
	creds := aws.Credentials{AccessKeyID: m.Credentials.AccessKeyID, SecretAccessKey: m.Credentials.SecretAccessKey}
	const region = "us-east-1"
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(req *http.Request, payloadHash string) (int, string) {
		t.Helper()
		if err := signer.SignHTTP(context.Background(), creds, req, payloadHash, "s3", region, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/chunked", nil)
	if st, body := do(req, sha256Hex(nil)); st != http.StatusOK {
		t.Fatalf("make bucket: %d %s", st, body)
	}

	tests := []struct {
		name    string
		size    int
		chunk   int
		trailer bool
	}{
		{"three chunks", 150_000, 64 << 10, false},
		{"empty object", 0, 64 << 10, false},
		{"trailer with crc32", 100_000, 64 << 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
			mode := StreamingSigned
			var trailer []byte
			if tc.trailer {
				mode = StreamingSignedTrailer
				var sum [4]byte
				binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(data))
				trailer = []byte("x-amz-checksum-crc32:" + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n")
			}
			in := chunkedBody(data, tc.chunk, dummySig, trailer, strings.Repeat("0", 64))
			key := fmt.Sprintf("/chunked/obj-%d", tc.size)
			req, _ := http.NewRequest(http.MethodPut, base+key, nil)
			req.ContentLength = int64(len(in))
			req.Header.Set("Content-Encoding", "aws-chunked")
			req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(tc.size))
			req.Header.Set("X-Amz-Content-Sha256", string(mode))
			if tc.trailer {
				req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
			}
			now := time.Now().UTC()
			if err := signer.SignHTTP(context.Background(), creds, req, string(mode), "s3", region, now); err != nil {
				t.Fatal(err)
			}
			_, seed, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
			date := now.Format("20060102")
			req.Body = NewChunkResigner(bytes.NewReader(in), ChunkParams{
				Mode:          mode,
				SigningKey:    testSigningKey(creds.SecretAccessKey, date, region, "s3"),
				Time:          now,
				Scope:         date + "/" + region + "/s3/aws4_request",
				SeedSignature: seed,
				DecodedLength: int64(tc.size),
			})
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("PUT: %d %s", resp.StatusCode, msg)
			}
			get, _ := http.NewRequest(http.MethodGet, base+key, nil)
			st, body := do(get, sha256Hex(nil))
			if st != http.StatusOK || sha256.Sum256([]byte(body)) != sha256.Sum256(data) {
				t.Fatalf("GET: %d, %d bytes back, want %d", st, len(body), len(data))
			}

			// The same body without re-signing is refused: MinIO really checks.
			bad, _ := http.NewRequest(http.MethodPut, base+key+"-bad", bytes.NewReader(in))
			bad.Header = req.Header.Clone()
			bad.Header.Del("Authorization")
			bad.ContentLength = int64(len(in))
			if st, _ := do(bad, string(mode)); st == http.StatusOK {
				t.Fatal("MinIO accepted junk chunk signatures; the test proves nothing")
			}
		})
	}
}
