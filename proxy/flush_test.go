package proxy

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// shortReads returns its parts one Read at a time, then EOF.
type shortReads struct{ parts []string }

func (s *shortReads) Read(p []byte) (int, error) {
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.parts[0])
	s.parts[0] = s.parts[0][n:]
	if s.parts[0] == "" {
		s.parts = s.parts[1:]
	}
	return n, nil
}

func TestFlushOnPause(t *testing.T) {
	cases := []struct {
		name        string
		body        io.Reader
		bufSize     int
		flushErr    error
		wantFlushes int
		wantErr     error
	}{
		// net/http's body reader returns io.EOF with the last bytes of a
		// body of known length, as DataErrReader does.
		{"whole body in one read: no flush", iotest.DataErrReader(strings.NewReader("0123456789")), 64, nil, 0, nil},
		{"full reads of a long body: no flush", iotest.DataErrReader(strings.NewReader(strings.Repeat("x", 256))), 64, nil, 0, nil},
		{"a short read before a bare EOF: one flush", strings.NewReader("0123456789"), 64, nil, 1, nil},
		{"three pieces: a flush after each short read but the last", &shortReads{parts: []string{"a", "b", "c"}}, 64, nil, 3, nil},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader("abc")), 64, nil, 3, nil},
		{"a failed flush ends the copy", &shortReads{parts: []string{"a", "b"}}, 64, errors.New("client gone"), 1, errors.New("client gone")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flushes := 0
			f := &flushOnPause{body: io.NopCloser(tc.body), flush: func() error { flushes++; return tc.flushErr }}
			buf := make([]byte, tc.bufSize)
			var got strings.Builder
			var err error
			for {
				var n int
				n, err = f.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if tc.wantErr == nil && err != io.EOF {
				t.Fatalf("read error %v", err)
			}
			if tc.wantErr != nil && (err == nil || err.Error() != tc.wantErr.Error()) {
				t.Fatalf("read error %v, want %v", err, tc.wantErr)
			}
			if flushes != tc.wantFlushes {
				t.Errorf("%d flushes, want %d", flushes, tc.wantFlushes)
			}
		})
	}
}
