package main

// Fault tests against the real binary: a time source that dies, a
// credential provider that fails and comes back, an S3 server restarted
// in the middle of a multipart upload, and SIGTERM with requests in flight.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/beevik/ntp"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

// faultsE2EChrony is a chronyd on loopback that a test can kill.
type faultsE2EChrony struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// faultsE2EStartChrony starts chronyd as ntptest.Start does (-x: it never
// touches the machine's clock), but hands back the process so the test
// can kill it mid-run.
func faultsE2EStartChrony(t *testing.T) *faultsE2EChrony {
	t.Helper()
	bin, err := exec.LookPath("chronyd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/chronyd", "/sbin/chronyd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatal("chronyd not found: run `make deps`")
	}
	for attempt := 0; attempt < 3; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		dir := t.TempDir()
		conf := filepath.Join(dir, "chrony.conf")
		text := fmt.Sprintf("port %d\nbindaddress 127.0.0.1\nlocal stratum 8\nallow 127.0.0.1\ncmdport 0\nbindcmdaddress /\npidfile %s\ndriftfile %s\n",
			port, filepath.Join(dir, "chronyd.pid"), filepath.Join(dir, "chrony.drift"))
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-x", "-d", "-f", conf}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		} else {
			args = append(args, "-U")
		}
		c := &faultsE2EChrony{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: exec.Command(bin, args...), done: make(chan struct{})}
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("start chronyd: %v", err)
		}
		go func() { c.cmd.Wait(); close(c.done) }()
		t.Cleanup(c.Kill)
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			resp, err := ntp.QueryWithOptions(c.Addr, ntp.QueryOptions{Timeout: 200 * time.Millisecond})
			if err == nil && resp.Validate() == nil {
				return c
			}
			select {
			case <-c.done:
				deadline = time.Time{}
			default:
			}
		}
		c.Kill()
	}
	t.Fatal("chronyd gave no valid answer")
	return nil
}

// Kill stops chronyd and waits for it (idempotent).
func (c *faultsE2EChrony) Kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Kill()
	<-c.done
}

// faultsE2EStatus is the clock part of /status.
type faultsE2EStatus struct {
	Clock struct {
		Synced      bool      `json:"synced"`
		Source      string    `json:"source"`
		Corrected   time.Time `json:"corrected_time"`
		Uncertainty float64   `json:"uncertainty_seconds"`
	} `json:"clock"`
}

// TestFaultsE2ENTPDiesMidRun: chronyd answers, the proxy syncs, chronyd is
// killed. The proxy logs the failing source, stays synced (the estimate
// carries on, its uncertainty growing, and the answers' Date headers keep
// feeding it), /readyz stays 200, and requests keep being signed with
// the right time.
func TestFaultsE2ENTPDiesMidRun(t *testing.T) {
	chrony := faultsE2EStartChrony(t)
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://" + chrony.Addr,
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	p.waitReady(t, 20*time.Second)
	// Kill it at once: the rest of the start burst (and every later poll)
	// gets no answer.
	chrony.Kill()
	var before faultsE2EStatus
	p.getJSON(t, "/status", &before)
	if !before.Clock.Synced || before.Clock.Source != "ntp://"+chrony.Addr {
		t.Fatalf("status before: %+v", before.Clock)
	}

	client := sts.NewFromConfig(p.awsConfig(), func(o *sts.Options) { o.Region = "us-east-1" })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Logs(), `"msg":"time source failed"`) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never reported the dead time source")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		cancel()
		if err != nil {
			t.Fatalf("request %d after the NTP server died: %v", i, err)
		}
	}
	var after faultsE2EStatus
	p.getJSON(t, "/status", &after)
	var ready map[string]any
	if code := p.getJSON(t, "/readyz", &ready); code != http.StatusOK {
		t.Fatalf("/readyz %d %v after the NTP server died", code, ready)
	}
	t.Logf("status before: %+v; after: %+v", before.Clock, after.Clock)
	if !after.Clock.Synced {
		t.Fatalf("not synced after the NTP server died: %+v", after.Clock)
	}
	if after.Clock.Source != before.Clock.Source && !strings.HasPrefix(after.Clock.Source, "http-date:") {
		t.Fatalf("source %q: want the last NTP sample or a Date header", after.Clock.Source)
	}
	if after.Clock.Source == before.Clock.Source && after.Clock.Uncertainty <= before.Clock.Uncertainty {
		t.Fatalf("uncertainty did not grow while the source was silent: %v -> %v", before.Clock.Uncertainty, after.Clock.Uncertainty)
	}
	if d := time.Since(after.Clock.Corrected); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("corrected time off by %v", d)
	}
	faultsE2ERecorded(t, fake, 5)
}

