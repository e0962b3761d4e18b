package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// lambdaHost is the host every load client addresses (and signs for).
const lambdaHost = "lambda.us-east-1.amazonaws.com"

// invokePath is the path of a Lambda Invoke of function "bench".
const invokePath = "/2015-03-31/functions/bench/invocations"

// invokePayload is the small JSON body each load request carries.
var invokePayload = []byte(`{"orderId":"b6b2f0a4-6d5d-4c61","items":[1,2,3],"note":"skewbench keep-alive request"}`)

// placeholderCreds are what the load clients sign with: keys only the
// proxy can replace with real ones (the endpoint does not verify).
var placeholderCreds = aws.Credentials{AccessKeyID: "AKIDPLACEHOLDER", SecretAccessKey: "placeholder-secret"}

// loadPath is how the load clients reach the endpoint.
type loadPath string

const (
	// pathPlain: absolute-form http:// requests to the proxy, plain HTTP
	// upstream.
	pathPlain loadPath = "plain HTTP"
	// pathMITM: https through CONNECT; the proxy terminates TLS and sends
	// HTTPS upstream (tinyproxy only tunnels).
	pathMITM loadPath = "MITM (HTTPS in CONNECT)"
)

// loadPaths is the order of the paths in the report.
var loadPaths = []loadPath{pathPlain, pathMITM}

func (p loadPath) short() string {
	if p == pathPlain {
		return "plain"
	}
	return "mitm"
}

// The load targets, by name.
const (
	tgtDirect    = "direct"
	tgtBare      = "bare forwarder"
	tgtSkewproxy = "skewproxy"
	tgtTinyproxy = "tinyproxy"
	tgtMitmdump  = "mitmdump"
)

// loadTargetOrder is the order of the rows of one path and client count.
var loadTargetOrder = []string{tgtDirect, tgtBare, tgtSkewproxy, tgtTinyproxy, tgtMitmdump}

// target is where a load client sends its requests.
type target struct {
	Path       loadPath // which table section the run belongs to
	Name       string
	URL        string         // request URL; its host:port is what a proxy is asked to CONNECT to
	Host       string         // Host header, signed; "" = the URL's host
	ServerName string         // TLS server name to send and verify; "" = the URL's host
	Proxy      *url.URL       // HTTP proxy (CONNECT); nil = direct
	Roots      *x509.CertPool // roots that verify the server (or the intercepting proxy)
	CPUPid     int            // process whose CPU time per request to report (the proxy); 0 = none
	// NoKeepAlive: a new connection per request, for a proxy that closes
	// the client's connection after each answer (tinyproxy on the plain
	// path), where reusing it would fail requests at random.
	NoKeepAlive bool
}

// label names the target to the endpoint (targetHeader): "plain/skewproxy".
func (t target) label() string {
	if t.Path == "" {
		return t.Name
	}
	return t.Path.short() + "/" + t.Name
}

