package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunPacedKeepsTheRate(t *testing.T) {
	e, err := startEndpoint(t.TempDir(), proxyCreds.AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tgt := target{Name: "direct", URL: "https://" + e.Addr + invokePath, Host: lambdaHost, ServerName: lambdaHost, Roots: e.PKI.Pool}
	samples := 0
	p := runPaced(context.Background(), tgt, 50, 2*time.Second, func() { samples++ })
	if p.firstErr != nil || p.ok < 80 || p.ok > 101 || p.late != 0 {
		t.Fatalf("paced 50/s for 2s: %+v", p)
	}
	if samples < 3 {
		t.Errorf("sampled %d times in 2s, want every 500ms", samples)
	}
}

func TestRenderFootprint(t *testing.T) {
	r := &results{Footprint: []footprintResult{
		{Name: "amd64", SizeBytes: 22 << 20, IdleRSSKiB: 25 << 10, LoadRSSKiB: 27 << 10, Rate: 99, CPUPerReq: 1500 * time.Microsecond},
		{Name: "arm64", Emulated: "qemu-aarch64-static", SizeBytes: 20 << 20, Rate: 92, CPUPerReq: 5500 * time.Microsecond},
		{Name: "armv7", Emulated: "qemu-arm-static", SizeBytes: 16 << 20, Rate: 90, CPUPerReq: 7500 * time.Microsecond},
	}}
	out := r.render()
	for _, want := range []string{
		"| release binary linux/armv7 (static, stripped) | 16.0 MiB (16777216 bytes) | amd64: 22.0 MiB | 0.73x | ≤ 16 MiB | **met** |",
		"idle 25.0 MiB, under load 27.0 MiB",
		"| CPU per request at 92 req/s, linux/arm64 under qemu-aarch64-static | 5.50 ms | amd64 native: 1.50 ms | 3.67x |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
