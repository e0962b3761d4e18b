package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/signer/awserrors"
	"github.com/skewproxy/skewproxy/timesource"
)

// maxErrorPeek is how much of an error answer is read to classify it; the
// bytes are put back in front of the rest of the body for the client.
const maxErrorPeek = 8 << 10

// roundTrip is the request pipeline for every request: absolute-form
// requests arrive from goproxy (tun is nil), requests inside an intercepted
// CONNECT tunnel from the tunnel's own server. It never returns an error:
// every failure becomes an answer the client can read.
func (e *engine) roundTrip(req *http.Request, tun *tunnel) (resp *http.Response) {
	e.active.Add(1)
	start := time.Now() // monotonic: the access log's duration; signing time comes from Clock
	ctx, cancel := context.WithCancel(req.Context())
	stopHard := context.AfterFunc(e.hardCtx, cancel)
	x := &exchange{e: e, start: start, method: req.Method, host: normalizeHost(req.Host), flush: clientFlush(req.Context()),
		stopHard: stopHard, cancel: cancel}
	defer func() {
		if v := recover(); v != nil {
			resp = x.recovered(req, v)
		}
	}()
	req = req.WithContext(ctx)
	if e.draining.Load() {
		// Serve stopped waiting for new requests: refuse before sending,
		// so that no request is cut half-sent when the drain ends.
		return x.finishLocal(req, reply(req, "", http.StatusServiceUnavailable, "ProxyShuttingDown",
			"skewproxy is shutting down; the request was not sent"))
	}
	if tun != nil && x.host != normalizeHost(tun.host) {
		// Inside an intercepted tunnel the request must be for the
		// tunnel's host: the proxy's credentials must not follow a Host
		// header elsewhere.
		return x.finishLocal(req, reply(req, "", http.StatusMisdirectedRequest, "MisdirectedRequest",
			"the Host header does not match the CONNECT target of this tunnel"))
	}
	normalizeRequest(req, tun)
	if tun == nil && !e.intercept.Match(req.URL.Host) {
		return x.forward(req)
	}
	return x.intercepted(req)
}

// normalizeRequest makes req an outgoing request, in one place: the URL
// of a request inside a tunnel gets the tunnel's scheme and port, and the
// hop-by-hop headers (with the client's Connection: close) are dropped.
// The signer signs what is left, exactly as it will go on the wire.
func normalizeRequest(req *http.Request, tun *tunnel) {
	if tun != nil {
		req.URL.Scheme = tun.scheme
		if req.URL.Host == "" {
			req.URL.Host = req.Host
		}
		pinTunnelPort(req, tun.host)
	}
	req.RequestURI = ""
	req.Close = false
	// A protocol switch (a WebSocket handshake) keeps its Upgrade and
	// Connection: Upgrade, as httputil.ReverseProxy does; every other
	// hop-by-hop header goes.
	upgrade := ""
	if signer.IsUpgrade(req.Header) {
		upgrade = req.Header.Get("Upgrade")
	}
	removeHopHeaders(req.Header, true)
	if upgrade != "" {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", upgrade)
	}
}

// pinTunnelPort makes the request URL carry the CONNECT port when it is not
// the scheme's default (the Host header inside a tunnel often omits it).
func pinTunnelPort(req *http.Request, tunnelHost string) {
	_, port, err := net.SplitHostPort(tunnelHost)
	if err != nil || req.URL.Port() != "" || port == defaultPort(req.URL.Scheme) {
		return
	}
	req.URL.Host = net.JoinHostPort(req.URL.Hostname(), port)
}

// exchange is the state of one request through the pipeline.
type exchange struct {
	e       *engine
	start   time.Time
	method  string
	host    string
	info    RequestInfo
	ro      RequestObserver
	release func(int, http.Header)
	retried bool
	class   awserrors.Classification
	// stopHard and cancel end the request's context (done).
	stopHard func() bool
	cancel   context.CancelFunc
	// body is the client's request body, watched for a short read.
	body *clientBody
	// sent and received bracket the last upstream exchange (corrected
	// clock readings), for the clock's observations.
	sent, received time.Time
	// flush, on the goproxy path, flushes the client connection: the
	// answer's body then follows flushOnPause (writeResponse does that
	// itself inside tunnels).
	flush func() error
	// The answer handed to the client and what ends the exchange when
	// its body is closed (wrap): kept here, not in closures, so that an
	// exchange is one allocation.
	resp      *http.Response
	local     bool
	relStatus int
	relHeader http.Header
	answer    endBody
}

