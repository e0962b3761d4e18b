package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// goBench is one Go benchmark's figures (the median run when -count > 1).
type goBench struct {
	NsOp     float64
	BytesOp  float64
	AllocsOp float64
}

// parseGoBench reads `go test -bench -benchmem` output: name (without the
// -GOMAXPROCS suffix) to figures.
func parseGoBench(out string) map[string]goBench {
	runs := map[string][]goBench{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		var b goBench
		ok := false
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsOp, ok = v, true
			case "B/op":
				b.BytesOp = v
			case "allocs/op":
				b.AllocsOp = v
			}
		}
		if ok {
			runs[name] = append(runs[name], b)
		}
	}
	out2 := map[string]goBench{}
	for name, rs := range runs {
		slices.SortFunc(rs, func(a, b goBench) int {
			switch {
			case a.NsOp < b.NsOp:
				return -1
			case a.NsOp > b.NsOp:
				return 1
			}
			return 0
		})
		out2[name] = rs[len(rs)/2]
	}
	return out2
}

// results is everything one run measured.
type results struct {
	GoBench          map[string]goBench
	Clients          []int
	Load             map[loadPath]map[string]map[int]loadResult // path -> target -> clients -> figures
	ProxySigned      int64                                      // requests the endpoint saw signed with the proxy's key during skewproxy runs
	ProxyNotResigned int64                                      // ... and with any other signature (must be 0)
	Profiles         map[loadPath]string                        // CPU profile of skewproxy at the most clients, per path
	Handshake        *handshakeResult
	UploadBytes      int64
	Uploads          []uploadResult
	Idle             *idleResult
	IdleProfile      string
	Footprint        []footprintResult
	Notes            []string
}

// load is one load run's figures, if it was measured.
func (r *results) load(p loadPath, name string, clients int) (loadResult, bool) {
	lr, ok := r.Load[p][name][clients]
	return lr, ok
}

func (r *results) setLoad(p loadPath, name string, clients int, lr loadResult) {
	if r.Load == nil {
		r.Load = map[loadPath]map[string]map[int]loadResult{}
	}
	if r.Load[p] == nil {
		r.Load[p] = map[string]map[int]loadResult{}
	}
	if r.Load[p][name] == nil {
		r.Load[p][name] = map[int]loadResult{}
	}
	r.Load[p][name][clients] = lr
}

