package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBinary runs the built binary with args and a clean environment.
func runBinary(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testBinary, args...)
	cmd.Env = append(baseEnv(t, t.TempDir()), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("skewproxy %v did not finish in 30s", args)
	}
	return out.String(), errb.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := runBinary(t, "", nil, "version")
	if code != 0 || !strings.Contains(out, "skewproxy test-build (commit harness") {
		t.Fatalf("version: code %d, out %q", code, out)
	}
}

func TestExplainCLI(t *testing.T) {
	tests := []struct {
		name        string
		msg         string
		failure     string
		hostClock   string
		skewSeconds *float64
	}{
		{
			name:        "lambda expired, host behind",
			msg:         "An error occurred (InvalidSignatureException) when calling the Invoke operation: Signature expired: 20230118T160239Z is now earlier than 20230118T162240Z (20230118T162740Z - 5 min.)",
			failure:     "signature_expired",
			hostClock:   "behind",
			skewSeconds: ptr(-1501.0),
		},
		{
			name:        "not yet current, host ahead",
			msg:         "Signature not yet current: 20230118T200000Z is still later than 20230118T164240Z (20230118T162740Z + 15 min.)",
			failure:     "signature_not_yet_current",
			hostClock:   "ahead",
			skewSeconds: ptr(12740.0),
		},
		{
			name:        "s3 xml",
			msg:         `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestTime>20230118T160739Z</RequestTime><ServerTime>2023-01-18T16:27:40Z</ServerTime><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>`,
			failure:     "request_time_too_skewed",
			hostClock:   "behind",
			skewSeconds: ptr(-1201.0),
		},
		{
			name:      "expired token is not a clock problem",
			msg:       `{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}`,
			failure:   "expired_token",
			hostClock: "unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := runBinary(t, "", nil, "explain", "--json", tt.msg)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			var got struct {
				Failure     string   `json:"failure"`
				HostClock   string   `json:"host_clock"`
				SkewSeconds *float64 `json:"skew_seconds"`
				ServerTime  *string  `json:"server_time"`
				Advice      string   `json:"advice"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if got.Failure != tt.failure || got.HostClock != tt.hostClock || got.Advice == "" {
				t.Errorf("got %+v, want failure %s host_clock %s and advice", got, tt.failure, tt.hostClock)
			}
			switch {
			case tt.skewSeconds == nil && got.SkewSeconds != nil:
				t.Errorf("skew_seconds = %v, want null", *got.SkewSeconds)
			case tt.skewSeconds != nil && (got.SkewSeconds == nil || *got.SkewSeconds != *tt.skewSeconds):
				t.Errorf("skew_seconds = %v, want %v", fmtPtr(got.SkewSeconds), *tt.skewSeconds)
			}
			// The human form reads from stdin too.
			text, _, code := runBinary(t, tt.msg, nil, "explain")
			if code != 0 || len(text) < 20 {
				t.Errorf("explain (stdin): code %d, %q", code, text)
			}
		})
	}
	if _, _, code := runBinary(t, "", nil, "explain", "hello world"); code == 0 {
		t.Error("explain of an unrecognised message exits 0")
	}
}

func ptr(f float64) *float64 { return &f }

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.pem")
	if err := os.WriteFile(broken, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	creds := []string{"AWS_ACCESS_KEY_ID=AKIDPROXY", "AWS_SECRET_ACCESS_KEY=proxy-secret", "AWS_REGION=us-east-1"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "lan without auth", args: []string{"--listen", "0.0.0.0:0"}, want: "--proxy-auth"},
		{name: "admin beyond loopback", args: []string{"--admin-listen", "0.0.0.0:0"}, want: "--admin-allow-remote"},
		{name: "bad clock offset", args: []string{"--clock-offset", "soon"}, want: "--clock-offset"},
		{name: "bad resolve", args: []string{"--resolve", "nonsense"}, want: "--resolve"},
		{name: "bad time source", args: []string{"--time-source", "http://x"}, want: "--time-source"},
		{name: "broken CA file", args: []string{"--ca-cert", broken, "--ca-key", broken}, want: "CA"},
		{name: "port in use", args: []string{"--listen", busy.Addr().String()}, want: "--listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--state-dir", t.TempDir(), "--admin-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, tt.args...)
			_, stderr, code := runBinary(t, "", creds, args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q: want a failure mentioning %q", code, stderr, tt.want)
			}
		})
	}
}

func TestCAExport(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	out1, stderr, code := runBinary(t, "", nil, "ca", "export", "--state-dir", state)
	if code != 0 || !strings.Contains(out1, "BEGIN CERTIFICATE") {
		t.Fatalf("ca export: code %d, stderr %q", code, stderr)
	}
	if strings.Contains(out1, "PRIVATE KEY") {
		t.Fatal("ca export printed the private key")
	}
	out2, _, _ := runBinary(t, "", nil, "ca", "export", "--state-dir", state)
	if out1 != out2 {
		t.Error("a second ca export made a new CA instead of reusing the first")
	}
	for name, want := range map[string]os.FileMode{".": 0o700, "ca-key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(state, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	// SKEWPROXY_STATE_DIR works as the flag does.
	out3, _, _ := runBinary(t, "", []string{"SKEWPROXY_STATE_DIR=" + state}, "ca", "export")
	if out3 != out1 {
		t.Error("SKEWPROXY_STATE_DIR did not select the same state directory")
	}
}

func fmtPtr(f *float64) string {
	if f == nil {
		return "null"
	}
	return fmt.Sprint(*f)
}
