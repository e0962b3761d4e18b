package deploy_test

// The rules and the dashboard against a running skewproxy: every metric
// name, label and value their queries use is one the proxy exports.

import (
	"bufio"
	"bytes"
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
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.yaml.in/yaml/v3"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// skewproxyBinary builds ./cmd/skewproxy once per test binary.
func skewproxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skewproxy-monitoring-")
		if err != nil {
			buildErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		builtBinary = filepath.Join(dir, "skewproxy")
		cmd := exec.Command(goBin, "build", "-o", builtBinary, "../cmd/skewproxy")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ../cmd/skewproxy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

// liveProxy is a child `skewproxy serve`.
type liveProxy struct {
	ProxyURL *url.URL
	Admin    string // http://127.0.0.1:PORT
	CAPool   *x509.CertPool
	logs     *bytes.Buffer
	mu       *sync.Mutex
}

func (p *liveProxy) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func startLiveProxy(t *testing.T, env []string, args ...string) *liveProxy {
	t.Helper()
	home := t.TempDir()
	caFile := filepath.Join(home, "ca.pem")
	argv := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--state-dir", filepath.Join(home, "state"), "--ca-export", caFile, "--log-format", "json"}, args...)
	cmd := exec.Command(skewproxyBinary(t), argv...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
		"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
	}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &liveProxy{logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	exited := make(chan struct{})
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "skewproxy serving" {
				ready <- rec
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("skewproxy logs:\n%s", p.Logs())
		}
	})
	var rec map[string]any
	select {
	case rec = <-ready:
	case <-exited:
		t.Fatalf("skewproxy exited at start; logs:\n%s", p.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("skewproxy did not start within 30 s; logs:\n%s", p.Logs())
	}
	p.ProxyURL = &url.URL{Scheme: "http", Host: fmt.Sprint(rec["listen"])}
	p.Admin = "http://" + fmt.Sprint(rec["admin"])
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	p.CAPool = x509.NewCertPool()
	if !p.CAPool.AppendCertsFromPEM(pem) {
		t.Fatal("exported CA holds no certificate")
	}
	return p
}

func (p *liveProxy) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(p.ProxyURL),
		TLSClientConfig: &tls.Config{RootCAs: p.CAPool, MinVersion: tls.VersionTLS12},
	}}
}

