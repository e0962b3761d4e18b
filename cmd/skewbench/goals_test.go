package main

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestGoalChecks(t *testing.T) {
	us := time.Microsecond
	for _, tc := range []struct {
		name string
		met  bool
		want bool
	}{
		{"re-sign 2.9 µs, SDK 3.5 µs", resignMet(goBench{NsOp: 2900}, goBench{NsOp: 3500}, true), true},
		{"re-sign exactly 3 µs, SDK slower", resignMet(goBench{NsOp: 3000}, goBench{NsOp: 7000}, true), true},
		{"re-sign 3.1 µs", resignMet(goBench{NsOp: 3100}, goBench{NsOp: 7000}, true), false},
		{"re-sign 2 µs but the SDK is faster", resignMet(goBench{NsOp: 2000}, goBench{NsOp: 1900}, true), false},
		{"re-sign level with the SDK is not faster", resignMet(goBench{NsOp: 2000}, goBench{NsOp: 2000}, true), false},
		{"re-sign without an SDK row", resignMet(goBench{NsOp: 2000}, goBench{}, false), false},

		{"req/s level with the bare forwarder", rpsVsBareMet(loadResult{RPS: 5000}, loadResult{RPS: 5000}), true},
		{"req/s 0.62x the bare forwarder", rpsVsBareMet(loadResult{RPS: 4167}, loadResult{RPS: 6708}), false},

		{"CPU 1.5x tinyproxy", cpuVsTinyproxyMet(loadResult{CPUPerReq: 75 * us}, loadResult{CPUPerReq: 50 * us}), true},
		{"CPU 3.9x tinyproxy", cpuVsTinyproxyMet(loadResult{CPUPerReq: 130 * us}, loadResult{CPUPerReq: 33 * us}), false},

		{"p50 +30 µs over the bare forwarder", p50OverBareMet(loadResult{P50: 530 * us}, loadResult{P50: 500 * us}), true},
		{"p50 +31 µs", p50OverBareMet(loadResult{P50: 531 * us}, loadResult{P50: 500 * us}), false},
		{"p50 below the bare forwarder", p50OverBareMet(loadResult{P50: 400 * us}, loadResult{P50: 500 * us}), true},

		{"p99 +2 ms over direct", p99OverDirectMet(loadResult{P99: 5 * time.Millisecond}, loadResult{P99: 3 * time.Millisecond}), true},
		{"p99 +12.8 ms over direct", p99OverDirectMet(loadResult{P99: 15800 * us}, loadResult{P99: 3 * time.Millisecond}), false},

		{"upload 90 %, 32 MiB", uploadMet(uploadResult{ProxyMiBs: 90, DirectMiBs: 100, PeakRSSKiB: 32 << 10}), true},
		{"upload 86 %", uploadMet(uploadResult{ProxyMiBs: 86, DirectMiBs: 100, PeakRSSKiB: 20 << 10}), false},
		{"upload fast but 33 MiB peak", uploadMet(uploadResult{ProxyMiBs: 99, DirectMiBs: 100, PeakRSSKiB: 33 << 10}), false},
		{"upload with no direct figure", uploadMet(uploadResult{ProxyMiBs: 99, PeakRSSKiB: 1 << 10}), false},

		{"idle 24 KiB each", idleMet(idleResult{Conns: 10000, PerConnKiB: 24}), true},
		{"idle 24.1 KiB each", idleMet(idleResult{Conns: 10000, PerConnKiB: 24.1}), false},
		{"no idle connection opened", idleMet(idleResult{}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.met != tc.want {
				t.Fatalf("met = %v, want %v", tc.met, tc.want)
			}
		})
	}
}

