package main

import (
	"context"
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkResignLambdaInvoke-2    	   19236	     13374 ns/op	   11392 B/op	     104 allocs/op
BenchmarkResignLambdaInvoke-2    	   19236	     12000 ns/op	   11392 B/op	     104 allocs/op
BenchmarkResignLambdaInvoke-2    	   19236	     90000 ns/op	   11392 B/op	     104 allocs/op
BenchmarkNoMem-8   	 100	 2500 ns/op
BenchmarkWeird-name-x 	 1	 7 ns/op
PASS
ok  	github.com/skewproxy/skewproxy/signer	1.353s`
	got := parseGoBench(out)
	for _, tc := range []struct {
		name   string
		bench  string
		want   goBench
		absent bool
	}{
		{name: "median of three runs", bench: "BenchmarkResignLambdaInvoke", want: goBench{NsOp: 13374, BytesOp: 11392, AllocsOp: 104}},
		{name: "no -benchmem columns", bench: "BenchmarkNoMem", want: goBench{NsOp: 2500}},
		{name: "dash in name without a number keeps the name", bench: "BenchmarkWeird-name-x", want: goBench{NsOp: 7}},
		{name: "non-benchmark lines ignored", bench: "PASS", absent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ok := got[tc.bench]
			if tc.absent {
				if ok {
					t.Fatalf("%s parsed as %+v", tc.bench, b)
				}
				return
			}
			if !ok || b != tc.want {
				t.Fatalf("%s = %+v (found %v), want %+v", tc.bench, b, ok, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second (nearest rank)", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 1, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.q); got != tc.want {
				t.Fatalf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1GiB", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"512KiB", 512 << 10, false},
		{"100B", 100, false},
		{"4096", 4096, false},
		{"0", 0, true},
		{"-1MiB", 0, true},
		{"lots", 0, true},
		{"99999999999GiB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestLoadAndHandshakesAgainstEndpoint drives the real endpoint with the
// real load clients and handshake timer (direct, on loopback).
func TestLoadAndHandshakesAgainstEndpoint(t *testing.T) {
	e, err := startEndpoint(t.TempDir(), proxyCreds.AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tgt := target{Name: "direct", URL: "https://" + e.Addr + invokePath, Host: lambdaHost, ServerName: lambdaHost,
		Roots: e.PKI.Pool, CPUPid: os.Getpid()}
	r, err := runLoad(ctx, tgt, 2, 100*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Errors != 0 {
		t.Fatalf("requests %d, errors %d (first: %s)", r.Requests, r.Errors, r.FirstErr)
	}
	if r.P50 <= 0 || r.P50 > r.P99 || r.RPS <= 0 {
		t.Errorf("figures out of order: %+v", r)
	}
	// The clients sign with the placeholder keys, never the proxy's.
	if e.ProxySigned.Load() != 0 || e.Other.Load() < int64(r.Requests) {
		t.Errorf("endpoint counted %d proxy-signed and %d other requests, want 0 and >= %d", e.ProxySigned.Load(), e.Other.Load(), r.Requests)
	}

	full, _, err := handshakes(ctx, directDialer(e.Addr), &tls.Config{RootCAs: e.PKI.Pool}, lambdaHost, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	resumed, frac, err := handshakes(ctx, directDialer(e.Addr), &tls.Config{RootCAs: e.PKI.Pool}, lambdaHost, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if full.N != 3 || resumed.N != 3 {
		t.Errorf("timed %d full and %d resumed handshakes, want 3 each", full.N, resumed.N)
	}
	if frac != 1 {
		t.Errorf("resumed fraction %v, want 1 (a ClientSessionCache and a ticket-sending server)", frac)
	}
}

func TestDialConnectRefusal(t *testing.T) {
	e, err := startEndpoint(t.TempDir(), proxyCreds.AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The endpoint speaks TLS only: a plain-text CONNECT gets no valid
	// HTTP answer, and dialConnect must say so rather than hand back a conn.
	if _, err := dialConnect(ctx, e.Addr, lambdaHost+":443"); err == nil {
		t.Fatal("CONNECT to a TLS-only server succeeded")
	}
}

func TestPatternReaderAt(t *testing.T) {
	p := newPattern()
	whole := make([]byte, 3*len(p.block)+11)
	if n, err := p.ReadAt(whole, 0); n != len(whole) || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	for _, off := range []int64{0, 1, int64(len(p.block)) - 1, int64(len(p.block)), 2*int64(len(p.block)) + 5} {
		part := make([]byte, 100)
		if _, err := p.ReadAt(part, off); err != nil {
			t.Fatal(err)
		}
		if string(part) != string(whole[off:off+100]) {
			t.Errorf("ReadAt(off %d) disagrees with the sequential bytes", off)
		}
	}
}

func TestProcStatusOfSelf(t *testing.T) {
	rss, err := procStatusKiB(os.Getpid(), "VmRSS")
	if err != nil || rss <= 0 {
		t.Fatalf("VmRSS = %d, %v", rss, err)
	}
	if _, err := procStatusKiB(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("a missing field read without error")
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestRenderVerdicts(t *testing.T) {
	r := &results{
		Clients: []int{1, 64},
		GoBench: map[string]goBench{
			"BenchmarkResignLambdaInvoke":  {NsOp: 2500, AllocsOp: 12},
			"BenchmarkSDKSignLambdaInvoke": {NsOp: 5000, AllocsOp: 50},
			"BenchmarkResignS3GetObject":   {NsOp: 4000, AllocsOp: 12},
			"BenchmarkSDKSignS3GetObject":  {NsOp: 6000, AllocsOp: 50},
		},
		Load: map[loadPath]map[string]map[int]loadResult{
			pathMITM: {
				tgtSkewproxy: {64: {RPS: 5000, P99: 3 * time.Millisecond}},
				tgtDirect:    {64: {RPS: 9000, P99: 2500 * time.Microsecond}},
				tgtMitmdump:  {64: {RPS: 600, P99: 90 * time.Millisecond}},
			},
		},
		UploadBytes: 1 << 30,
		Uploads: []uploadResult{
			{Mode: "chunk-signed", Client: "minio-go", ProxyMiBs: 85, DirectMiBs: 100, PeakRSSKiB: 30 << 10},
			{Mode: "unsigned-trailer", Client: "sdk", ProxyMiBs: 95, DirectMiBs: 100, PeakRSSKiB: 30 << 10},
		},
		Idle: &idleResult{Conns: 10000, PerConnKiB: 23.5},
	}
	out := r.render()
	for _, tc := range []struct{ name, rowPrefix, verdict string }{
		{"Lambda re-sign under 3 µs and faster than the SDK", "| re-sign Lambda Invoke", "**met**"},
		{"S3 re-sign over 3 µs", "| re-sign S3 GetObject", "**not met**"},
		{"added p99 of 0.5 ms", "| MITM (HTTPS in CONNECT), 64 clients: added p99 over direct", "**met**"},
		{"8.3x mitmdump", "| MITM (HTTPS in CONNECT), 64 clients: req/s vs mitmdump", "**not met**"},
		{"no bare forwarder run", "| MITM (HTTPS in CONNECT), 64 clients: req/s vs the bare forwarder", notMeasured},
		{"upload at 85% (the old 70% goal would pass it)", "| 1 GiB upload chunk-signed", "**not met**"},
		{"upload at 95%, 30 MiB", "| 1 GiB upload unsigned-trailer", "**met**"},
		{"23.5 KiB per idle connection", "| 10000 idle intercepted connections", "**met**"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var line string
			for l := range strings.SplitSeq(out, "\n") {
				if strings.HasPrefix(l, tc.rowPrefix) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no row %q in\n%s", tc.rowPrefix, out)
			}
			if !strings.HasSuffix(line, "| "+tc.verdict+" |") {
				t.Errorf("row %q, want verdict %s", line, tc.verdict)
			}
		})
	}
	if strings.Contains(out, "plain HTTP, ") {
		t.Error("goal rows for the plain path, which did not run")
	}
	if !strings.Contains(out, "| MITM (HTTPS in CONNECT) | 64 | direct | 9000 | – |") {
		t.Errorf("no direct row in the load table:\n%s", out)
	}
}
