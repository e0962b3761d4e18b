package main

// AWS IoT credentials through the built binary: the proxy trades a device
// certificate for credentials at a local mutual-TLS stand-in of AWS IoT
// Core's credentials provider (signer/iotcreds/iottest), then signs Lambda
// and STS calls with them to the SigV4-verifying endpoint, which accepts
// nothing but those credentials (session token included).

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/signer/iotcreds/iottest"
)

// iotWorld is a credentials endpoint and the AWS endpoint that accepts
// what it issues.
type iotWorld struct {
	iot  *iottest.Server
	fake *proxytest.AWS
}

// iotKeys are the proxytest form of the credentials s issues.
func iotKeys(s *iottest.Server) proxytest.Credentials {
	c := s.Credentials()
	return proxytest.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

// iotArgs are the --iot-* flags for s's registered device.
func iotArgs(s *iottest.Server) []string {
	return []string{
		"--iot-credentials-endpoint", s.Endpoint,
		"--iot-role-alias", s.RoleAlias(),
		"--iot-thing-name", s.ThingName(),
		"--iot-cert", s.Device.CertFile,
		"--iot-key", s.Device.KeyFile,
		"--iot-ca", s.CAFile,
	}
}

// iotEnv is a proxy environment with no AWS credentials at all: only the
// IoT endpoint can give the proxy any.
var iotEnv = []string{"AWS_REGION=us-east-1"}

func newIoTWorld(t *testing.T) *iotWorld {
	t.Helper()
	iot := iottest.Start(t, iottest.Options{Now: time.Now})
	return &iotWorld{iot: iot, fake: proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: iotKeys(iot)})}
}

func (w *iotWorld) startProxy(t *testing.T, args ...string) *runningProxy {
	t.Helper()
	return startProxy(t, proxyOptions{
		Args: append(append([]string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + w.fake.URL(),
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + w.fake.URL(),
			"--upstream-ca", w.fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
		}, iotArgs(w.iot)...), args...),
		Env: iotEnv,
	})
}

// TestIoTE2ESignsWithIssuedCredentials: Lambda and STS calls through the
// proxy are signed with the credentials the IoT endpoint issued (one
// exchange for all of them: the cache holds them), and the logs name the
// provider but never quote the key, the secret or the token.
func TestIoTE2ESignsWithIssuedCredentials(t *testing.T) {
	w := newIoTWorld(t)
	p := w.startProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if err := wrongClockCalls(ctx, p); err != nil {
			t.Fatalf("%v\nproxy logs:\n%s", err, p.Logs())
		}
	}
	w.fake.WaitIdle(ctx)
	keys := iotKeys(w.iot)
	for _, r := range w.fake.Requests() {
		if r.Method == http.MethodHead {
			continue // the time probe (no NTP answers here)
		}
		if r.Verified == nil {
			t.Errorf("%s %s refused: %s", r.Method, r.Path, r.Failure)
		}
		if got := r.Header.Get("X-Amz-Security-Token"); got != keys.SessionToken {
			t.Errorf("%s %s carried token %q, want the issued one", r.Method, r.Path, got)
		}
	}
	if got := w.fake.Stats().Verified; got != 4 {
		t.Errorf("endpoint verified %d requests, want 4", got)
	}
	if n := w.iot.Issued(); n != 1 {
		t.Errorf("credentials issued %d times for four requests, want 1", n)
	}
	logs := p.Logs()
	if !strings.Contains(logs, "AWS IoT credentials provider (role alias "+w.iot.RoleAlias()) {
		t.Errorf("logs do not name the IoT provider:\n%s", logs)
	}
	key, err := os.ReadFile(w.iot.Device.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{keys.SecretAccessKey, keys.SessionToken}
	for _, line := range strings.Split(string(key), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs quote a secret (%.8s...)", s)
		}
	}
}