// TestRenderLoadGoals checks each load goal row of both paths: its
// verdict and the ratio it shows, from one set of figures.
func TestRenderLoadGoals(t *testing.T) {
	us := time.Microsecond
	ms := time.Millisecond
	plain := map[string]map[int]loadResult{
		tgtDirect: {1: {RPS: 3900, P50: 250 * us}, 16: {RPS: 16400}, 64: {RPS: 18600, P99: 8 * ms}},
		tgtBare:   {1: {RPS: 2100, P50: 470 * us, CPUPerReq: 60 * us}, 16: {RPS: 6700}, 64: {RPS: 10000}},
		tgtSkewproxy: {1: {RPS: 1840, P50: 540 * us, CPUPerReq: 140 * us}, 16: {RPS: 7000, CPUPerReq: 60 * us},
			64: {RPS: 5360, P99: 9 * ms, CPUPerReq: 150 * us}},
		tgtTinyproxy: {1: {CPUPerReq: 50 * us}, 16: {CPUPerReq: 40 * us}, 64: {CPUPerReq: 33 * us}},
	}
	mitm := map[string]map[int]loadResult{
		tgtDirect:    {64: {RPS: 9000, P99: 2 * ms}},
		tgtBare:      {1: {P50: 800 * us}, 16: {RPS: 3000}, 64: {RPS: 4000}},
		tgtSkewproxy: {1: {P50: 820 * us}, 16: {RPS: 3100}, 64: {RPS: 3900, P99: 20 * ms, CPUPerReq: 200 * us}},
		tgtTinyproxy: {64: {CPUPerReq: 0}}, // CPU not read
		tgtMitmdump:  {64: {RPS: 300}},
	}
	r := &results{Clients: []int{1, 16, 64}, Load: map[loadPath]map[string]map[int]loadResult{pathPlain: plain, pathMITM: mitm}}
	var rows [][]string
	r.renderLoadGoals(func(cells ...string) { rows = append(rows, cells) })

	want := []struct{ label, ratio, verdict string }{
		{"plain HTTP, 16 clients: req/s vs the bare forwarder", "1.04x", "**met**"},
		{"plain HTTP, 64 clients: req/s vs the bare forwarder", "0.54x", "**not met**"},
		{"plain HTTP, 1 client: proxy CPU per request vs tinyproxy (a connection per request)", "2.80x", "**not met**"},
		{"plain HTTP, 16 clients: proxy CPU per request vs tinyproxy (a connection per request)", "1.50x", "**met**"},
		{"plain HTTP, 64 clients: proxy CPU per request vs tinyproxy (a connection per request)", "4.55x", "**not met**"},
		{"plain HTTP, 1 client: added p50 over the bare forwarder", "+70 µs", "**not met**"},
		{"plain HTTP, 64 clients: added p99 over direct", "+1.00 ms", "**met**"},
		{"MITM (HTTPS in CONNECT), 16 clients: req/s vs the bare forwarder", "1.03x", "**met**"},
		{"MITM (HTTPS in CONNECT), 64 clients: req/s vs the bare forwarder", "0.97x", "**not met**"},
		{"MITM (HTTPS in CONNECT), 1 client: proxy CPU per request vs tinyproxy (a blind tunnel)", "–", notMeasured},
		{"MITM (HTTPS in CONNECT), 16 clients: proxy CPU per request vs tinyproxy (a blind tunnel)", "–", notMeasured},
		{"MITM (HTTPS in CONNECT), 64 clients: proxy CPU per request vs tinyproxy (a blind tunnel)", "–", notMeasured},
		{"MITM (HTTPS in CONNECT), 1 client: added p50 over the bare forwarder", "+20 µs", "**met**"},
		{"MITM (HTTPS in CONNECT), 64 clients: added p99 over direct", "+18.00 ms", "**not met**"},
		{"MITM (HTTPS in CONNECT), 64 clients: req/s vs mitmdump", "13.00x", "**met**"},
	}
	if len(rows) != len(want) {
		for _, c := range rows {
			t.Log(c)
		}
		t.Fatalf("%d goal rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		c := rows[i]
		if len(c) != 6 || c[0] != w.label || c[3] != w.ratio || c[5] != w.verdict {
			t.Errorf("row %d = %q, want %q ... ratio %q ... %s", i, c, w.label, w.ratio, w.verdict)
		}
	}
}

func TestParseResolve(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{
		{"lambda.us-east-1.amazonaws.com:443=127.0.0.1:8443", false},
		{"lambda.us-east-1.amazonaws.com:80=127.0.0.1:8080", false},
		{"lambda.us-east-1.amazonaws.com=127.0.0.1:8443", true},
		{"lambda.us-east-1.amazonaws.com:443", true},
		{"lambda.us-east-1.amazonaws.com:443=https://127.0.0.1:8443", true},
		{":443=127.0.0.1:1", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			m := map[string]string{}
			err := parseResolve(m, tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseResolve(%q) = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if err == nil && len(m) != 1 {
				t.Errorf("map %v, want one rule", m)
			}
		})
	}
}

// TestBareProxyBothPaths drives the bare forwarder with the real load
// clients on both paths (absolute-form plain HTTP, and HTTPS in CONNECT
// with its own leaf) to the real endpoint, which must see every request.
func TestBareProxyBothPaths(t *testing.T) {
	e, err := startEndpoint(t.TempDir(), proxyCreds.AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pki, err := newPKI(benchNames)
	if err != nil {
		t.Fatal(err)
	}
	p := newBareProxy(pki.Leaf, e.PKI.Pool, map[string]string{lambdaHost + ":443": e.Addr, lambdaHost + ":80": e.PlainAddr})
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String()}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tgt := range []target{
		{Path: pathPlain, Name: tgtBare, URL: "http://" + lambdaHost + invokePath, Proxy: proxyURL},
		{Path: pathMITM, Name: tgtBare, URL: "https://" + lambdaHost + invokePath, Proxy: proxyURL, Roots: pki.Pool},
	} {
		t.Run(string(tgt.Path), func(t *testing.T) {
			r, err := runLoad(ctx, tgt, 2, 50*time.Millisecond, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests == 0 || r.Errors != 0 {
				t.Fatalf("requests %d, errors %d (first: %s)", r.Requests, r.Errors, r.FirstErr)
			}
			// Counted by target (the X-Skewbench-Target header went through);
			// not re-signed: the bare forwarder does not sign.
			c := e.counts().Targets[tgt.label()]
			if c.Other < int64(r.Requests) || c.ProxySigned != 0 {
				t.Errorf("endpoint counted %+v for %s, the clients had %d answered", c, tgt.label(), r.Requests)
			}
		})
	}

	// An origin-form request is not a proxy request: refused, not looped.
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: %s, want 400", resp.Status)
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("origin-form answer Content-Type %q", resp.Header.Get("Content-Type"))
	}
}