// done ends the request's context and its count in the pipeline.
func (x *exchange) done() {
	x.stopHard()
	x.cancel()
	x.e.active.Add(-1)
}

// forward sends a request for a host that is not intercepted, untouched.
func (x *exchange) forward(req *http.Request) *http.Response {
	resp, err := x.e.transport.RoundTrip(req)
	if err != nil {
		status, msg := describeUpstreamError(x.host, err)
		x.e.log.Debug("upstream failure", "host", x.host, "err", redactText(err.Error()))
		return x.finishLocal(req, reply(req, "", status, "UpstreamError", msg))
	}
	return x.wrap(resp, nil)
}

// intercepted is the pipeline of a request for an intercepted AWS host,
// one step per line. Each step either lets the request on or returns the
// answer the client gets.
func (x *exchange) intercepted(req *http.Request) *http.Response {
	req = x.startObserving(req)
	x.upgradeToHTTPS(req)
	x.learnTimeIfUnsynced(req)
	if resp := x.refuseUnsynced(req); resp != nil {
		return resp
	}
	prep, resp := x.classify(req)
	if resp != nil {
		return resp
	}
	if resp := x.refuseNotAllowed(req); resp != nil {
		return resp
	}
	if resp := x.admit(req); resp != nil {
		return resp
	}
	return x.send(req, prep)
}

// startObserving opens the request's span (when an Observer is set).
func (x *exchange) startObserving(req *http.Request) *http.Request {
	x.ro = nopRequestObserver{}
	if obs := x.e.p.Observer; obs != nil {
		ctx, ro := obs.Start(req.Context(), req)
		if ro != nil {
			x.ro = ro
		}
		req = req.WithContext(ctx)
	}
	return req
}

// upgradeToHTTPS sends an intercepted plain http:// request upstream over
// HTTPS (port 80 becomes 443), unless UpstreamPlainHTTP is set or a
// --resolve rule covers the request's host and port (its target's scheme
// decides, as it always did: that is how plain S3-compatible stores are
// reached).
func (x *exchange) upgradeToHTTPS(req *http.Request) {
	if req.URL.Scheme != "http" || x.e.p.UpstreamPlainHTTP {
		return
	}
	if _, ok := x.e.p.Resolve.Lookup(x.host, urlPort(req.URL)); ok {
		return
	}
	port := req.URL.Port()
	if port != "" && port != "80" {
		return // an explicit non-default port says the server speaks plain HTTP there
	}
	req.URL.Scheme = "https"
	req.URL.Host = req.URL.Hostname()
	if strings.Contains(req.URL.Host, ":") {
		req.URL.Host = "[" + req.URL.Host + "]" // IPv6 literal
	}
	if h, p, err := net.SplitHostPort(req.Host); err == nil && p == "80" {
		req.Host = h
	}
}

// learnTimeIfUnsynced asks the request's own upstream for the time while
// no time source has answered (Proxy.TimeBootstrap).
func (x *exchange) learnTimeIfUnsynced(req *http.Request) {
	tb := x.e.p.TimeBootstrap
	if tb == nil || !tb.Needed() {
		return
	}
	if name, addr, ok := x.e.p.tlsTarget(req, x.host); ok {
		tb.Bootstrap(req.Context(), name, addr)
	}
}

// refuseUnsynced answers 503 under RequireSync while the clock has no
// source, before any of the body is read.
func (x *exchange) refuseUnsynced(req *http.Request) *http.Response {
	if !x.e.p.RequireSync {
		return nil
	}
	st := x.e.p.Clock.Status()
	if st.Synced {
		return nil
	}
	reason := st.Reason
	if reason == "" {
		reason = "no authoritative time source has answered yet"
	}
	service := ""
	if sc, err := signer.ScopeFromHost(x.host); err == nil {
		service = sc.Service
	}
	return x.finishLocal(req, reply(req, service, http.StatusServiceUnavailable, "ClockNotSynchronized",
		"skewproxy will not sign with an unsynchronised clock: "+reason))
}

