package main

import (
	"fmt"
	"strings"
	"time"
)

// The goals of issue 22 (they supersede issue 10's where both set one),
// each judged on figures measured in the same run.
const (
	goalResignNs       = 3000.0 // re-sign ≤ 3 µs, and faster than the SDK signing the same request
	goalRPSVsBare      = 1.0    // skewproxy req/s ≥ 1.0x the bare forwarder's ...
	goalCPUVsTinyproxy = 1.5    // proxy CPU per request ≤ 1.5x tinyproxy's
	goalP50OverBare    = 30 * time.Microsecond
	goalP99OverDirect  = 2 * time.Millisecond
	goalUploadOfDirect = 0.90     // 1 GiB uploads ≥ 90 % of direct ...
	goalUploadPeakKiB  = 32 << 10 // ... with a peak RSS ≤ 32 MiB
	goalIdleKiBPerConn = 24.0     // 10,000 idle intercepted connections ≤ 24 KiB each
	goalRPSVsMitmdump  = 10.0     // issue 10, not superseded: ≥ 10x mitmdump's req/s at the most clients (MITM)
	notMeasured        = "**not measured**"
)

// Client counts the load goals are set at.
var (
	rpsGoalClients = []int{16, 64} // req/s ≥ the bare forwarder
	p50GoalClients = 1             // added p50 over the bare forwarder
	p99GoalClients = 64            // added p99 over direct
)

// The goal checks: each says whether the figures meet the goal.

func resignMet(ours, sdk goBench, haveSDK bool) bool {
	return haveSDK && ours.NsOp <= goalResignNs && ours.NsOp < sdk.NsOp
}

func rpsVsBareMet(sp, bare loadResult) bool { return sp.RPS >= goalRPSVsBare*bare.RPS }

func cpuVsTinyproxyMet(sp, tiny loadResult) bool {
	return float64(sp.CPUPerReq) <= goalCPUVsTinyproxy*float64(tiny.CPUPerReq)
}

func p50OverBareMet(sp, bare loadResult) bool { return sp.P50-bare.P50 <= goalP50OverBare }

func p99OverDirectMet(sp, direct loadResult) bool { return sp.P99-direct.P99 <= goalP99OverDirect }

func uploadMet(u uploadResult) bool {
	return u.DirectMiBs > 0 && u.ProxyMiBs >= goalUploadOfDirect*u.DirectMiBs && u.PeakRSSKiB <= goalUploadPeakKiB
}

func idleMet(i idleResult) bool { return i.Conns > 0 && i.PerConnKiB <= goalIdleKiBPerConn }

// loadGoal is one load goal of one path: how it compares skewproxy with a
// baseline run at the same client count.
type loadGoal struct {
	clients  int
	base     string // target name of the baseline
	label    string // what is compared
	goal     string
	ours     func(loadResult) string
	theirs   func(loadResult) string
	ratio    func(sp, base loadResult) string
	met      func(sp, base loadResult) bool
	measured func(sp, base loadResult) bool // nil: both runs exist
}

// loadGoals are the load goals of path p for a run at clients counts, in
// the table's order.
func loadGoals(p loadPath, clients []int) []loadGoal {
	var gs []loadGoal
	rps := func(r loadResult) string { return fmt.Sprintf("%.0f req/s", r.RPS) }
	for _, n := range rpsGoalClients {
		gs = append(gs, loadGoal{clients: n, base: tgtBare, label: "req/s vs the bare forwarder",
			goal: fmt.Sprintf("≥ %.1fx", goalRPSVsBare), ours: rps, theirs: rps,
			ratio: func(sp, b loadResult) string { return ratio(sp.RPS, b.RPS) }, met: rpsVsBareMet})
	}
	tiny := tinyproxyRole(p)
	cpu := func(r loadResult) string { return fmtDur(r.CPUPerReq) + "/req" }
	for _, n := range clients {
		gs = append(gs, loadGoal{clients: n, base: tgtTinyproxy, label: "proxy CPU per request vs " + tiny,
			goal: fmt.Sprintf("≤ %.1fx", goalCPUVsTinyproxy), ours: cpu, theirs: cpu,
			ratio: func(sp, t loadResult) string { return ratio(float64(sp.CPUPerReq), float64(t.CPUPerReq)) },
			met:   cpuVsTinyproxyMet,
			measured: func(sp, t loadResult) bool {
				return sp.CPUPerReq > 0 && t.CPUPerReq > 0
			}})
	}
	gs = append(gs, loadGoal{clients: p50GoalClients, base: tgtBare, label: "added p50 over the bare forwarder",
		goal: "≤ +" + fmtDur(goalP50OverBare),
		ours: func(r loadResult) string { return "p50 " + fmtDur(r.P50) }, theirs: func(r loadResult) string { return "p50 " + fmtDur(r.P50) },
		ratio: func(sp, b loadResult) string { return fmtSignedDur(sp.P50 - b.P50) }, met: p50OverBareMet})
	gs = append(gs, loadGoal{clients: p99GoalClients, base: tgtDirect, label: "added p99 over direct",
		goal: "≤ +" + fmtDur(goalP99OverDirect),
		ours: func(r loadResult) string { return "p99 " + fmtDur(r.P99) }, theirs: func(r loadResult) string { return "p99 " + fmtDur(r.P99) },
		ratio: func(sp, d loadResult) string { return fmtSignedDur(sp.P99 - d.P99) }, met: p99OverDirectMet})
	if p == pathMITM && len(clients) > 0 {
		gs = append(gs, loadGoal{clients: slicesMax(clients), base: tgtMitmdump, label: "req/s vs mitmdump",
			goal: fmt.Sprintf("≥ %.0fx (issue 10)", goalRPSVsMitmdump), ours: rps, theirs: rps,
			ratio: func(sp, m loadResult) string { return ratio(sp.RPS, m.RPS) },
			met:   func(sp, m loadResult) bool { return sp.RPS >= goalRPSVsMitmdump*m.RPS }})
	}
	return gs
}