// TestIoTE2ERefusalIs503AndRecovers: a refusal by the IoT endpoint answers
// the client 503 ProxyCredentialsUnavailable naming the provider, the log
// names the cause, and the next request gets credentials by itself.
func TestIoTE2ERefusalIs503AndRecovers(t *testing.T) {
	cases := []struct {
		name    string
		failure iottest.Failure
		logged  string
	}{ // name is also the cause the client's 503 carries
		{"thing name refused", iottest.Failure{Status: http.StatusForbidden, Message: "Thing name does not match"}, `thing name \"gateway-1\" refused (403 Forbidden`},
		{"role alias unknown", iottest.Failure{Status: http.StatusNotFound, Message: "Role alias does not exist"}, `role alias \"skewproxy-gateway\" unknown (404 Not Found`},
		{"certificate refused", iottest.Failure{Status: http.StatusForbidden, Message: "Certificate is invalid on this endpoint"}, "the device certificate was refused (403 Forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newIoTWorld(t)
			w.iot.FailNext(tc.failure)
			p := w.startProxy(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := lambda.NewFromConfig(p.awsConfig()).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("iot"), Payload: []byte(`{}`)})
			var re *smithyhttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable ||
				!strings.Contains(err.Error(), "ProxyCredentialsUnavailable") || !strings.Contains(err.Error(), "AWS IoT credentials provider: "+tc.name) {
				t.Fatalf("first invoke: %v, want 503 ProxyCredentialsUnavailable naming the IoT provider and the cause %q", err, tc.name)
			}
			// The log line may reach the harness after the answer.
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Logs(), tc.logged); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("logs lack %q:\n%s", tc.logged, p.Logs())
					break
				}
			}
			if err := wrongClockCalls(ctx, p); err != nil {
				t.Fatalf("after the refusal: %v\nproxy logs:\n%s", err, p.Logs())
			}
			if got := w.fake.Stats().Operations; got["Lambda.Invoke"] != 1 || got["STS.GetCallerIdentity"] != 1 {
				t.Errorf("endpoint served %v, want one Invoke and one GetCallerIdentity (the refused one never left)", got)
			}
		})
	}
}

// TestIoTE2EFlagsGoTogether: a partial set of --iot-* flags is refused at
// start (exit 2) with the missing flags named; a key that is not the
// certificate's stops the start with the file named.
func TestIoTE2EFlagsGoTogether(t *testing.T) {
	iot := iottest.Start(t, iottest.Options{Now: time.Now})
	other := iot.NewDevice(t, true)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"endpoint alone", []string{"--iot-credentials-endpoint", iot.Endpoint}, 2, "need --iot-role-alias, --iot-thing-name, --iot-cert, --iot-key too"},
		{"ca alone", []string{"--iot-ca", iot.CAFile}, 2, "--iot-ca needs the other --iot-* flags"},
		{"endpoint as URL", append(iotArgs(iot), "--iot-credentials-endpoint", "https://"+iot.Endpoint), 2, "want HOST[:PORT]"},
		{"key of another certificate", append(iotArgs(iot), "--iot-key", other.KeyFile), 1, "private key does not match public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runBinary(t, "", iotEnv, append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--state-dir", t.TempDir(), "--time-source", "ntp://127.0.0.1:1"}, tc.args...)...)
			out := stdout + stderr
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.want, out)
			}
			if strings.Contains(out, "PRIVATE KEY") {
				t.Errorf("output quotes the key:\n%s", out)
			}
		})
	}
}

// TestIoTE2EWrongClock: the world's true time is years after the host
// clock; the IoT endpoint's certificate is valid only for an hour around
// true time. With NTP the proxy syncs first; with no NTP answering it
// learns the time from the AWS host's HTTPS Date before signing (the
// gateway that boots at 1970), and then gets credentials at once.
func TestIoTE2EWrongClock(t *testing.T) {
	cases := []struct {
		name    string
		shift   time.Duration
		withNTP bool
	}{
		{"host 10 years behind, NTP", 10 * year, true},
		{"host 10 years behind, no NTP", 10 * year, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w *wrongClockWorld
			iot := iottest.Start(t, iottest.Options{Now: func() time.Time { return time.Now().Add(tc.shift) }, CertValidity: time.Hour})
			w = newWrongClockWorld(t, tc.shift, tc.withNTP, proxytest.AWSOptions{Credentials: iotKeys(iot)})
			p := w.startProxy(t, iotEnv, iotArgs(iot)...)
			if tc.withNTP {
				p.waitReady(t, 15*time.Second)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var err error
			for attempt := 1; attempt <= 2; attempt++ {
				if err = wrongClockCalls(ctx, p); err == nil {
					break
				}
				t.Logf("attempt %d: %v", attempt, err)
			}
			if err != nil {
				t.Fatalf("%v\nproxy logs:\n%s", err, p.Logs())
			}
			w.fake.WaitIdle(ctx)
			for _, r := range w.fake.Requests() {
				if r.Method == http.MethodHead {
					continue // the time probe
				}
				if r.Verified == nil {
					t.Errorf("%s %s refused: %s", r.Method, r.Path, r.Failure)
					continue
				}
				if d := r.Verified.SigningTime.Sub(r.Time); d > 3*time.Second || d < -3*time.Second {
					t.Errorf("signed at %v, %v from true time", r.Verified.SigningTime, d)
				}
			}
			for _, r := range iot.Requests() {
				if !r.Issued {
					t.Errorf("IoT endpoint answered %d at %v", r.Status, r.Time)
				}
			}
			if iot.Issued() != 1 {
				t.Errorf("credentials issued %d times, want 1", iot.Issued())
			}
		})
	}
}
