package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRedaction(t *testing.T) {
	cases := []struct{ name, in, secret string }{
		{"sigv4 header", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=f00dfeed", "f00dfeed"},
		{"credential", "Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request", "AKIDEXAMPLE"},
		{"query", "GET /k?X-Amz-Signature=f00dfeed&x=1", "f00dfeed"},
		{"token", "x-amz-security-token: FwoGZXIvYXdz", "FwoGZXIvYXdz"},
		{"basic", "Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"},
	}
	for _, tc := range cases {
		t.Run("text "+tc.name, func(t *testing.T) {
			if got := redactText(tc.in); strings.Contains(got, tc.secret) || !strings.Contains(got, redacted) {
				t.Errorf("redactText(%q) = %q", tc.in, got)
			}
		})
	}
	t.Run("goproxy logger", func(t *testing.T) {
		var buf bytes.Buffer
		l := goproxyLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		l.Printf("WARN: req %v", "Authorization: AWS4-HMAC-SHA256 Signature=f00dfeed")
		if strings.Contains(buf.String(), "f00dfeed") || !strings.Contains(buf.String(), "goproxy") {
			t.Errorf("log = %q", buf.String())
		}
	})
	t.Run("net/http error log", func(t *testing.T) {
		var buf bytes.Buffer
		l := slog.NewLogLogger(redactingHandler{slog.NewTextHandler(&buf, nil)}, slog.LevelWarn)
		l.Printf("bad request with Signature=f00dfeed")
		if strings.Contains(buf.String(), "f00dfeed") {
			t.Errorf("log = %q", buf.String())
		}
	})
}
