package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skewproxy/skewproxy/timesource"
)

// TestSoak drives 1,000 concurrent keep-alive clients (each its own
// CONNECT tunnel) through one in-process proxy to the verifying fake AWS
// for 60 s, three times in a row, and requires zero errors and no growth of
// goroutines or memory from one run to the next. It runs only with
// SKEWPROXY_SOAK=1 (make soak); SKEWPROXY_SOAK_CLIENTS and
// SKEWPROXY_SOAK_SECONDS override the size, and SKEWPROXY_SOAK_HEAPPROFILE=DIR
// writes a heap profile after each run.
func TestSoak(t *testing.T) {
	if os.Getenv("SKEWPROXY_SOAK") != "1" {
		t.Skip("set SKEWPROXY_SOAK=1 (make soak) to run the 3 x 60 s load test")
	}
	clients := soakEnvInt(t, "SKEWPROXY_SOAK_CLIENTS", 1000)
	seconds := soakEnvInt(t, "SKEWPROXY_SOAK_SECONDS", 60)
	soak(t, clients, time.Duration(seconds)*time.Second, 3)
}

// TestSoakShort is the soak in miniature for the normal suite: 200
// clients for 3 s, twice.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	soak(t, 200, 3*time.Second, 2)
}

func soakEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// soakSample is the process state between runs.
type soakSample struct {
	goroutines int
	rssKiB     int64
	heapKiB    uint64 // live heap after a GC (HeapAlloc)
}

func soakTake(t *testing.T) soakSample {
	t.Helper()
	// Let closed connections' goroutines finish, then measure.
	var s soakSample
	for range 50 {
		goruntime.GC()
		s.goroutines = goruntime.NumGoroutine()
		time.Sleep(20 * time.Millisecond)
		if goruntime.NumGoroutine() == s.goroutines {
			break
		}
	}
	// Closed connections release their buffers a moment later.
	time.Sleep(time.Second)
	goruntime.GC()
	// Hand freed memory back to the OS, so that RSS shows what is held,
	// not what the last run's peak left for the scavenger.
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	s.heapKiB = ms.HeapAlloc >> 10
	s.rssKiB = soakRSS()
	return s
}

// soakRSS reads the resident set size from /proc (0 where there is none).
func soakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

type soakResult struct {
	requests, errors int64
	firstErr         string
	before, after    soakSample
	elapsed          time.Duration
	proxyConns       int
}

