package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/signer/awserrors"
)

// recordingObserver records the events of every request as strings.
type recordingObserver struct {
	mu     sync.Mutex
	events [][]string
}

type recordingRequest struct {
	o *recordingObserver
	i int
}

func (o *recordingObserver) Start(ctx context.Context, _ *http.Request) (context.Context, RequestObserver) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, []string{"start"})
	return ctx, &recordingRequest{o: o, i: len(o.events) - 1}
}

func (r *recordingRequest) add(s string) {
	r.o.mu.Lock()
	r.o.events[r.i] = append(r.o.events[r.i], s)
	r.o.mu.Unlock()
}
func (r *recordingRequest) Classified(i RequestInfo) {
	r.add(fmt.Sprintf("classified %s/%s/%s signed=%v", i.Service, i.Region, i.Operation, i.ClientSigned))
}
func (r *recordingRequest) Queued()                     { r.add("queued") }
func (r *recordingRequest) Dequeued(time.Duration)      { r.add("dequeued") }
func (r *recordingRequest) Signed(time.Time)            { r.add("signed") }
func (r *recordingRequest) Retried(f awserrors.Failure) { r.add("retried " + string(f)) }
func (r *recordingRequest) End(status int, _ http.Header, c awserrors.Classification, err error) {
	r.add(fmt.Sprintf("end %d %s err=%v", status, c.Failure, err != nil))
}

func (o *recordingObserver) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, e := range o.events {
		out = append(out, strings.Join(e, ", "))
	}
	return out
}

// testAdmitter refuses invokes of the function "refused" and records
// releases.
type testAdmitter struct {
	mu       sync.Mutex
	released []int
}

type testRefusal struct{}

func (testRefusal) Error() string { return "queue full" }
func (testRefusal) Answer() (int, http.Header, []byte) {
	body := []byte(`{"__type":"TooManyRequestsException","message":"queued too long"}`)
	return http.StatusTooManyRequests, http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}}, body
}
func (testRefusal) Failure() awserrors.Failure { return awserrors.FailureQueueTimeout }

func (a *testAdmitter) Admit(ctx context.Context, req *http.Request) (func(int, http.Header), time.Duration, error) {
	if strings.Contains(req.URL.Path, "/functions/refused/") {
		return nil, time.Second, testRefusal{}
	}
	return func(status int, _ http.Header) {
		a.mu.Lock()
		a.released = append(a.released, status)
		a.mu.Unlock()
	}, time.Millisecond, nil
}

func TestObserverAndAdmitterEvents(t *testing.T) {
	obs := &recordingObserver{}
	adm := &testAdmitter{}
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.Observer = obs; p.Admitter = adm }})
	c := h.client()
	post := func(fn string) *http.Response {
		t.Helper()
		resp, err := c.Post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/"+fn+"/invocations", "application/json", strings.NewReader(`1`))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	if resp := post("ok"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h.fake.FailNext(1, proxytest.FailModeSignatureExpired)
	if resp := post("ok"); resp.StatusCode != 200 {
		t.Fatalf("after retry: status %d", resp.StatusCode)
	}
	if resp := post("refused"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("refused: status %d", resp.StatusCode)
	}
	want := []string{
		"start, classified lambda/us-east-1/Invoke signed=false, queued, dequeued, signed, end 200  err=false",
		"start, classified lambda/us-east-1/Invoke signed=false, queued, dequeued, signed, retried signature_expired, signed, end 200  err=false",
		"start, classified lambda/us-east-1/Invoke signed=false, queued, dequeued, end 429 queue_timeout err=false",
	}
	eventually(t, "three finished requests", func() bool {
		got := obs.all()
		return len(got) == 3 && strings.Contains(got[2], "end")
	})
	got := obs.all()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d events:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if fmt.Sprint(adm.released) != "[200 200]" {
		t.Errorf("releases %v, want one per admitted request with its status", adm.released)
	}
}

func TestClientsResumeTLSSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cache := tls.NewLRUClientSessionCache(8)
	for i := range 2 {
		tr := h.clientTransport()
		tr.TLSClientConfig.ClientSessionCache = cache
		resp, err := (&http.Client{Transport: tr}).Get("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		tr.CloseIdleConnections()
		if resp.TLS == nil {
			t.Fatal("no TLS state")
		}
		if i == 1 && !resp.TLS.DidResume {
			t.Fatal("second tunnel did not resume the TLS session")
		}
	}
}

// apigwRecorder is a RequestObserver that also implements APIGatewayObserver.
type apigwRecorder struct {
	recordingRequest
}

func (r *apigwRecorder) APIGatewayFailure(mode string) { r.add("apigw " + mode) }

type apigwObserver struct{ recordingObserver }

func (o *apigwObserver) Start(ctx context.Context, req *http.Request) (context.Context, RequestObserver) {
	ctx, ro := o.recordingObserver.Start(ctx, req)
	return ctx, &apigwRecorder{*ro.(*recordingRequest)}
}

func TestAPIGatewayFailureReported(t *testing.T) {
	obs := &apigwObserver{}
	h := newHarness(t, harnessOptions{tweak: func(p *Proxy) { p.Observer = obs }})
	c := h.client()
	tests := []struct{ path, mode string }{
		{proxytest.APIGWExplicitDeny, awserrors.APIGatewayExplicitDeny},
		{proxytest.APIGWIntegrationTimeout, awserrors.APIGatewayIntegrationTimeout},
		{proxytest.APIGWUnauthorized, awserrors.APIGatewayUnauthorized},
	}
	for i, tt := range tests {
		resp, err := c.Get("https://abc123.execute-api.us-east-1.amazonaws.com" + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		eventually(t, "request finished", func() bool {
			got := obs.all()
			return len(got) == i+1 && strings.Contains(got[i], "end")
		})
		if got := obs.all()[i]; !strings.Contains(got, "apigw "+tt.mode) {
			t.Errorf("%s: events %q lack apigw %s", tt.path, got, tt.mode)
		}
	}
}