func (p *liveProxy) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(p.Admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

func (p *liveProxy) lambdaStatus(t *testing.T) (inflight, queued int) {
	_, b := p.get(t, "/status")
	var st struct {
		Lambda struct {
			Inflight int `json:"inflight"`
			Queued   int `json:"queued"`
		} `json:"lambda"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/status: %v: %s", err, b)
	}
	return st.Lambda.Inflight, st.Lambda.Queued
}

// clientRequest is an app's request, signed by the app with placeholder keys.
func clientRequest(t *testing.T, service string) *http.Request {
	t.Helper()
	var req *http.Request
	var body []byte
	switch service {
	case "sts":
		body = []byte("Action=GetCallerIdentity&Version=2011-06-15")
		req, _ = http.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	case "lambda":
		body = []byte(`{"from":"monitoring_test"}`)
		req, _ = http.NewRequest(http.MethodPost, "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/slow/invocations", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	creds := aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, proxytest.HexSHA256(body), service, "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, c *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// ---- /metrics ----------------------------------------------------------------------

type series struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// scrape is a parsed /metrics answer.
type scrape struct {
	Series []series
	Labels map[string]map[string]bool // metric name -> label names with a value
}

var sampleLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseMetrics(t *testing.T, text string) scrape {
	t.Helper()
	sc := scrape{Labels: map[string]map[string]bool{}}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := series{Labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i > 0 {
			s.Name = line[:i]
			rest = line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				t.Fatalf("/metrics: bad line %q", line)
			}
			for _, m := range sampleLabelRE.FindAllStringSubmatch(rest[1:end], -1) {
				v, err := strconv.Unquote(`"` + m[2] + `"`)
				if err != nil {
					t.Fatalf("/metrics: bad label value in %q", line)
				}
				s.Labels[m[1]] = v
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if s.Name == "" || len(f) == 0 {
			t.Fatalf("/metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("/metrics: bad value in %q", line)
		}
		s.Value = v
		sc.Series = append(sc.Series, s)
		if sc.Labels[s.Name] == nil {
			sc.Labels[s.Name] = map[string]bool{}
		}
		for k, v := range s.Labels {
			if v != "" { // Prometheus drops empty labels
				sc.Labels[s.Name][k] = true
			}
		}
	}
	return sc
}

// sum adds the values of the series of name whose labels include match.
func (sc scrape) sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range sc.Series {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range match {
			ok = ok && s.Labels[k] == v
		}
		if ok {
			total += s.Value
		}
	}
	return total
}

func (sc scrape) names() []string {
	var out []string
	for n := range sc.Labels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// wordAlternation matches a regex value made only of literal alternatives.
var wordAlternation = regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`)

// checkQuery checks one PromQL expression against a scrape: every metric it
// names exists, every label it matches on or groups by is one those metrics
// carry (or one Prometheus adds), and every outcome/failure value it names
// is one the proxy sets.
func checkQuery(t *testing.T, sc scrape, q namedQuery) {
	t.Helper()
	pq, err := parseQuery(q.Expr)
	if err != nil {
		t.Errorf("%s: %v", q.Where, err)
		return
	}
	if len(pq.Selectors) == 0 {
		t.Errorf("%s: no metric in %q", q.Where, q.Expr)
	}
	known := map[string]bool{}
	for _, l := range scrapeLabels {
		known[l] = true
	}
	for _, sel := range pq.Selectors {
		labels, ok := sc.Labels[sel.Name]
		if !ok {
			t.Errorf("%s: metric %q is not in /metrics (it has: %s)", q.Where, sel.Name, strings.Join(sc.names(), ", "))
			continue
		}
		for l := range labels {
			known[l] = true
		}
		for _, m := range sel.Matchers {
			if !labels[m.Label] && !slices.Contains(scrapeLabels, m.Label) {
				t.Errorf("%s: %s has no label %q in /metrics", q.Where, sel.Name, m.Label)
			}
			var allowed []string
			switch sel.Name + " " + m.Label {
			case "skewproxy_requests_total outcome":
				allowed = outcomeValues
			case "skewproxy_failures_total failure":
				allowed = failureValues
			case "skewproxy_credentials_refreshes_total outcome":
				allowed = credentialOutcomes
			}
			if allowed == nil || m.Op == "!=" || m.Op == "!~" {
				continue
			}
			if m.Op == "=~" && !wordAlternation.MatchString(m.Value) {
				t.Errorf("%s: %s=~%q: use a plain alternation of values", q.Where, m.Label, m.Value)
				continue
			}
			for _, v := range strings.Split(m.Value, "|") {
				if !slices.Contains(allowed, v) {
					t.Errorf("%s: %s value %q is not one skewproxy sets (%s)", q.Where, m.Label, v, strings.Join(allowed, ", "))
				}
			}
		}
	}
	for _, l := range pq.Grouping {
		if !known[l] {
			t.Errorf("%s: groups by %q, a label none of its metrics carry", q.Where, l)
		}
	}
}

// TestMonitoringAgainstLiveProxy runs skewproxy with chrony as its time
// source in front of a fake AWS endpoint, drives STS and Lambda requests
// through it (a retried skew failure, a queued invoke, a queue-full
// refusal), and checks the rules, the dashboard and the promtool test
// series against its /metrics.
func TestMonitoringAgainstLiveProxy(t *testing.T) {
	chrony := ntptest.Start(t)
	creds := proxytest.Credentials{AccessKeyID: "AKIDMONITORING", SecretAccessKey: "monitoring-secret"}
	fake := proxytest.NewAWS(t, proxytest.AWSOptions{
		Credentials: creds,
		Functions:   map[string]proxytest.FunctionBehavior{"slow": {Delay: 1500 * time.Millisecond}},
	})
	credEnv := []string{"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey}
	p := startLiveProxy(t, credEnv,
		"--time-source", "ntp://"+chrony,
		"--resolve", "sts.us-east-1.amazonaws.com:443="+fake.URL(),
		"--resolve", "lambda.us-east-1.amazonaws.com:443="+fake.URL(),
		"--upstream-ca", fake.CAFile(t),
		"--lambda-max-inflight", "1", "--lambda-max-queue", "1")
	// A second proxy whose time source never answers: its clock series
	// carry source="host" (what SkewproxyClockNotSynced selects).
	unsynced := startLiveProxy(t, credEnv, "--time-source", "ntp://127.0.0.1:1")

	waitFor(t, 15*time.Second, "/readyz 200", func() bool { code, _ := p.get(t, "/readyz"); return code == http.StatusOK })
	c := p.client()

	// An STS call, then one the fake refuses once as expired: the proxy
	// re-signs and retries it.
	if code := do(t, c, clientRequest(t, "sts")); code != http.StatusOK {
		t.Fatalf("STS through the proxy: %d", code)
	}
	fake.FailNext(1, proxytest.FailModeSignatureExpired)
	if code := do(t, c, clientRequest(t, "sts")); code != http.StatusOK {
		t.Fatalf("STS through the proxy after a skew failure: %d, want 200 (retried)", code)
	}

	// Lambda: one invoke in flight, one queued behind it, a third refused
	// because the queue (--lambda-max-queue 1) is full.
	codes := make([]int, 2)
	var wg sync.WaitGroup
	wg.Go(func() { codes[0] = do(t, c, clientRequest(t, "lambda")) })
	waitFor(t, 10*time.Second, "one invoke in flight", func() bool { n, _ := p.lambdaStatus(t); return n == 1 })
	wg.Go(func() { codes[1] = do(t, c, clientRequest(t, "lambda")) })
	waitFor(t, 10*time.Second, "one invoke queued", func() bool { _, q := p.lambdaStatus(t); return q == 1 })
	if code := do(t, c, clientRequest(t, "lambda")); code != http.StatusTooManyRequests {
		t.Errorf("invoke with the queue full: %d, want 429", code)
	}
	wg.Wait()
	if codes[0] != http.StatusOK || codes[1] != http.StatusOK {
		t.Errorf("queued invokes answered %v, want 200 200", codes)
	}

	code, body := p.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	sc := parseMetrics(t, string(body))
	t.Logf("/metrics series names: %s", strings.Join(sc.names(), ", "))

	// What the rules and the dashboard assume about the series.
	if n := sc.sum("skewproxy_clock_offset_seconds", map[string]string{"source": "host"}); n != 0 || !sc.has("skewproxy_clock_offset_seconds", "source", "ntp://"+chrony) {
		t.Errorf("synced proxy: offset series %v; want source=%q and no source=\"host\"", sc.find("skewproxy_clock_offset_seconds"), "ntp://"+chrony)
	}
	// Retries on skew = skew failures counted at every attempt minus skew
	// failures that were the final answer.
	retried := sc.sum("skewproxy_failures_total", map[string]string{"failure": "signature_expired"}) -
		sc.sum("skewproxy_requests_total", map[string]string{"outcome": "signature_expired"})
	if retried != 1 {
		t.Errorf("retries on skew derived from the counters = %v, want 1", retried)
	}
	if n := sc.sum("skewproxy_requests_total", map[string]string{"service": "Lambda", "outcome": "queue_timeout"}); n != 1 {
		t.Errorf(`skewproxy_requests_total{service="Lambda",outcome="queue_timeout"} = %v, want 1`, n)
	}
	if n := sc.sum("skewproxy_queue_wait_seconds_count", nil); n != 3 {
		t.Errorf("skewproxy_queue_wait_seconds_count = %v, want 3 (every invoke passes the queue)", n)
	}
	if n := sc.sum("skewproxy_queue_wait_seconds_count", nil) - sc.sum("skewproxy_queue_wait_seconds_bucket", map[string]string{"le": "0.1"}); n < 1 {
		t.Errorf("invokes that waited over 100 ms = %v, want >= 1", n)
	}

	_, ubody := unsynced.get(t, "/metrics")
	usc := parseMetrics(t, string(ubody))
	if !usc.has("skewproxy_clock_offset_seconds", "source", "host") {
		t.Errorf("proxy without a time source: offset series %v, want source=\"host\"", usc.find("skewproxy_clock_offset_seconds"))
	}

	t.Run("rules", func(t *testing.T) {
		for _, q := range ruleQueries(t) {
			checkQuery(t, sc, q)
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		for _, q := range dashboardQueries(t) {
			checkQuery(t, sc, q)
		}
	})
	t.Run("promtool-series", func(t *testing.T) {
		checkPromtoolSeries(t, sc)
	})
}

func (sc scrape) has(name, label, value string) bool {
	for _, s := range sc.Series {
		if s.Name == name && s.Labels[label] == value {
			return true
		}
	}
	return false
}

func (sc scrape) find(name string) []series {
	var out []series
	for _, s := range sc.Series {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// checkPromtoolSeries: the input series of the promtool unit tests are
// shaped like the real ones: same names, and no label the proxy (or the
// scrape) does not set; the outcome/failure values are real ones.
func checkPromtoolSeries(t *testing.T, sc scrape) {
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	n := 0
	for _, tc := range tf.Tests {
		for _, in := range tc.InputSeries {
			n++
			where := rulesTestFile + ": " + in.Series
			pq, err := parseQuery(in.Series)
			if err != nil || len(pq.Selectors) != 1 {
				t.Errorf("%s: not one selector (%v)", where, err)
				continue
			}
			sel := pq.Selectors[0]
			checkQuery(t, sc, namedQuery{Where: where, Expr: in.Series})
			labels := sc.Labels[sel.Name]
			for l := range labels {
				has := false
				for _, m := range sel.Matchers {
					has = has || m.Label == l
				}
				if !has && l != "otel_scope_version" && l != "otel_scope_schema_url" {
					t.Errorf("%s: lacks label %q that the real series carry", where, l)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no input series", rulesTestFile)
	}
}