// fmtDur prints a latency compactly: µs below a millisecond, else ms.
func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func fmtSignedDur(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func fmtTiming(t timing) string {
	return fmt.Sprintf("p50 %s, p90 %s", fmtDur(t.P50), fmtDur(t.P90))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// render is the markdown report: the table of measurements and goals, the
// keep-alive load table of both paths, and notes under them.
func (r *results) render() string {
	var b strings.Builder
	row := func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	b.WriteString("## skewproxy benchmark (" + time.Now().UTC().Format(time.RFC3339) + ")\n\n")
	row("measurement", "skewproxy", "baseline (same run)", "ratio", "goal", "verdict")
	row("---", "---", "---", "---", "---", "---")

	for _, s := range []struct{ label, ours, sdk string }{
		{"re-sign Lambda Invoke (1 KiB body hashed)", "BenchmarkResignLambdaInvoke", "BenchmarkSDKSignLambdaInvoke"},
		{"re-sign S3 GetObject", "BenchmarkResignS3GetObject", "BenchmarkSDKSignS3GetObject"},
	} {
		o, ok1 := r.GoBench[s.ours]
		k, ok2 := r.GoBench[s.sdk]
		if !ok1 {
			continue
		}
		base, rat, v := "–", "–", notMeasured
		if ok2 {
			base = fmt.Sprintf("SDK signs from scratch: %.2f µs, %.0f allocs", k.NsOp/1e3, k.AllocsOp)
			rat = fmt.Sprintf("%s time, %s allocs", ratio(o.NsOp, k.NsOp), ratio(o.AllocsOp, k.AllocsOp))
			v = verdict(resignMet(o, k, ok2))
		}
		row(s.label, fmt.Sprintf("%.2f µs, %.0f allocs, %.0f B", o.NsOp/1e3, o.AllocsOp, o.BytesOp), base, rat,
			fmt.Sprintf("≤ %.0f µs and faster than the SDK", goalResignNs/1e3), v)
	}
	if l, ok := r.GoBench["BenchmarkLeafIssue"]; ok {
		row("leaf certificate issue (in process)", fmt.Sprintf("%.0f µs, %.0f allocs", l.NsOp/1e3, l.AllocsOp), "–", "–", "–", "–")
	}

	r.renderLoadGoals(row)

	if h := r.Handshake; h != nil {
		row("first request to a new host (CONNECT, leaf issue, handshake, upstream dial, Invoke)", fmtTiming(h.ProxyNewHost),
			"direct, new connection: "+fmtTiming(h.DirectNewConn), fmt.Sprintf("%s; p50 %s", ratio(float64(h.ProxyNewHost.P50), float64(h.DirectNewConn.P50)), fmtSignedDur(h.ProxyNewHost.P50-h.DirectNewConn.P50)), "–", "–")
		row("full TLS handshake, leaf cached (fresh tls.Config)", fmtTiming(h.ProxyFull),
			"direct: "+fmtTiming(h.DirectFull), ratio(float64(h.ProxyFull.P50), float64(h.DirectFull.P50)), "–", "–")
		row("resumed TLS handshake (ClientSessionCache)", fmt.Sprintf("%s, %.0f%% resumed", fmtTiming(h.ProxyResumed), 100*h.ProxyResumedOK),
			fmt.Sprintf("direct: %s, %.0f%% resumed", fmtTiming(h.DirectResumed), 100*h.DirectResOK),
			fmt.Sprintf("%s; vs full through skewproxy %s", ratio(float64(h.ProxyResumed.P50), float64(h.DirectResumed.P50)), ratio(float64(h.ProxyResumed.P50), float64(h.ProxyFull.P50))), "–", "–")
	}

	for _, u := range r.Uploads {
		label := fmt.Sprintf("%s upload %s (%s)", fmtBytes(r.UploadBytes), u.Mode, u.Client)
		row(label, fmt.Sprintf("%.0f MiB/s, proxy peak RSS %.1f MiB", u.ProxyMiBs, float64(u.PeakRSSKiB)/1024),
			fmt.Sprintf("direct to MinIO: %.0f MiB/s (best of %d each way)", u.DirectMiBs, uploadRounds), fmt.Sprintf("%.0f%% of direct", 100*u.ProxyMiBs/u.DirectMiBs),
			fmt.Sprintf("≥ %.0f %%, ≤ %d MiB", 100*goalUploadOfDirect, goalUploadPeakKiB>>10), verdict(uploadMet(u)))
	}

	if i := r.Idle; i != nil {
		row(fmt.Sprintf("%d idle intercepted connections (CONNECT + TLS, then silent)", i.Conns),
			fmt.Sprintf("%.1f KiB per connection", i.PerConnKiB),
			fmt.Sprintf("proxy RSS %.1f MiB before, %.1f MiB after", float64(i.BeforeKiB)/1024, float64(i.AfterKiB)/1024), "–",
			fmt.Sprintf("≤ %.0f KiB each", goalIdleKiBPerConn), verdict(idleMet(*i)))
	}

	r.renderFootprint(row)

	r.renderLoadTable(&b)

	b.WriteString("\n- Goals are issue 22's (superseding issue 10's where both set one) unless marked; each ratio is between figures of this run.\n")
	if r.ProxySigned > 0 || r.ProxyNotResigned > 0 {
		fmt.Fprintf(&b, "- The endpoint saw %d requests re-signed with the proxy's key during the skewproxy runs and %d that were not.\n", r.ProxySigned, r.ProxyNotResigned)
	}
	for _, p := range loadPaths {
		if f := r.Profiles[p]; f != "" {
			fmt.Fprintf(&b, "- CPU profile of skewproxy during the %d-client %s run: %s (`go tool pprof -top %s`).\n", slicesMax(r.Clients), p, f, f)
		}
	}
	if r.IdleProfile != "" {
		fmt.Fprintf(&b, "- Heap profile of skewproxy holding the idle connections: %s (`go tool pprof -sample_index=inuse_space -top %s`).\n", r.IdleProfile, r.IdleProfile)
	}
	for _, n := range r.Notes {
		b.WriteString("- " + n + "\n")
	}
	return b.String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}

// renderFootprint adds the footprint rows: binary sizes, RSS idle and under
// the paced load (native), CPU per request of the ARM builds under qemu as
// a ratio to the native build.
func (r *results) renderFootprint(row func(...string)) {
	var native *footprintResult
	for i := range r.Footprint {
		if r.Footprint[i].Emulated == "" {
			native = &r.Footprint[i]
		}
	}
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	for _, f := range r.Footprint {
		if f.SizeBytes == 0 {
			continue
		}
		goal, v, base, rat := "–", "–", "–", "–"
		if f.Name == "armv7" {
			goal, v = "≤ 16 MiB", verdict(f.SizeBytes <= 16<<20)
		}
		if native != nil && f.Emulated != "" && native.SizeBytes > 0 {
			base, rat = "amd64: "+mib(native.SizeBytes), ratio(float64(f.SizeBytes), float64(native.SizeBytes))
		}
		row("release binary linux/"+f.Name+" (static, stripped)", fmt.Sprintf("%s (%d bytes)", mib(f.SizeBytes), f.SizeBytes), base, rat, goal, v)
	}
	if native != nil && native.IdleRSSKiB > 0 {
		row(fmt.Sprintf("proxy RSS idle, then at a paced %.0f req/s (keep-alive Invoke; %s native)", native.Rate, native.Name),
			fmt.Sprintf("idle %s, under load %s", mib(native.IdleRSSKiB<<10), mib(native.LoadRSSKiB<<10)), "–", "–", "fits a 256 MiB device (README: GOMEMLIMIT)", "–")
	}
	for _, f := range r.Footprint {
		if f.Emulated == "" || f.CPUPerReq == 0 || native == nil || native.CPUPerReq == 0 {
			continue
		}
		row(fmt.Sprintf("CPU per request at %.0f req/s, linux/%s under %s", f.Rate, f.Name, f.Emulated),
			fmtDur(f.CPUPerReq), fmt.Sprintf("%s native: %s", native.Name, fmtDur(native.CPUPerReq)),
			ratio(float64(f.CPUPerReq), float64(native.CPUPerReq)), "for information (emulated)", "–")
	}
}