// renderLoadGoals adds a row per load goal of each path that was run:
// skewproxy's figure, the baseline's, the ratio (or difference), the goal
// and the verdict; "not measured" when a run is missing.
func (r *results) renderLoadGoals(row func(...string)) {
	for _, p := range loadPaths {
		if r.Load[p] == nil {
			continue
		}
		for _, g := range loadGoals(p, r.Clients) {
			label := fmt.Sprintf("%s, %d %s: %s", p, g.clients, plural(g.clients, "client", "clients"), g.label)
			sp, ok1 := r.load(p, tgtSkewproxy, g.clients)
			base, ok2 := r.load(p, g.base, g.clients)
			if !ok1 || !ok2 || (g.measured != nil && !g.measured(sp, base)) {
				row(label, "–", g.base+": –", "–", g.goal, notMeasured)
				continue
			}
			row(label, g.ours(sp), g.base+": "+g.theirs(base), g.ratio(sp, base), g.goal, verdict(g.met(sp, base)))
		}
	}
}

// renderLoadTable is the keep-alive load table: every target of every
// path at every client count, with skewproxy's ratios to each.
func (r *results) renderLoadTable(b *strings.Builder) {
	if len(r.Load) == 0 {
		return
	}
	row := func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	b.WriteString("\n### Keep-alive load: small signed Lambda Invokes, one request at a time per client (same run)\n\n")
	row("path", "clients", "client →", "req/s", "÷ direct", "p50", "p99", "proxy CPU/req", "skewproxy vs this row")
	row("---", "---", "---", "---", "---", "---", "---", "---", "---")
	for _, p := range loadPaths {
		for _, n := range r.Clients {
			direct, haveDirect := r.load(p, tgtDirect, n)
			sp, haveSP := r.load(p, tgtSkewproxy, n)
			for _, name := range loadTargetOrder {
				lr, ok := r.load(p, name, n)
				if !ok {
					continue
				}
				who := name
				if name == tgtTinyproxy {
					who = tinyproxyRole(p)
				}
				ofDirect, cpu, vs := "–", "–", "–"
				if haveDirect && name != tgtDirect {
					ofDirect = ratio(lr.RPS, direct.RPS)
				}
				if lr.CPUPerReq > 0 {
					cpu = fmtDur(lr.CPUPerReq)
				}
				if haveSP && name != tgtSkewproxy {
					vs = fmt.Sprintf("%s req/s; p50 %s; p99 %s", ratio(sp.RPS, lr.RPS), fmtSignedDur(sp.P50-lr.P50), fmtSignedDur(sp.P99-lr.P99))
					if sp.CPUPerReq > 0 && lr.CPUPerReq > 0 {
						vs += "; CPU/req " + ratio(float64(sp.CPUPerReq), float64(lr.CPUPerReq))
					}
				}
				row(string(p), fmt.Sprint(n), who, fmt.Sprintf("%.0f", lr.RPS), ofDirect, fmtDur(lr.P50), fmtDur(lr.P99), cpu, vs)
			}
		}
	}
}

// tinyproxyRole says what tinyproxy does on path p: on the MITM path it
// only tunnels (no TLS); on the plain path it forwards, but closes the
// client connection after each answer, so its clients open a connection
// per request and its CPU per request includes accepting it.
func tinyproxyRole(p loadPath) string {
	if p == pathMITM {
		return "tinyproxy (a blind tunnel)"
	}
	return "tinyproxy (a connection per request)"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