func soak(t *testing.T, clients int, d time.Duration, runs int) {
	ignore := goleak.IgnoreCurrent()
	fx := relStart(t, relOptions{
		logLevel: 8, // errors only: a million info lines would be the load
		// The real corrected clock (no NTP source): every answer's Date
		// header goes through its Observe, which must stay bounded.
		clock: timesource.New(timesource.Config{}),
		topts: func(o *TransportOptions) {
			o.MaxIdleConnsPerHost = clients
			// The production default, not the fixture's short one: a
			// thousand tunnels open at once make a connect storm upstream.
			o.DialTimeout = DefaultTunnelDialTimeout
		},
	})
	results := make([]soakResult, 0, runs)
	for run := range runs {
		r := soakRun(t, fx, clients, d)
		results = append(results, r)
		t.Logf("run %d: %d requests, %d errors in %v", run+1, r.requests, r.errors, r.elapsed.Round(time.Millisecond))
	}
	fx.stop()
	fx.fake.Close()

	var tbl bytes.Buffer
	fmt.Fprintf(&tbl, "%-4s %8s %10s %7s %8s %14s %14s %14s\n", "run", "clients", "requests", "errors", "req/s", "goroutines", "RSS KiB", "heap KiB")
	for i, r := range results {
		fmt.Fprintf(&tbl, "%-4d %8d %10d %7d %8.0f %6d -> %-6d %6d -> %-6d %6d -> %-6d\n", i+1, clients, r.requests, r.errors,
			float64(r.requests)/r.elapsed.Seconds(), r.before.goroutines, r.after.goroutines, r.before.rssKiB, r.after.rssKiB, r.before.heapKiB, r.after.heapKiB)
	}
	t.Logf("soak: %d clients x %v x %d runs\n%s", clients, d, runs, tbl.String())

	for i, r := range results {
		if r.errors > 0 {
			t.Errorf("run %d: %d errors (first: %s)", i+1, r.errors, r.firstErr)
		}
		if r.requests < int64(clients) {
			t.Errorf("run %d: only %d requests for %d clients", i+1, r.requests, clients)
		}
		if r.proxyConns != 0 {
			t.Errorf("run %d: the proxy still held %d client connections after the clients left", i+1, r.proxyConns)
		}
	}
	first, last := results[0], results[len(results)-1]
	// Between runs every client is gone: what is left must not grow.
	if g := last.after.goroutines - first.after.goroutines; g > 10 {
		t.Errorf("goroutines grew by %d from run 1 to run %d (%d -> %d)", g, runs, first.after.goroutines, last.after.goroutines)
	}
	if first.after.rssKiB > 0 && last.after.rssKiB > first.after.rssKiB+first.after.rssKiB/4+32<<10 {
		t.Errorf("RSS grew from %d KiB after run 1 to %d KiB after run %d", first.after.rssKiB, last.after.rssKiB, runs)
	}
	if last.after.heapKiB > first.after.heapKiB+first.after.heapKiB/2+16<<10 {
		t.Errorf("heap grew from %d KiB after run 1 to %d KiB after run %d", first.after.heapKiB, last.after.heapKiB, runs)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after the soak: %v", err)
	}
}

// soakRun runs clients keep-alive clients for d and closes them.
func soakRun(t *testing.T, fx *relFixture, clients int, d time.Duration) soakResult {
	r := soakResult{before: soakTake(t)}
	var requests, errs atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	transports := make([]*http.Transport, clients)
	start := time.Now()
	stop := start.Add(d)
	for i := range clients {
		tr := fx.transport()
		tr.ResponseHeaderTimeout = 60 * time.Second
		tr.TLSHandshakeTimeout = 60 * time.Second
		transports[i] = tr
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: tr, Timeout: 90 * time.Second}
			for time.Now().Before(stop) {
				err := soakOne(c, i)
				requests.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { r.firstErr = fmt.Sprintf("client %d: %v", i, err) })
				}
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	r.requests, r.errors = requests.Load(), errs.Load()
	deadline := time.Now().Add(10 * time.Second)
	for fx.proxy.e.conns.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r.proxyConns = fx.proxy.e.conns.len()
	// The upstream pool keeps up to one idle connection per client (three
	// goroutines each, with the in-process fake's side): empty it, so that
	// what remains is what would leak.
	if ci, ok := fx.proxy.Transport.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
	r.after = soakTake(t)
	if dir := os.Getenv("SKEWPROXY_SOAK_HEAPPROFILE"); dir != "" {
		soakHeapProfile(t, dir)
	}
	return r
}

// soakHeapProfile writes a heap profile per run into dir (for go tool
// pprof -base heap-run1.pprof heap-run3.pprof when the heap grows).
func soakHeapProfile(t *testing.T, dir string) {
	n := 1
	for ; ; n++ {
		if _, err := os.Stat(fmt.Sprintf("%s/heap-run%d.pprof", dir, n)); err != nil {
			break
		}
	}
	f, err := os.Create(fmt.Sprintf("%s/heap-run%d.pprof", dir, n))
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("heap profile: %v", err)
	}
}

// soakOne is one request: STS for even clients, a small Lambda invoke for
// odd ones.
func soakOne(c *http.Client, i int) error {
	var resp *http.Response
	var err error
	if i%2 == 0 {
		resp, err = c.Get(relSTSURL)
	} else {
		resp, err = c.Post(fmt.Sprintf("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/soak%d/invocations", i%5),
			"application/json", strings.NewReader(`{"soak":true}`))
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	return nil
}