// TestFaultsE2ECredentialProcessFailsAndRecovers: the proxy's credentials
// come from a credential_process whose answers expire at once (inside the
// SDK's refresh window), so every request asks it again. While it fails
// the proxy answers 503 naming the provider, and nothing goes upstream;
// once it works again, requests succeed.
func TestFaultsE2ECredentialProcessFailsAndRecovers(t *testing.T) {
	keys := proxyKeys
	keys.SessionToken = "faults-session-token"
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: keys})
	dir := t.TempDir()
	marker := filepath.Join(dir, "broken")
	calls := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "creds.sh")
	body := fmt.Sprintf(`#!/bin/sh
echo x >> %q
if [ -e %q ]; then echo "credential source is down" >&2; exit 1; fi
exp=$(date -u -d '+4 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)
printf '{"Version":1,"AccessKeyId":"%s","SecretAccessKey":"%s","SessionToken":"%s","Expiration":"%%s"}\n' "$exp"
`, calls, marker, keys.AccessKeyID, keys.SecretAccessKey, keys.SessionToken)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config")
	if err := os.WriteFile(cfgFile, []byte("[profile faults]\nregion = us-east-1\ncredential_process = "+script+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
			"--no-time-bootstrap", // the fake must count only signed requests
		},
		Env: []string{"AWS_CONFIG_FILE=" + cfgFile, "AWS_PROFILE=faults", "AWS_REGION=us-east-1"},
	})
	c := p.Client()
	get := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	countCalls := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	if code, b := get(); code != 200 {
		t.Fatalf("with a working credential process: %d %s", code, b)
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Credentials that still live are kept through a failed refresh: wait
	// until the 4-second ones have died.
	time.Sleep(4500 * time.Millisecond)
	callsBefore := countCalls()
	for i := range 3 {
		code, b := get()
		if code != http.StatusServiceUnavailable || !strings.Contains(b, "ProxyCredentialsUnavailable") || !strings.Contains(strings.ToLower(b), "process") {
			t.Fatalf("request %d with a failing credential process: %d %s; want 503 naming the provider", i, code, b)
		}
		if strings.Contains(b, keys.SecretAccessKey) || strings.Contains(b, keys.SessionToken) {
			t.Fatalf("secret in the answer: %s", b)
		}
		if i == 0 {
			t.Logf("answer while failing: %d %s", code, b)
		}
	}
	if countCalls() <= callsBefore {
		t.Fatal("the credential process was not asked again")
	}
	faultsE2ERecorded(t, fake, 1) // only the first
	os.Remove(marker)
	if code, b := get(); code != 200 {
		t.Fatalf("after the credential process recovered: %d %s", code, b)
	}
	if logs := p.Logs(); strings.Contains(logs, keys.SecretAccessKey) || strings.Contains(logs, keys.SessionToken) {
		t.Fatal("a secret reached the proxy's log")
	}
}

// faultsE2ECountingReader counts bytes read and fires once past a mark.
type faultsE2ECountingReader struct {
	r    io.ReadSeeker
	n    atomic.Int64
	mark int64
	once sync.Once
	hit  chan struct{}
}

func (c *faultsE2ECountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n.Add(int64(n)) >= c.mark {
		c.once.Do(func() { close(c.hit) })
	}
	return n, err
}

// TestFaultsE2EMinIORestartDuringMultipartUpload: the s3 manager uploads
// 30 MiB in 5 MiB parts through the proxy; MinIO is restarted after the
// first parts. The proxy answers 502 while MinIO is down, the SDK's retryer
// resends, and the object reads back byte for byte.
func TestFaultsE2EMinIORestartDuringMultipartUpload(t *testing.T) {
	m := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "s3.us-east-1.amazonaws.com:443=" + m.Endpoint(),
			"--resolve", "*.s3.us-east-1.amazonaws.com:443=" + m.Endpoint(),
			"--time-source", "ntp://127.0.0.1:1",
		},
		Env: proxyCredsEnv(m.Credentials),
	})
	cfg := p.awsConfig()
	cfg.RetryMaxAttempts = 0 // the retryer below decides
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 30
			o.MaxBackoff = time.Second
			o.RateLimiter = faultsE2ENoRateLimit{}
		})
	}
	client := s3.NewFromConfig(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bucket := "faults-restart"
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	data := make([]byte, 30<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	body := &faultsE2ECountingReader{r: bytes.NewReader(data), mark: 8 << 20, hit: make(chan struct{})}
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		select {
		case <-body.hit:
		case <-ctx.Done():
			return
		}
		m.Restart(t)
	}()
	//lint:ignore SA1019 the brief asks for feature/s3/manager, still the common multipart client
	up := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = 5 << 20
		u.Concurrency = 2
		u.LeavePartsOnError = false
	})
	start := time.Now()
	//lint:ignore SA1019 as above
	_, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("big/object.bin"), Body: body})
	<-restarted
	if err != nil {
		t.Fatalf("upload across the MinIO restart: %v", err)
	}
	t.Logf("30 MiB multipart upload across a MinIO restart took %v", time.Since(start))
	if !strings.Contains(p.Logs(), `"status":502`) {
		t.Error("no 502 in the proxy's log: MinIO was not down during the upload")
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("big/object.bin")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if len(got) != len(data) || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes that differ from the %d uploaded", len(got), len(data))
	}
}

