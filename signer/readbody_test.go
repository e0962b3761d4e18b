package signer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadBody: a body is read whole, a body longer than declared shows
// its extra byte (so callers see the mismatch), a short body is returned
// short, and a read error is an error.
func TestReadBody(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name    string
		r       io.Reader
		n, max  int64
		want    string
		wantErr error
	}{
		{"exact", strings.NewReader("hello"), 5, 5, "hello", nil},
		{"exact, one byte per read", iotest.OneByteReader(strings.NewReader("hello")), 5, 10, "hello", nil},
		{"longer than declared", strings.NewReader("hello!!"), 5, 5, "hello!", nil},
		{"shorter than declared", strings.NewReader("hel"), 5, 5, "hel", nil},
		{"declared empty", strings.NewReader(""), 0, 5, "", nil},
		{"declared empty, data follows", strings.NewReader("x"), 0, 5, "x", nil},
		{"unknown length", strings.NewReader("hello"), -1, 10, "hello", nil},
		{"unknown length over max", strings.NewReader("hello"), -1, 3, "hell", nil},
		{"large declared length", bytes.NewReader(bytes.Repeat([]byte("a"), readBodyUpfront+10)), readBodyUpfront + 10, 1 << 20, strings.Repeat("a", readBodyUpfront+10), nil},
		{"error mid-body", io.MultiReader(strings.NewReader("he"), iotest.ErrReader(boom)), 5, 5, "", boom},
		{"error after the body", io.MultiReader(strings.NewReader("hello"), iotest.ErrReader(boom)), 5, 5, "", boom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var probe [1]byte
			got, err := readBody(tc.r, tc.n, tc.max, &probe)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && string(got) != tc.want {
				t.Errorf("body = %q, want %q", got, tc.want)
			}
		})
	}
}
