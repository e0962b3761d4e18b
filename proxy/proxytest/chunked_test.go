package proxytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// chunkedExample is testdata/s3-aws-chunked-example.json: the worked
// example of Amazon S3's streaming SigV4 documentation.
type chunkedExample struct {
	Credentials struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
	} `json:"credentials"`
	Timestamp time.Time `json:"timestamp"`
	Request   struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
	} `json:"request"`
	Payload struct {
		Byte      string `json:"byte"`
		Length    int    `json:"length"`
		ChunkSize int    `json:"chunk_size"`
	} `json:"payload"`
	Expected struct {
		Authorization   string   `json:"authorization"`
		ChunkSignatures []string `json:"chunk_signatures"`
		ChunkLengths    []int    `json:"chunk_lengths"`
	} `json:"expected"`
}

func loadChunkedExample(t *testing.T) (*http.Request, []byte, []byte, Credentials, time.Time) {
	t.Helper()
	raw, err := os.ReadFile("testdata/s3-aws-chunked-example.json")
	if err != nil {
		t.Fatal(err)
	}
	var ex chunkedExample
	if err := json.Unmarshal(raw, &ex); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	for i, n := range ex.Expected.ChunkLengths {
		fmt.Fprintf(&body, "%x;chunk-signature=%s\r\n", n, ex.Expected.ChunkSignatures[i])
		body.WriteString(strings.Repeat(ex.Payload.Byte, n))
		body.WriteString("\r\n")
	}
	r, err := http.NewRequest(ex.Request.Method, "https://"+ex.Request.Headers["Host"]+ex.Request.Path, bytes.NewReader(body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ex.Request.Headers {
		if k != "Host" {
			r.Header.Set(k, v)
		}
	}
	r.Header.Set("X-Amz-Date", FormatAMZDate(ex.Timestamp))
	r.Header.Set("Authorization", ex.Expected.Authorization)
	creds := Credentials{AccessKeyID: ex.Credentials.AccessKeyID, SecretAccessKey: ex.Credentials.SecretAccessKey}
	return r, body.Bytes(), []byte(strings.Repeat(ex.Payload.Byte, ex.Payload.Length)), creds, ex.Timestamp
}

func TestVerifyChunkedAWSExample(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		want   FailureKind
	}{
		{"as documented", func(b []byte) []byte { return b }, ""},
		{"flipped data byte", func(b []byte) []byte { b[100] ^= 1; return b }, FailChunkSignature},
		{"flipped chunk signature", func(b []byte) []byte {
			i := bytes.Index(b, []byte("chunk-signature=")) + len("chunk-signature=")
			b[i] ^= 1
			return b
		}, FailChunkSignature},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, FailChunkSignature},
		{"trailing garbage", func(b []byte) []byte { return append(b, 'x') }, FailChunkSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, body, decoded, creds, ts := loadChunkedExample(t)
			v, err := Verify(r, body, creds, ts, 15*time.Minute)
			if err != nil {
				t.Fatalf("seed signature: %v", err)
			}
			got, err := VerifyChunked(tc.mutate(bytes.Clone(body)), v, creds)
			if KindOf(err) != tc.want || (tc.want == "" && err != nil) {
				t.Fatalf("VerifyChunked = %v, want %q", err, tc.want)
			}
			if tc.want == "" && !bytes.Equal(got, decoded) {
				t.Fatalf("decoded %d bytes, want %d", len(got), len(decoded))
			}
		})
	}
}

func TestAWSS3ChunkedUpload(t *testing.T) {
	r, body, _, creds, ts := loadChunkedExample(t)
	clock := &fakeClock{}
	clock.Set(ts.Add(time.Minute))
	fake := NewAWS(t, AWSOptions{Credentials: creds, Window: 15 * time.Minute, Now: clock.Now})
	for _, tc := range []struct {
		name   string
		flip   bool
		status int
	}{{"valid chunks", false, 200}, {"bad chunk", true, 403}} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(body)
			if tc.flip {
				b[200] ^= 1
			}
			req, _ := http.NewRequest(r.Method, fake.URL()+r.URL.Path, bytes.NewReader(b))
			req.Host = r.Host
			req.Header = r.Header.Clone()
			resp, err := fake.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if st := fake.Stats(); st.Failures[FailChunkSignature] != 1 || st.Verified != 2 {
		t.Fatalf("stats = %+v", st)
	}
}
