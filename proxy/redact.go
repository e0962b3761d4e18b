package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

const redacted = "REDACTED"

// secretValue finds secrets in free text: SigV4 Authorization fields,
// presigned query parameters and Basic/Bearer credentials. secretLine
// finds whole header lines whose value is secret.
var (
	secretValue = regexp.MustCompile(`(?i)(signature=|credential=|x-amz-security-token=|basic\s+|bearer\s+)[^\s,&"';]+`)
	secretLine  = regexp.MustCompile(`(?i)((?:proxy-)?authorization:\s*|x-amz-security-token:\s*)[^\r\n"]+`)
)

// redactText masks secrets inside a free-form message (goproxy's log lines,
// error strings from lower layers).
func redactText(s string) string {
	mask := func(re *regexp.Regexp) func(string) string {
		return func(m string) string {
			loc := re.FindStringSubmatchIndex(m)
			return m[:loc[3]] + redacted
		}
	}
	s = secretLine.ReplaceAllStringFunc(s, mask(secretLine))
	return secretValue.ReplaceAllStringFunc(s, mask(secretValue))
}

// goproxyLogger routes goproxy's printf-style log lines to slog at debug
// level, redacted. goproxy's verbose mode stays off; what remains are its
// warnings (a client that hung up, a failed handshake), which are noise at
// info level.
type goproxyLogger struct{ log *slog.Logger }

func (l goproxyLogger) Printf(format string, v ...any) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.log.Debug("goproxy", "detail", redactText(msg))
}

// redactingHandler masks secrets in the message and string attributes of
// records that come from lower layers (net/http's error log).
type redactingHandler struct{ slog.Handler }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redactText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			a.Value = slog.StringValue(redactText(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return redactingHandler{h.Handler.WithAttrs(as)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}
