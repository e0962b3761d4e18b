package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// tailBuffer keeps the last max bytes written to it (a child's output).
// It holds up to twice that between trims.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max { // trim rarely: a chatty child must stay cheap to follow
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf[max(0, len(b.buf)-b.max):])
}

// child is a peer process skewbench started (skewproxy, tinyproxy,
// mitmdump, MinIO), in its own process group, its output kept in a tail.
type child struct {
	Name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

// startChild starts cmd; its stdout and stderr go to the child's tail
// unless the caller already set cmd.Stderr (it must then also feed the
// tail itself).
func startChild(name string, cmd *exec.Cmd) (*child, error) {
	c := &child{Name: name, cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = c.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = c.out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Pid is the process id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (c *child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Tail is the end of what the process printed.
func (c *child) Tail() string { return c.out.String() }

// Stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (c *child) Stop() {
	if c == nil || c.Exited() {
		return
	}
	_ = syscall.Kill(-c.Pid(), syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
	<-c.done
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections, c exits, or timeout.
func waitTCP(c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c.Exited() {
			return fmt.Errorf("%s exited at start: %v\n%s", c.Name, c.err, c.Tail())
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %v\n%s", c.Name, addr, timeout, c.Tail())
}

// procStatusKiB reads a "Vm..." field of /proc/PID/status, in KiB.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// skewproxyProc is a running `skewproxy serve`.
type skewproxyProc struct {
	*child
	ProxyURL *url.URL
	Admin    string // http://127.0.0.1:PORT
	CAFile   string
	CAPool   *x509.CertPool
}

// startSkewproxy runs `bin serve` on free loopback ports with a state dir
// under dir, creds as its AWS credentials and the extra flags, and waits for
// its "skewproxy serving" log line. Time comes from an unreachable NTP
// source: the proxy signs with the host clock, which is all a benchmark
// needs.
func startSkewproxy(bin, dir string, creds aws.Credentials, extra ...string) (*skewproxyProc, error) {
	return startSkewproxyCmd([]string{bin}, dir, creds, extra...)
}

// startSkewproxyCmd is startSkewproxy with a command line to run instead of
// the binary alone: an emulator and an ARM build, say.
func startSkewproxyCmd(argv []string, dir string, creds aws.Credentials, extra ...string) (*skewproxyProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("skewproxy dir: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	args := append([]string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--state-dir", filepath.Join(dir, "state"), "--ca-export", caFile,
		"--time-source", "ntp://127.0.0.1:1",
		"--log-format", "json", "--log-level", "info"}, extra...)
	cmd := exec.Command(argv[0], append(argv[1:len(argv):len(argv)], args...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
	}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	c, err := startChild("skewproxy", cmd)
	if err != nil {
		return nil, err
	}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = c.out.Write(append(line, '\n'))
			if sent || !bytes.Contains(line, []byte("skewproxy serving")) {
				continue
			}
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "skewproxy serving" {
				ready <- rec
				sent = true
			}
		}
		_, _ = io.Copy(c.out, pr)
	}()
	go func() {
		<-c.done
		pw.Close()
	}()
	var rec map[string]any
	select {
	case rec = <-ready:
	case <-c.done:
		return nil, fmt.Errorf("skewproxy exited at start (%v):\n%s", c.err, c.Tail())
	case <-time.After(60 * time.Second):
		c.Stop()
		return nil, fmt.Errorf("skewproxy did not start within 60s:\n%s", c.Tail())
	}
	p := &skewproxyProc{child: c, CAFile: caFile,
		ProxyURL: &url.URL{Scheme: "http", Host: fmt.Sprint(rec["listen"])},
		Admin:    "http://" + fmt.Sprint(rec["admin"])}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("skewproxy CA: %w", err)
	}
	p.CAPool = x509.NewCertPool()
	if !p.CAPool.AppendCertsFromPEM(pem) {
		c.Stop()
		return nil, errors.New("skewproxy CA file holds no certificate")
	}
	return p, nil
}

// cpuProfile fetches a CPU profile of secs seconds from the proxy's admin
// /debug/pprof/profile (serve --pprof) into path.
func (p *skewproxyProc) cpuProfile(ctx context.Context, secs int, path string) error {
	return p.fetchProfile(ctx, fmt.Sprintf("profile?seconds=%d", secs), path, time.Duration(secs+30)*time.Second)
}

// endpointProc is `skewbench endpoint` running as a child process.
type endpointProc struct {
	*child
	Addr      string // 127.0.0.1:PORT, HTTPS
	PlainAddr string // 127.0.0.1:PORT, plain HTTP
	CAFile    string
	Pool      *x509.CertPool
}

// selfInfo is the first stdout line of a skewbench child (endpoint,
// bare-proxy): where it listens and the CA file its clients trust.
type selfInfo struct {
	Addr  string `json:"addr"`
	Plain string `json:"plain,omitempty"`
	CA    string `json:"ca"`
}

// startSelf re-executes this program with args as a child process named
// name and reads its selfInfo from its first stdout line; pool holds the
// certificate of its CA file.
func startSelf(name string, args ...string) (*child, selfInfo, *x509.CertPool, error) {
	var info selfInfo
	self, err := os.Executable()
	if err != nil {
		return nil, info, nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command(self, args...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	c, err := startChild(name, cmd)
	if err != nil {
		return nil, info, nil, err
	}
	first := make(chan string, 1)
	go func() {
		br := bufio.NewReader(pr)
		line, _ := br.ReadString('\n')
		first <- line
		_, _ = io.Copy(c.out, br)
	}()
	go func() {
		<-c.done
		pw.Close()
	}()
	select {
	case line := <-first:
		if err := json.Unmarshal([]byte(line), &info); err != nil || info.Addr == "" {
			c.Stop()
			return nil, info, nil, fmt.Errorf("%s: first line %q: %v\n%s", name, line, err, c.Tail())
		}
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, info, nil, fmt.Errorf("%s did not start within 30s:\n%s", name, c.Tail())
	}
	pem, err := os.ReadFile(info.CA)
	if err != nil {
		c.Stop()
		return nil, info, nil, fmt.Errorf("%s CA: %w", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.Stop()
		return nil, info, nil, fmt.Errorf("%s CA file holds no certificate", name)
	}
	return c, info, pool, nil
}

// startEndpointProc runs `skewbench endpoint` with the CA file in dir.
func startEndpointProc(dir string) (*endpointProc, error) {
	c, info, pool, err := startSelf("endpoint", "endpoint", "--dir", dir, "--proxy-akid", proxyCreds.AccessKeyID)
	if err != nil {
		return nil, err
	}
	if info.Plain == "" {
		c.Stop()
		return nil, errors.New("endpoint: no plain-HTTP address on its first line")
	}
	return &endpointProc{child: c, Addr: info.Addr, PlainAddr: info.Plain, CAFile: info.CA, Pool: pool}, nil
}

// Counts asks the endpoint how many requests it saw signed with the
// proxy's key, and how many otherwise.
func (e *endpointProc) Counts(ctx context.Context) (endpointCounts, error) {
	var ec endpointCounts
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.Addr+countsPath, nil)
	if err != nil {
		return ec, err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.Pool, ServerName: lambdaHost}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return ec, fmt.Errorf("endpoint counts: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ec); err != nil {
		return ec, fmt.Errorf("endpoint counts: %w", err)
	}
	return ec, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procCPU is the CPU time (user + system) a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// fetchProfile saves the admin's /debug/pprof/NAME?QUERY (serve --pprof)
// to path.
func (p *skewproxyProc) fetchProfile(ctx context.Context, nameQuery, path string, timeout time.Duration) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Admin+"/debug/pprof/"+nameQuery, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return fmt.Errorf("pprof %s: %w", nameQuery, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s (is serve --pprof on?)", nameQuery, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("pprof %s: %w", nameQuery, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof %s: %w", nameQuery, err)
	}
	return f.Close()
}
