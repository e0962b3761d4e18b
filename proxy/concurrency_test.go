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