// faultsE2ENoRateLimit lets the retryer retry as often as MaxAttempts says
// (the default token bucket would stop retries during the outage).
type faultsE2ENoRateLimit struct{}

func (faultsE2ENoRateLimit) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (faultsE2ENoRateLimit) AddTokens(uint) error { return nil }

// TestFaultsE2ESIGTERMWithInflightRequests: 100 Lambda invokes of 1.5 s
// are in flight when the proxy gets SIGTERM, and 20 more clients arrive
// during the drain. Every request either completes with 200 or is refused
// before it is sent: the fake saw exactly as many invokes as clients got
// 200s, and the process exits 0 within the drain timeout.
func TestFaultsE2ESIGTERMWithInflightRequests(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
		Credentials: proxyKeys,
		Functions:   map[string]proxytest.FunctionBehavior{"slow": {Delay: 1500 * time.Millisecond}},
	})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
			"--lambda-max-inflight", "1000",
			"--drain-timeout", "20s",
		},
		Env: proxyCredsEnv(proxyKeys),
	})
	const inflight, late = 100, 20
	invoke := func(i int) (ok bool, detail string) {
		tr := p.Client().Transport.(*http.Transport)
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/slow/invocations", "application/json",
			strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, "read: " + err.Error()
		}
		if resp.StatusCode != 200 || !strings.Contains(string(b), fmt.Sprintf(`"n":%d`, i)) {
			return false, fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		return true, ""
	}
	var wg sync.WaitGroup
	var okCount atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	run := func(i int) {
		defer wg.Done()
		ok, detail := invoke(i)
		if ok {
			okCount.Add(1)
			return
		}
		mu.Lock()
		failures[faultsE2EKind(detail)]++
		mu.Unlock()
	}
	for i := range inflight {
		wg.Add(1)
		go run(i)
	}
	// Wait until all 100 are held by the proxy (in flight upstream).
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Lambda struct {
				Inflight int `json:"inflight"`
			} `json:"lambda"`
		}
		p.getJSON(t, "/status", &st)
		if st.Lambda.Inflight >= inflight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d invokes in flight", st.Lambda.Inflight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := range late {
		wg.Add(1)
		go run(inflight + i)
	}
	wg.Wait()
	var exitErr error
	select {
	case <-p.exited:
		exitErr = p.err
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy did not exit within 30 s of SIGTERM")
	}
	exitAfter := time.Since(sigterm)
	countSlow := func() int {
		n := 0
		for _, r := range fake.Requests() {
			if r.Function == "slow" {
				n++
			}
		}
		return n
	}
	// The fake records a request just after its handler returns.
	idleCtx, idleCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer idleCancel()
	fake.WaitIdle(idleCtx)
	seen := countSlow()
	t.Logf("SIGTERM with %d in flight (+%d late): %d completed, refused %v; upstream saw %d; exit after %v (%v)",
		inflight, late, okCount.Load(), failures, seen, exitAfter.Round(time.Millisecond), exitErr)
	if exitErr != nil {
		t.Errorf("exit status: %v", exitErr)
	}
	if exitAfter > 20*time.Second {
		t.Errorf("exit took %v, beyond the 20 s drain timeout", exitAfter)
	}
	if okCount.Load() < inflight {
		t.Errorf("only %d of the %d in-flight invokes completed", okCount.Load(), inflight)
	}
	if int64(seen) != okCount.Load() {
		t.Errorf("upstream saw %d invokes but clients got %d answers: a request was half-sent", seen, okCount.Load())
	}
	if !strings.Contains(p.Logs(), `"msg":"skewproxy stopped"`) {
		t.Error("no clean stop in the log")
	}
}

