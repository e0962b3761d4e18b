package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// sensitiveKeys are attribute keys whose values never reach a log line,
// whatever the level: a last line of defence behind the proxy's own
// redaction. A key matches when it equals one of these or ends with one
// (after a "_", "-" or "."), so "client_signature_age" is not redacted but
// "x-amz-signature" and "aws_secret" are.
var sensitiveKeys = []string{"authorization", "security-token", "security_token", "securitytoken",
	"signature", "secret", "secret_access_key", "session_token", "sessiontoken", "token", "password", "credential"}

func sensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range sensitiveKeys {
		if k == s {
			return true
		}
		if rest, ok := strings.CutSuffix(k, s); ok && rest != "" && strings.ContainsAny(rest[len(rest)-1:], "_-.") {
			return true
		}
	}
	return false
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindGroup && sensitiveKey(a.Key) {
		return slog.String(a.Key, "REDACTED")
	}
	return a
}

// newLogger builds the structured stderr logger of --log-level/--log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redactAttr}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// logClock stamps log records with the corrected clock, so log lines line
// up with AWS's own logs and with the spans whatever the host clock says.
// Records logged before use is called keep slog's own (host) time.
type logClock struct {
	now atomic.Pointer[func() time.Time]
}

// use makes every later record take its time from now.
func (c *logClock) use(now func() time.Time) { c.now.Store(&now) }

// wrap returns h with its records stamped by c.
func (c *logClock) wrap(h slog.Handler) slog.Handler { return clockedHandler{inner: h, clock: c} }

// clockedHandler is a slog.Handler that rewrites each record's time.
type clockedHandler struct {
	inner slog.Handler
	clock *logClock
}

func (h clockedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h clockedHandler) Handle(ctx context.Context, r slog.Record) error {
	if now := h.clock.now.Load(); now != nil && !r.Time.IsZero() {
		r.Time = (*now)()
	}
	return h.inner.Handle(ctx, r)
}

func (h clockedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return clockedHandler{inner: h.inner.WithAttrs(attrs), clock: h.clock}
}

func (h clockedHandler) WithGroup(name string) slog.Handler {
	return clockedHandler{inner: h.inner.WithGroup(name), clock: h.clock}
}
