package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/proxytest"
)

func TestConcurrentClientsNoLeaks(t *testing.T) {
	// Goroutines of other tests and of the runtime are not ours.
	ignore := goleak.IgnoreCurrent()
	func() {
		h := newHarness(t, harnessOptions{})
		const clients = 200
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		transports := make([]*http.Transport, clients)
		for i := range clients {
			tr := h.clientTransport()
			transports[i] = tr
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
				url := "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
				if i%2 == 1 {
					url = fmt.Sprintf("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f%d/invocations", i%7)
				}
				var resp *http.Response
				var err error
				if i%2 == 1 {
					resp, err = c.Post(url, "application/json", strings.NewReader(`{"n":1}`))
				} else {
					resp, err = c.Get(url)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				defer resp.Body.Close()
				if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("client %d: status %d, read error %v", i, resp.StatusCode, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if s := h.fake.Stats(); s.Verified != clients {
			t.Errorf("fake verified %d of %d", s.Verified, clients)
		}
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
		h.stop()
		h.fake.Close()
	}()
	goleak.VerifyNone(t, ignore)
}

func TestDrainLetsInflightFinish(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.fake.SetFunction("slow", proxytest.FunctionBehavior{Delay: 700 * time.Millisecond})
	c := h.client()
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/slow/invocations", "application/json", strings.NewReader(`"drain"`))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 512)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		done <- result{status: resp.StatusCode, body: sb.String()}
	}()
	eventually(t, "the invoke to reach the fake", func() bool { return h.proxy.Inflight() == 1 })
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	r := <-done
	if r.err != nil || r.status != 200 || r.body != `"drain"` {
		t.Fatalf("in-flight request during drain: %+v", r)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	// The listener is closed: new clients are refused.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://sts.amazonaws.com/", nil)
	if _, err := h.client().Do(req); err == nil {
		t.Fatal("a new request succeeded after Serve returned")
	}
}

func TestDrainTimeoutAbortsStuckRequest(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.DrainTimeout = 300 * time.Millisecond }})
	h.fake.SetFunction("stuck", proxytest.FunctionBehavior{Delay: 20 * time.Second})
	c := h.client()
	go func() {
		resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/stuck/invocations", "application/json", strings.NewReader(`1`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, "the invoke to be in flight", func() bool { return h.proxy.Inflight() == 1 })
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Serve took %v with DrainTimeout 300ms", d)
	}
	eventually(t, "the aborted request to leave the pipeline", func() bool { return h.proxy.Inflight() == 0 })
}

// TestInvokePathsNamingNoFunctionPassThrough sends, through the proxy with
// the Lambda limiter in place, POSTs whose paths look like invoke paths but
// name no function. They are not invokes: the proxy signs and forwards them
// like any other request, and the upstream's answer reaches the client.
// (The limiter's recogniser once sliced out of range on the first two,
// whose prefix and suffix share a slash; the connection died with it.)
func TestInvokePathsNamingNoFunctionPassThrough(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) {
		p.Admitter = lambdalimit.New(lambdalimit.Config{MaxInflight: 1})
	}})
	c := h.client()
	for _, path := range []string{
		"/2015-03-31/functions/invocations",
		"/2021-11-15/functions/response-streaming-invocations",
		"/2015-03-31/functions//invocations",
		"/2015-03-31/functions/a%2Fb/invocations",
	} {
		t.Run(path, func(t *testing.T) {
			before := h.fake.Stats().Verified
			resp, err := c.Post("https://lambda.us-east-1.amazonaws.com"+path, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatalf("POST %s through the proxy: %v", path, err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-ErrorType") != "UnknownOperationException" {
				t.Errorf("POST %s: status %d (%s), want the fake Lambda's 400 UnknownOperationException", path, resp.StatusCode, body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if !h.fake.WaitIdle(ctx) {
				t.Fatal("the fake did not finish its requests")
			}
			if got := h.fake.Stats().Verified; got != before+1 {
				t.Errorf("POST %s: fake verified %d new requests, want 1 (signed by the proxy and forwarded)", path, got-before)
			}
		})
	}
}

// panickyAdmitter panics for one function and admits everything else.
type panickyAdmitter struct{ fn string }

func (a panickyAdmitter) Admit(_ context.Context, req *http.Request) (func(int, http.Header), time.Duration, error) {
	if strings.Contains(req.URL.Path, "/functions/"+a.fn+"/") {
		panic("admitter bug for " + a.fn)
	}
	return func(int, http.Header) {}, 0, nil
}

// TestPipelinePanicAnswersAndEndsExchange: a bug that panics inside the
// request pipeline costs that one request a clear 500, not a dropped
// connection, and the exchange still ends (it stops counting as in flight,
// so a drain does not wait for it). The next request goes through.
func TestPipelinePanicAnswersAndEndsExchange(t *testing.T) {
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.Admitter = panickyAdmitter{fn: "buggy"} }})
	c := h.client()
	resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/buggy/invocations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("the request that hit the panic got no answer: %v", err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "ProxyInternalError") {
		t.Errorf("panic answer: %d %s, want 500 ProxyInternalError", resp.StatusCode, body)
	}
	eventually(t, "the panicked request to stop counting as in flight", func() bool { return h.proxy.Inflight() == 0 })
	if !strings.Contains(h.logs.String(), "bug: request pipeline panicked") || !strings.Contains(h.logs.String(), "admitter bug for buggy") {
		t.Errorf("the log does not say what panicked:\n%s", h.logs.String())
	}
	if n := h.fake.Stats().Verified; n != 0 {
		t.Errorf("fake verified %d requests, want 0 (the panic came before signing)", n)
	}

	resp, err = c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/fine/invocations", "application/json", strings.NewReader(`"next"`))
	if err != nil {
		t.Fatalf("request after the panic: %v", err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != `"next"` {
		t.Errorf("request after the panic: %d %s", resp.StatusCode, body)
	}
}