// faultsE2ERecorded checks that fake recorded n requests, once it has
// recorded every request it answered (up to 5 s): it records a request after
// its handler returns, which may be just after the client has the answer.
func faultsE2ERecorded(t *testing.T, fake *proxytest.AWS, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fake.WaitIdle(ctx)
	if got := len(fake.Requests()); got != n {
		t.Fatalf("fake recorded %d requests, want %d", got, n)
	}
}

// faultsE2EKind groups a client failure for the report.
func faultsE2EKind(detail string) string {
	switch {
	case strings.Contains(detail, "connection refused"):
		return "connection refused"
	case strings.Contains(detail, "ProxyShuttingDown"):
		return "503 ProxyShuttingDown"
	case strings.Contains(detail, "EOF"), strings.Contains(detail, "reset"):
		return "connection closed"
	}
	var e struct {
		Type string `json:"__type"`
	}
	if i := strings.IndexByte(detail, '{'); i >= 0 && json.Unmarshal([]byte(detail[i:]), &e) == nil && e.Type != "" {
		return e.Type
	}
	return detail
}

// TestFaultsE2ELimitFlagsFromEnv: the limits reach the proxy from their
// SKEWPROXY_* variables: a connection beyond SKEWPROXY_MAX_CLIENT_CONNS
// gets 503, headers beyond SKEWPROXY_MAX_HEADER_BYTES get 431 (inside an
// intercepted tunnel too), a client silent past
// SKEWPROXY_READ_HEADER_TIMEOUT is dropped; and the operator-only settings
// stay safe: the admin port refuses a non-loopback address without
// --admin-allow-remote, and the CA key is readable by its owner only.
func TestFaultsE2ELimitFlagsFromEnv(t *testing.T) {
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
			"--upstream-ca", fake.CAFile(t),
			"--time-source", "ntp://127.0.0.1:1",
		},
		Env: append(proxyCredsEnv(proxyKeys),
			"SKEWPROXY_MAX_CLIENT_CONNS=3",
			"SKEWPROXY_MAX_HEADER_BYTES=4KiB",
			"SKEWPROXY_READ_HEADER_TIMEOUT=1s",
		),
	})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.ProxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	readStatus := func(c net.Conn) int {
		t.Helper()
		resp, err := http.ReadResponse(bufioReader(c), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	big := "X-Big: " + strings.Repeat("b", 8<<10) + "\r\n"
	c := dial()
	io.WriteString(c, "GET http://sts.us-east-1.amazonaws.com/ HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com\r\n"+big+"\r\n")
	if got := readStatus(c); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header on the listener: %d, want 431", got)
	}
	c.Close()

	// Silent client: dropped after about a second.
	silent := dial()
	start := time.Now()
	io.Copy(io.Discard, silent)
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("silent client dropped after %v, want about 1s", d)
	}
	silent.Close()

	// Three open connections (two of them tunnels), the fourth refused.
	var held []net.Conn
	for range 3 {
		h := dial()
		io.WriteString(h, "CONNECT sts.us-east-1.amazonaws.com:443 HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com:443\r\n\r\n")
		if got := readStatus(h); got != http.StatusOK {
			t.Fatalf("CONNECT: %d", got)
		}
		h.SetDeadline(time.Now().Add(30 * time.Second))
		held = append(held, h)
	}
	extra := dial()
	io.WriteString(extra, "GET http://sts.us-east-1.amazonaws.com/ HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com\r\n\r\n")
	if got := readStatus(extra); got != http.StatusServiceUnavailable {
		t.Fatalf("connection beyond the limit: %d, want 503", got)
	}
	// Inside one of the tunnels: the header limit holds too.
	tc := tls.Client(held[0], &tls.Config{RootCAs: p.CAPool, ServerName: "sts.us-east-1.amazonaws.com"})
	io.WriteString(tc, "GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com\r\n"+big+"\r\n")
	if got := readStatus(tc); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header inside a tunnel: %d, want 431", got)
	}
	for _, h := range held {
		h.Close()
	}
	if n := len(fake.Requests()); n != 0 {
		t.Fatalf("fake got %d requests", n)
	}

	// Operator-only settings.
	info, err := os.Stat(filepath.Join(p.StateDir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		t.Fatalf("ca-key.pem mode %v: readable by others", mode)
	}
	if dir, err := os.Stat(p.StateDir); err != nil || dir.Mode().Perm()&0o077 != 0 {
		t.Fatalf("state dir mode %v (%v)", dir.Mode().Perm(), err)
	}
	_, stderr, code := runBinary(t, "", proxyCredsEnv(proxyKeys), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--state-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "--admin-allow-remote") {
		t.Fatalf("admin on 0.0.0.0 without --admin-allow-remote: exit %d, %s", code, stderr)
	}
}

// bufioReader reads an HTTP answer off a raw connection.
func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