// classify prepares the request for signing (the client's signature
// stripped, scope and payload mode decided) and names it for telemetry.
func (x *exchange) classify(req *http.Request) (*signer.Prepared, *http.Response) {
	formAct := ""
	if !hasQueryParam(req.URL.RawQuery, "Action") && req.Header.Get("X-Amz-Target") == "" {
		formAct = formAction(req) // before Prepare takes the body
	}
	if req.Body != nil && req.Body != http.NoBody {
		x.body = &clientBody{ReadCloser: req.Body}
		req.Body = x.body
	}
	prep, err := x.e.p.Signer.Prepare(req)
	if err != nil {
		return nil, x.fail(req, "", err)
	}
	x.info = RequestInfo{
		Service:                prep.Service,
		Region:                 prep.Region,
		Operation:              operation(req, prep.Service, formAct),
		Host:                   x.host,
		ClientSigned:           prep.ClientAuth != nil || prep.ClientPresign != nil || prep.ClientSignatureVersion != "",
		ClientSignatureVersion: prep.ClientSignatureVersion,
	}
	if !prep.ClientTime.IsZero() {
		x.info.ClientSignatureAge = x.e.p.Clock.Now().Sub(prep.ClientTime)
	}
	if v := prep.ClientSignatureVersion; v != "" && clientConnOf(req.Context()).legacyLogged.CompareAndSwap(false, true) {
		x.e.log.Info("upgraded a legacy signature to SigV4 (logged once per client connection)",
			"signature_version", v, "host", x.host, "service", prep.Service, "region", prep.Region)
	}
	x.ro.Classified(x.info)
	return prep, nil
}

// admit waits for the Admitter (the Lambda invoke limiter).
func (x *exchange) admit(req *http.Request) *http.Response {
	adm := x.e.p.Admitter
	if adm == nil {
		return nil
	}
	queued := isLambdaInvoke(x.info.Operation)
	if queued {
		x.ro.Queued()
	}
	release, waited, err := adm.Admit(req.Context(), req)
	if queued {
		x.ro.Dequeued(waited)
	}
	if err != nil {
		var ref Refusal
		if errors.As(err, &ref) {
			x.class = awserrors.Classification{Failure: ref.Failure()}
			return x.finishLocal(req, answer(req, ref))
		}
		return x.fail(req, x.info.Service, err)
	}
	x.release = release
	return nil
}