// loadResult is one load run's figures.
type loadResult struct {
	Target   string        `json:"target"`
	Clients  int           `json:"clients"`
	Requests int           `json:"requests"`
	Errors   int           `json:"errors"`
	FirstErr string        `json:"first_error,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"rps"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	// CPUPerReq is the CPU time (user + system) target.CPUPid used during
	// the recorded window, per recorded request: a proxy's cost per request
	// whatever share of the machine it got.
	CPUPerReq time.Duration `json:"cpu_per_request_ns,omitempty"`
}

// signedInvokeHeaders signs one Lambda Invoke with the placeholder keys, as
// an SDK would (no X-Amz-Content-Sha256, so the proxy must hash the body),
// and returns its headers for every request of a run.
func signedInvokeHeaders(host string, now time.Time) (http.Header, error) {
	r, err := http.NewRequest(http.MethodPost, "https://"+host+invokePath, bytes.NewReader(invokePayload))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "skewbench aws-sdk-go-v2-like")
	sum := sha256.Sum256(invokePayload)
	if err := v4.NewSigner().SignHTTP(context.Background(), placeholderCreds, r, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return r.Header, nil
}

// newClientTransport is a keep-alive HTTP/1.1 transport with room for
// clients connections.
func newClientTransport(t target, clients int) *http.Transport {
	var proxy func(*http.Request) (*url.URL, error)
	if t.Proxy != nil {
		proxy = http.ProxyURL(t.Proxy)
	}
	return &http.Transport{
		Proxy:               proxy,
		TLSClientConfig:     &tls.Config{RootCAs: t.Roots, ServerName: t.ServerName},
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 15 * time.Second,
		DisableCompression:  true,
		DisableKeepAlives:   t.NoKeepAlive,
	}
}

// runLoad runs clients concurrent keep-alive clients against t: warmup
// (connections made, leaves issued, nothing recorded), then dur of
// recorded requests. Each client sends one request at a time.
func runLoad(ctx context.Context, t target, clients int, warmup, dur time.Duration) (loadResult, error) {
	host := t.Host
	if host == "" {
		u, err := url.Parse(t.URL)
		if err != nil {
			return loadResult{}, fmt.Errorf("target URL: %w", err)
		}
		host = u.Host
	}
	hdr, err := signedInvokeHeaders(host, time.Now())
	if err != nil {
		return loadResult{}, err
	}
	hdr.Set(targetHeader, t.label())
	tr := newClientTransport(t, clients)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	start := time.Now().Add(warmup)
	end := start.Add(dur)
	ctx, cancel := context.WithDeadline(ctx, end.Add(30*time.Second))
	defer cancel()

	cpuStart := make(chan time.Duration, 1) // the proxy's CPU time when recording starts
	cpuTimer := time.AfterFunc(time.Until(start), func() {
		if t.CPUPid != 0 {
			if c, err := procCPU(t.CPUPid); err == nil {
				cpuStart <- c
			}
		}
	})
	defer cpuTimer.Stop()
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			var nerr int
			var ferr error
			for {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					break
				}
				err := doInvoke(ctx, client, t.URL, host, hdr)
				if t0.Before(start) {
					continue
				}
				if err != nil {
					nerr++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += nerr
			if firstErr == nil {
				firstErr = ferr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var cpuUsed time.Duration
	select {
	case c0 := <-cpuStart:
		if c1, err := procCPU(t.CPUPid); err == nil {
			cpuUsed = c1 - c0
		}
	default:
	}
	if elapsed > dur {
		elapsed = dur // requests past the end were not started
	}
	res := summarize(t.Name, clients, all, errs, elapsed)
	if cpuUsed > 0 && res.Requests > 0 {
		res.CPUPerReq = cpuUsed / time.Duration(res.Requests)
	}
	if firstErr != nil {
		res.FirstErr = firstErr.Error()
	}
	if res.Requests == 0 && errs == 0 {
		return res, fmt.Errorf("%s, %d clients: no request recorded: the requests sent in the warm-up (%v) outlasted the run (%v)", t.Name, clients, warmup, dur)
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("%s, %d clients: no request succeeded (%d errors; first: %v)", t.Name, clients, errs, firstErr)
	}
	return res, nil
}

// doInvoke sends one request and reads the whole answer.
func doInvoke(ctx context.Context, client *http.Client, rawURL, host string, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(invokePayload))
	if err != nil {
		return err
	}
	req.Host = host
	req.Header = hdr.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// summarize sorts the latencies and computes the run's figures.
func summarize(name string, clients int, lat []time.Duration, errs int, elapsed time.Duration) loadResult {
	slices.Sort(lat)
	r := loadResult{Target: name, Clients: clients, Requests: len(lat), Errors: errs, Elapsed: elapsed,
		P50: percentile(lat, 0.50), P99: percentile(lat, 0.99)}
	if elapsed > 0 {
		r.RPS = float64(len(lat)) / elapsed.Seconds()
	}
	return r
}

// percentile is the nearest-rank q-quantile of sorted samples (0 if none).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// runLoadCommand is `skewbench load`: one load run, figures as JSON.
func runLoadCommand(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	rawURL := fs.String("url", "https://"+lambdaHost+invokePath, "request URL")
	host := fs.String("host", "", "Host header and signed host (default: the URL's host)")
	serverName := fs.String("server-name", "", "TLS server name (default: the URL's host)")
	proxy := fs.String("proxy", "", "HTTP proxy URL to CONNECT through")
	caFile := fs.String("ca", "", "PEM file of roots to trust (default: system roots)")
	clients := fs.Int("clients", 16, "concurrent keep-alive clients")
	warmup := fs.Duration("warmup", time.Second, "unrecorded warm-up")
	dur := fs.Duration("duration", 5*time.Second, "recorded duration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t := target{Name: "load", URL: *rawURL, Host: *host, ServerName: *serverName}
	if *proxy != "" {
		u, err := url.Parse(*proxy)
		if err != nil {
			return fmt.Errorf("--proxy: %w", err)
		}
		t.Proxy = u
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		t.Roots = x509.NewCertPool()
		if !t.Roots.AppendCertsFromPEM(pem) {
			return errors.New("--ca: no PEM certificate")
		}
	}
	res, err := runLoad(ctx, t, *clients, *warmup, *dur)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
