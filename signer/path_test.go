package signer

import (
	"net/url"
	"testing"
)

// TestEscapedPathMatchesURL proves escapedPath returns what
// url.URL.EscapedPath returns, for paths that take its shortcut and paths
// that do not.
func TestEscapedPathMatchesURL(t *testing.T) {
	cases := []struct {
		name     string
		raw      string
		shortcut bool // escapedPath answers without EscapedPath
	}{
		{"plain", "/2015-03-31/functions/f/invocations", false},
		{"space and plus escaped", "/dir/with%20space/key%2Bplus.txt", true},
		{"escaped slash", "/a%2Fb", true},
		{"lower-case escape", "/a%2fb", true},
		{"escaped unreserved", "/%41bc", true},
		{"raw plus", "/a+b%20c", false},
		{"sub-delims", "/a=b;c%20d", false},
		{"colon and at", "/a:b@c%20", false},
		{"unicode (no RawPath)", "/%E2%82%AC", false},
		{"non-ASCII raw", "/\xe2\x82\xac%20", false},
		{"double escape (no RawPath)", "/a%2520b", false},
		{"empty", "", false},
		{"star", "*", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse("https://h.example" + tc.raw)
			if err != nil {
				t.Skipf("url.Parse: %v", err)
			}
			if got, want := escapedPath(u), u.EscapedPath(); got != want {
				t.Errorf("escapedPath = %q, EscapedPath = %q", got, want)
			}
			if got := u.RawPath != "" && rawPathDecodesTo(u.RawPath, u.Path); got != tc.shortcut {
				t.Errorf("shortcut taken = %v, want %v", got, tc.shortcut)
			}
		})
	}
}

// FuzzEscapedPath checks escapedPath against url.URL.EscapedPath on any
// Path/RawPath pair, including pairs url.Parse never produces.
func FuzzEscapedPath(f *testing.F) {
	f.Add("/a b/c+d", "/a%20b/c%2Bd")
	f.Add("/a/b", "/a%2Fb")
	f.Add("/x", "/%78")
	f.Add("/x", "/%7")
	f.Add("", "%20")
	f.Fuzz(func(t *testing.T, path, raw string) {
		u := &url.URL{Path: path, RawPath: raw}
		if got, want := escapedPath(u), u.EscapedPath(); got != want {
			t.Errorf("Path %q RawPath %q: escapedPath = %q, EscapedPath = %q", path, raw, got, want)
		}
	})
}