// send signs at send time, sends, classifies the answer, and on a skew
// failure re-signs and resends once when the body can be replayed.
func (x *exchange) send(req *http.Request, prep *signer.Prepared) *http.Response {
	for attempt := 0; ; attempt++ {
		resp, local := x.sendOnce(req, prep)
		if local != nil {
			return local
		}
		if resp.StatusCode < 400 {
			return x.wrap(resp, nil)
		}
		if !x.classifyAnswer(resp, prep.Service) {
			return x.wrap(resp, nil)
		}
		if attempt > 0 || !x.e.p.RetryOnSkew || !prep.Replayable {
			return x.wrap(resp, nil)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
		resp.Body.Close()
		x.retried = true
		x.ro.Retried(x.class.Failure)
	}
}

// sendOnce signs with the time read now, after every wait, and sends. It
// returns the upstream answer, or the proxy's own when nothing came back.
func (x *exchange) sendOnce(req *http.Request, prep *signer.Prepared) (resp, local *http.Response) {
	clock := x.e.p.Clock
	// The one rule: the signing time is read here, after every wait.
	now := clock.Now()
	out, err := prep.Sign(req.Context(), now)
	if err != nil {
		return nil, x.fail(req, prep.Service, err)
	}
	x.ro.Signed(now)
	out.RequestURI = ""
	out.Close = false
	x.class = awserrors.Classification{}
	x.sent = clock.Now()
	resp, err = x.e.transport.RoundTrip(out)
	x.received = clock.Now()
	if err != nil {
		return nil, x.upstreamFailed(req, prep.Service, err)
	}
	x.observeDate(resp, x.sent, x.received)
	prep.ObserveAnswer(resp, x.received) // S3 Express: keeps a CreateSession answer's session
	return resp, nil
}

// upstreamFailed answers a request the upstream never answered.
func (x *exchange) upstreamFailed(req *http.Request, service string, err error) *http.Response {
	// A body the signer refused while it streamed (bad aws-chunked
	// framing) is the client's fault: answer its 400, not a 502.
	var reqErr *signer.RequestError
	if errors.As(err, &reqErr) {
		return x.fail(req, service, err)
	}
	// The client stopped sending before its declared length: that
	// cancelled the upstream request, and it is the client's fault.
	if x.body != nil && x.body.truncated() {
		return x.fail(req, service, &signer.RequestError{Status: http.StatusBadRequest, Code: "IncompleteBody",
			Message: "the request body ended before its declared length", Err: err})
	}
	status, msg := describeUpstreamError(x.host, err)
	x.e.log.Debug("upstream failure", "host", x.host, "service", service, "err", redactText(err.Error()))
	return x.finishLocal(req, reply(req, service, status, "UpstreamError", msg))
}

// classifyAnswer reads the start of an error answer to name its failure,
// feeds the server time of a skew failure to the clock, and reports whether
// the failure is a skew (worth one re-signed retry).
func (x *exchange) classifyAnswer(resp *http.Response, service string) (skew bool) {
	peek := peekBody(resp, maxErrorPeek)
	x.class = awserrors.Classify(resp.StatusCode, resp.Header, peek)
	if ag, ok := x.ro.(APIGatewayObserver); ok && service == "execute-api" {
		if mode := awserrors.ClassifyAPIGateway(resp.StatusCode, peek); mode != "" {
			ag.APIGatewayFailure(mode)
		}
	}
	if !x.class.Failure.IsSkew() {
		return false
	}
	if !x.class.ServerTime.IsZero() {
		x.e.p.Clock.Observe(timesource.Observation{
			Source:     "aws-error:" + x.host,
			ServerTime: x.class.ServerTime,
			Precision:  time.Second,
			Sent:       x.sent,
			Received:   x.received,
		})
	}
	return true
}

// observeDate feeds the answer's Date header to the clock. Cached answers
// (with an Age header) say nothing about now.
func (x *exchange) observeDate(resp *http.Response, sent, received time.Time) {
	v := resp.Header.Get("Date")
	if v == "" || resp.Header.Get("Age") != "" {
		return
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return
	}
	x.e.p.Clock.Observe(timesource.Observation{
		Source:     "http-date:" + x.host,
		ServerTime: t,
		Precision:  time.Second,
		Sent:       sent,
		Received:   received,
	})
}

// fail answers a signing, credentials or admission error.
func (x *exchange) fail(req *http.Request, service string, err error) *http.Response {
	var reqErr *signer.RequestError
	var credErr *signer.CredentialsError
	var resp *http.Response
	switch {
	case errors.As(err, &reqErr):
		status := reqErr.Status
		if status < 400 || status > 599 {
			status = http.StatusBadRequest
		}
		code := reqErr.Code
		if code == "" {
			code = "InvalidRequest"
		}
		if reqErr.Failure != awserrors.FailureNone {
			x.class = awserrors.Classification{Failure: reqErr.Failure}
		}
		resp = reply(req, service, status, code, reqErr.Message)
	case errors.As(err, &credErr):
		msg := "skewproxy could not get its AWS credentials from " + credErr.Provider
		// A cause the provider says is safe to show (IoT: certificate
		// refused, role alias unknown, ...); the full error goes to the log.
		var cause interface{ ClientMessage() string }
		if errors.As(credErr.Err, &cause) {
			msg += ": " + cause.ClientMessage()
		}
		resp = reply(req, service, http.StatusServiceUnavailable, "ProxyCredentialsUnavailable", msg)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		resp = reply(req, service, http.StatusServiceUnavailable, "RequestCancelled",
			"the request was cancelled before it was sent upstream")
	default:
		resp = reply(req, service, http.StatusInternalServerError, "InternalError",
			"skewproxy could not sign the request")
	}
	x.e.log.Warn("request not sent", "host", x.host, "service", service, "status", resp.StatusCode, "err", redactText(err.Error()))
	return x.finishLocal(req, resp)
}

// recovered turns a panic in the pipeline (a bug) into an answer the client
// can read, and still ends the exchange: the admission slot is released,
// the request stops counting as in flight (a drain would otherwise wait
// for it), and the log says what happened. http.ErrAbortHandler is the
// deliberate way to cut a connection and is passed on.
func (x *exchange) recovered(req *http.Request, v any) *http.Response {
	if v == http.ErrAbortHandler {
		panic(v)
	}
	x.e.log.Error("bug: request pipeline panicked; answered 500",
		"host", x.host, "service", x.info.Service, "panic", redactText(fmt.Sprint(v)), "stack", string(debug.Stack()))
	x.class = awserrors.Classification{}
	return x.finishLocal(req, reply(req, x.info.Service, http.StatusInternalServerError, "ProxyInternalError",
		"skewproxy hit an internal error handling this request (a bug; its log has the details)"))
}

// finishLocal returns an answer the proxy made itself, dated by the
// corrected clock (net/http would date it by the host clock, and SDKs
// correct their own clock from an answer's Date).
func (x *exchange) finishLocal(req *http.Request, resp *http.Response) *http.Response {
	resp.Header.Set("Date", x.e.p.Clock.Now().UTC().Format(http.TimeFormat))
	return x.wrap(resp, errLocalAnswer)
}

var errLocalAnswer = errors.New("answered by the proxy")

// wrap prepares resp for the client and arranges for the end of the
// exchange (release, observer, log line) to run when the client has its
// body.
func (x *exchange) wrap(resp *http.Response, local error) *http.Response {
	upgrade := ""
	if resp.StatusCode == http.StatusSwitchingProtocols {
		upgrade = resp.Header.Get("Upgrade")
	}
	removeHopHeaders(resp.Header, false)
	if upgrade != "" {
		resp.Header.Set("Connection", "Upgrade")
		resp.Header.Set("Upgrade", upgrade)
	}
	if x.e.draining.Load() {
		resp.Close = true
	}
	x.resp, x.local = resp, local != nil
	x.relStatus, x.relHeader = resp.StatusCode, resp.Header
	if x.local {
		// The upstream never answered: the release reports no answer.
		x.relStatus, x.relHeader = 0, nil
	}
	body := resp.Body
	if rw, ok := body.(io.ReadWriteCloser); ok && upgrade != "" {
		// The switched connection itself: whoever relays it needs to
		// write to it too (relayUpgraded, or goproxy for plain ws://).
		x.answer = endBody{ReadCloser: rw, x: x}
		resp.Body = &upgradedBody{endBody: &x.answer, w: rw}
		return resp
	}
	if body == nil {
		body = http.NoBody
	} else if x.flush != nil {
		body = &flushOnPause{body: body, flush: x.flush}
	}
	x.answer = endBody{ReadCloser: body, x: x}
	resp.Body = &x.answer
	return resp
}

// upgradedBody is the body of a 101 answer: the upstream connection, read
// and written by the relay; closing it ends the exchange.
type upgradedBody struct {
	*endBody
	w io.Writer
}

func (b *upgradedBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// finish ends the exchange once the client has the answer's body: the
// admission slot is released, the span ends, the log line is written.
func (x *exchange) finish(readErr error) {
	resp := x.resp
	if x.release != nil {
		x.release(x.relStatus, x.relHeader)
	}
	var endErr error
	if x.local && x.class.Failure == awserrors.FailureNone {
		endErr = errors.New(resp.Status)
	}
	if readErr != nil {
		endErr = readErr
	}
	if x.ro != nil {
		x.ro.End(resp.StatusCode, resp.Header, x.class, endErr)
	}
	x.logLine(resp.StatusCode, readErr, x.local)
	x.done()
}

func (x *exchange) logLine(status int, readErr error, local bool) {
	if !x.e.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", x.method),
		slog.String("host", x.host),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(x.start)),
	}
	if x.info.Service != "" {
		attrs = append(attrs, slog.String("service", x.info.Service), slog.String("operation", x.info.Operation), slog.String("region", x.info.Region))
	} else {
		attrs = append(attrs, slog.Bool("intercepted", false))
	}
	if x.retried {
		attrs = append(attrs, slog.Bool("retried", true))
	}
	if x.class.Failure != awserrors.FailureNone {
		attrs = append(attrs, slog.String("failure", string(x.class.Failure)))
	}
	if local {
		attrs = append(attrs, slog.Bool("proxy_answer", true))
	}
	if readErr != nil {
		attrs = append(attrs, slog.String("stream_error", redactText(readErr.Error())))
	}
	x.e.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// endBody ends its exchange once, when the body is closed.
type endBody struct {
	io.ReadCloser
	x       *exchange
	once    sync.Once
	readErr error
}

func (b *endBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.readErr = err
	}
	return n, err
}

func (b *endBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.x.finish(b.readErr) })
	return err
}

// peekBody reads up to n bytes of resp's body and puts them back in front
// of the rest.
func peekBody(resp *http.Response, n int64) []byte {
	buf, _ := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), resp.Body), resp.Body}
	return buf
}

type nopRequestObserver struct{}

func (nopRequestObserver) Classified(RequestInfo)                                {}
func (nopRequestObserver) Queued()                                               {}
func (nopRequestObserver) Dequeued(time.Duration)                                {}
func (nopRequestObserver) Signed(time.Time)                                      {}
func (nopRequestObserver) Retried(awserrors.Failure)                             {}
func (nopRequestObserver) End(int, http.Header, awserrors.Classification, error) {}

// clientBody remembers whether reading the client's request body failed
// before its end (the client hung up or half-closed mid-body).
type clientBody struct {
	io.ReadCloser
	failed atomic.Bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

func (b *clientBody) truncated() bool { return b.failed.Load() }

// hasQueryParam reports whether the raw query has a parameter named name
// (unescaped names only, as the AWS query protocol's are), without parsing
// it into a map.
func hasQueryParam(rawQuery, name string) bool {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, _, _ := strings.Cut(kv, "=")
		if k == name {
			return true
		}
	}
	return false
}
