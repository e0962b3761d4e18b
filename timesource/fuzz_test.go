package timesource

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{
		"ntp://169.254.169.123", "ntp://[fd00:ec2::123]", "ntp://time.aws.com:123",
		"ntp://[::1]:1", "ntp://h:", "ntp://", "ntp:///x", "http://h", "ntp://[fe80::1%25eth0]:123", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseSource(s)
		if err != nil {
			return
		}
		if src.Host == "" || src.Port < 1 || src.Port > 65535 {
			t.Fatalf("ParseSource(%q) = %+v: accepted an unusable source", s, src)
		}
		again, err := ParseSource(src.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", src.String(), s, err)
		}
		if again != src {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, src)
		}
	})
}
