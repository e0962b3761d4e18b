package proxytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MinIODomain is the MINIO_DOMAIN the launcher sets, so that virtual-host
// requests (Host: BUCKET.s3.us-east-1.amazonaws.com) reach their bucket.
const MinIODomain = "s3.us-east-1.amazonaws.com"

// MinIORegion is the region MinIO is configured with.
const MinIORegion = "us-east-1"

// MinIO is a real MinIO server on loopback, started by StartMinIO. It
// verifies SigV4, aws-chunked chunk signatures and clock skew (±15 min).
type MinIO struct {
	// Credentials are the root user's keys (random per server).
	Credentials Credentials

	bin, dataDir, logPath string
	addr, consoleAddr     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartMinIO starts a MinIO server for the duration of the test, with data
// in a temporary directory, and stops it in t.Cleanup. The binary is looked
// up in $GOBIN, $GOPATH/bin (default ~/go/bin), then PATH; when it is
// missing the test fails (skips under -short): run `make deps`.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin, err := findMinIO()
	if err != nil {
		if testing.Short() {
			t.Skipf("minio not found (%v): run `make deps`", err)
		}
		t.Fatalf("minio not found: run `make deps` (%v)", err)
	}
	dir := t.TempDir()
	m := &MinIO{
		Credentials: Credentials{AccessKeyID: "proxytest" + randHex(4), SecretAccessKey: randHex(20)},
		bin:         bin,
		dataDir:     filepath.Join(dir, "data"),
		logPath:     filepath.Join(dir, "minio.log"),
	}
	if err := os.MkdirAll(m.dataDir, 0o700); err != nil {
		t.Fatalf("proxytest: minio data dir: %v", err)
	}
	var lastErr error
	for range 3 { // a free port can be taken between probe and bind: retry
		if m.addr, lastErr = freeAddr(); lastErr != nil {
			continue
		}
		if m.consoleAddr, lastErr = freeAddr(); lastErr != nil {
			continue
		}
		if lastErr = m.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("proxytest: start minio: %v\n%s", lastErr, m.logTail())
	}
	t.Cleanup(func() {
		if err := m.stop(); err != nil {
			t.Logf("proxytest: stop minio: %v", err)
		}
	})
	return m
}

// Endpoint is MinIO's base URL, http://127.0.0.1:PORT.
func (m *MinIO) Endpoint() string { return "http://" + m.addr }

// Addr is MinIO's host:port (127.0.0.1:PORT), e.g. for --resolve.
func (m *MinIO) Addr() string { return m.addr }

// Client returns an HTTP client that sends every request to MinIO whatever
// the URL's host (the Host header is kept), e.g. for virtual-host buckets
// at http://BUCKET.s3.us-east-1.amazonaws.com/.
func (m *MinIO) Client() *http.Client {
	var d net.Dialer
	addr := m.addr
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	return &http.Client{Transport: bufferedBody{tr}, Timeout: 2 * time.Minute}
}

// Restart stops MinIO and starts it again on the same address with the
// same data and keys, waiting until it is live.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	if err := m.stop(); err != nil {
		t.Fatalf("proxytest: stop minio: %v", err)
	}
	var err error
	for range 20 { // the old listener may linger for a moment
		if err = m.start(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("proxytest: restart minio: %v\n%s", err, m.logTail())
}

// Stop stops MinIO now (it is also stopped by t.Cleanup); Restart starts it
// again. Use it to test an upstream that is down.
func (m *MinIO) Stop(t testing.TB) {
	t.Helper()
	if err := m.stop(); err != nil {
		t.Fatalf("proxytest: stop minio: %v", err)
	}
}

// Logs returns what MinIO printed so far.
func (m *MinIO) Logs() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

func (m *MinIO) start() error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", m.dataDir,
		"--address", m.addr, "--console-address", m.consoleAddr,
		"--certs-dir", filepath.Join(filepath.Dir(m.dataDir), "certs"), "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.Credentials.AccessKeyID,
		"MINIO_ROOT_PASSWORD="+m.Credentials.SecretAccessKey,
		"MINIO_DOMAIN="+MinIODomain,
		"MINIO_SITE_REGION="+MinIORegion,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", m.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	if err := m.waitLive(done, 60*time.Second); err != nil {
		_ = m.stop()
		return err
	}
	return nil
}

// waitLive polls /minio/health/live until it answers 200, the process
// exits, or the timeout passes.
func (m *MinIO) waitLive(done <-chan struct{}, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("minio exited during start")
		default:
		}
		// Live is not enough: until the object layer is initialised S3 calls
		// get 503 XMinioServerNotInitialized. Ready, and an anonymous
		// ListBuckets refused for its credentials (not with a 503), is.
		if m.answers(client, "/minio/health/live", http.StatusOK) &&
			m.answers(client, "/minio/health/ready", http.StatusOK) &&
			m.answers(client, "/", http.StatusForbidden) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("minio not live at %s after %v", m.addr, timeout)
}

// answers reports whether GET path answers with status.
func (m *MinIO) answers(client *http.Client, path string, status int) bool {
	resp, err := client.Get(m.Endpoint() + path)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == status
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (m *MinIO) stop() error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("minio (pid %d) did not exit", cmd.Process.Pid)
	}
}

func (m *MinIO) logTail() string {
	s := m.Logs()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return "minio log:\n" + s
}

// findMinIO looks for the minio binary in $GOBIN, $GOPATH/bin and PATH.
func findMinIO() (string, error) {
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	for _, p := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "minio")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("minio")
	if err != nil {
		return "", fmt.Errorf("not in %s or PATH: %w", strings.Join(dirs, ", "), err)
	}
	return p, nil
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("probe free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
