package main

// The black-box harness: TestMain builds the real binary once; startProxy
// runs `skewproxy serve` as a child process with its own environment and
// state directory, learns its ports from its first JSON log line, and stops
// it (SIGTERM) when the test ends.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testBuildTime is the build time stamped into the test binary.
const testBuildTime = "2016-01-01T00:00:00Z"

// testBinary is the skewproxy binary built by TestMain.
var testBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skewproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBinary = filepath.Join(dir, "skewproxy")
	if err := buildBinary(testBinary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds skewproxy into out as the Dockerfile builds the
// release binary (static, trimmed, stamped), for the platform env names
// (GOARCH=arm64, say; none: this machine's). The build-time stamp is
// 2016-01-01: the wrong-clock tests move true time ten years back (late
// 2016), which a binary claiming a 2026 build would rightly refuse;
// TestWrongClockE2EBuildTimeFloor checks the floor below it.
func buildBinary(out string, env ...string) error {
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test-build -X main.commit=harness -X main.built="+testBuildTime, "-o", out, ".")
	build.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if msg, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build skewproxy %v: %v\n%s", env, err, msg)
	}
	return nil
}

// proxyOptions configures one child proxy.
type proxyOptions struct {
	Args []string // extra serve flags
	Env  []string // extra environment (AWS credentials go here)
	// Command runs instead of the test binary, the serve arguments
	// appended: an emulator and an ARM build, say. Empty: testBinary.
	Command []string
}

// runningProxy is a child `skewproxy serve`.
type runningProxy struct {
	ProxyURL *url.URL // http://127.0.0.1:port
	AdminURL string   // http://127.0.0.1:port
	StateDir string
	CAFile   string // the exported CA certificate
	CAPool   *x509.CertPool

	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   strings.Builder
	exited chan struct{}
	err    error
}

// Logs returns everything the proxy wrote to stderr so far.
func (p *runningProxy) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Stop sends SIGTERM and waits (bounded) for the process to exit.
func (p *runningProxy) Stop(t testing.TB) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("skewproxy did not stop within 40s of SIGTERM; logs:\n%s", p.Logs())
		return p.err
	}
}

// baseEnv is a clean environment: no proxy variables, no shared AWS config.
func baseEnv(t testing.TB, home string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_METRICS_EXPORTER=none",
		"OTEL_LOGS_EXPORTER=none",
	}
	return env
}

// startProxy runs `skewproxy serve` with free ports and waits until its
// admin port answers /healthz.
func startProxy(t testing.TB, o proxyOptions) *runningProxy {
	t.Helper()
	home := t.TempDir()
	state := filepath.Join(home, "state")
	caFile := filepath.Join(home, "ca.pem")
	args := append([]string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--state-dir", state, "--ca-export", caFile,
		"--log-format", "json", "--log-level", "debug"}, o.Args...)
	argv := append(append([]string(nil), o.Command...), args...)
	if len(o.Command) == 0 {
		argv = append([]string{testBinary}, args...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(baseEnv(t, home), o.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &runningProxy{cmd: cmd, StateDir: state, CAFile: caFile, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start skewproxy: %v", err)
	}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if sent {
				continue
			}
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "skewproxy serving" {
				ready <- rec
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	var rec map[string]any
	select {
	case rec = <-ready:
	case <-p.exited:
		t.Fatalf("skewproxy exited at start (%v); logs:\n%s", p.err, p.Logs())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("skewproxy did not start within 30s; logs:\n%s", p.Logs())
	}
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.Stop(t)
		}
		if t.Failed() {
			t.Logf("skewproxy logs:\n%s", p.Logs())
		}
	})
	p.ProxyURL = &url.URL{Scheme: "http", Host: fmt.Sprint(rec["listen"])}
	p.AdminURL = "http://" + fmt.Sprint(rec["admin"])
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("exported CA: %v", err)
	}
	p.CAPool = x509.NewCertPool()
	if !p.CAPool.AppendCertsFromPEM(pem) {
		t.Fatal("exported CA holds no certificate")
	}
	return p
}

// Client returns an HTTP client that uses the proxy and trusts its CA.
func (p *runningProxy) Client() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(p.ProxyURL),
			TLSClientConfig: &tls.Config{RootCAs: p.CAPool},
		},
	}
}

// getJSON fetches an admin endpoint and decodes its JSON answer.
func (p *runningProxy) getJSON(t testing.TB, path string, v any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.AdminURL+path, nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// waitReady polls /readyz until 200 or the deadline.
func (p *runningProxy) waitReady(t testing.TB, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if p.getJSON(t, "/readyz", nil) == http.StatusOK {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz not 200 within %v", within)
	return 0
}
