package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// suiteConfig is `skewbench run`'s flags.
type suiteConfig struct {
	Skewproxy   string
	GoBench     string
	Out         string
	ProfileDir  string
	Warmup      time.Duration
	Duration    time.Duration
	Clients     []int
	Handshakes  int
	UploadBytes int64
	IdleConns   int
	Skip        map[string]bool
	// The footprint part: ARM builds to size and run under qemu-user, and
	// the paced load's rate and duration.
	ARM64, ARMv7      string
	FootprintRate     int
	FootprintDuration time.Duration
}

// proxyCreds are the "real" keys the proxy under test holds for the
// Lambda-like endpoint (which only checks that they were used).
var proxyCreds = aws.Credentials{AccessKeyID: "AKIDSKEWBENCHPROXY", SecretAccessKey: "skewbench-proxy-secret"}

func parseSuiteFlags(args []string) (suiteConfig, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	c := suiteConfig{Skip: map[string]bool{}}
	fs.StringVar(&c.Skewproxy, "skewproxy", "bin/skewproxy", "the built skewproxy binary")
	fs.StringVar(&c.GoBench, "gobench", "", "output of `go test -bench -benchmem` for the signer and leaf rows")
	fs.StringVar(&c.Out, "out", filepath.Join(os.TempDir(), "skewbench-results.md"), "also write the table here")
	fs.StringVar(&c.ProfileDir, "profile-dir", "", "take a CPU profile of skewproxy (serve --pprof) during the largest keep-alive run into this dir")
	fs.DurationVar(&c.Warmup, "warmup", 500*time.Millisecond, "unrecorded warm-up before each load run")
	fs.DurationVar(&c.Duration, "duration", 3*time.Second, "recorded duration of each load run")
	clients := fs.String("clients", "1,16,64", "concurrent keep-alive clients per load run")
	fs.IntVar(&c.Handshakes, "handshakes", 100, "handshakes timed per handshake row")
	size := fs.String("upload-size", "1GiB", "bytes per upload (B, KiB, MiB, GiB suffixes)")
	fs.IntVar(&c.IdleConns, "idle-conns", 10000, "idle intercepted connections to hold open")
	fs.StringVar(&c.ARM64, "arm64", "", "linux/arm64 build of skewproxy: its size, and its CPU per request under qemu-aarch64-static")
	fs.StringVar(&c.ARMv7, "armv7", "", "linux/arm/v7 build of skewproxy: its size (goal ≤ 16 MiB), and its CPU per request under qemu-arm-static")
	fs.IntVar(&c.FootprintRate, "footprint-rate", 100, "requests per second of the footprint's paced load")
	fs.DurationVar(&c.FootprintDuration, "footprint-duration", 10*time.Second, "duration of the footprint's paced load")
	skip := fs.String("skip", "", "comma-separated parts to skip: load, handshake, upload, idle, footprint")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("--clients %q: want positive numbers", *clients)
		}
		c.Clients = append(c.Clients, n)
	}
	var err error
	if c.UploadBytes, err = parseSize(*size); err != nil {
		return c, fmt.Errorf("--upload-size: %w", err)
	}
	for _, s := range strings.Split(*skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Skip[s] = true
		}
	}
	return c, nil
}

// parseSize parses "1GiB", "64MiB", "512KiB", "100B" or a plain number.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional B/KiB/MiB/GiB suffix", s)
	}
	return n * mult, nil
}

// runSuite is `skewbench run`: every measurement, then the table.
func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSuiteFlags(args)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Skewproxy); err != nil {
		return fmt.Errorf("--skewproxy: %w (build it with `make build`)", err)
	}
	dir, err := os.MkdirTemp("", "skewbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "skewbench: "+format+"\n", a...)
	}

	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return fmt.Errorf("--profile-dir: %w", err)
		}
	}
	res := &results{Clients: cfg.Clients, UploadBytes: cfg.UploadBytes}
	if cfg.GoBench != "" {
		b, err := os.ReadFile(cfg.GoBench)
		if err != nil {
			return fmt.Errorf("--gobench: %w", err)
		}
		res.GoBench = parseGoBench(string(b))
	}

	ep, err := startEndpointProc(dir)
	if err != nil {
		return err
	}
	defer ep.Stop()
	logf("endpoint https://%s", ep.Addr)

	if !cfg.Skip["load"] || !cfg.Skip["handshake"] {
		if err := runProxyParts(ctx, cfg, dir, ep, res, logf); err != nil {
			return err
		}
	}
	if !cfg.Skip["upload"] {
		if err := runUploads(ctx, cfg, dir, res, logf); err != nil {
			res.Notes = append(res.Notes, "uploads failed: "+err.Error())
			logf("uploads failed: %v", err)
		}
	}
	if !cfg.Skip["footprint"] {
		runFootprint(ctx, cfg, dir, ep, res, logf)
	}
	if !cfg.Skip["idle"] {
		if err := runIdle(ctx, cfg, dir, ep, res, logf); err != nil {
			res.Notes = append(res.Notes, "idle connections failed: "+err.Error())
			logf("idle connections failed: %v", err)
		}
	}

	table := res.render()
	fmt.Fprint(stdout, table)
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, []byte(table), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		fmt.Fprintf(stdout, "\ntable written to %s\n", cfg.Out)
	}
	return nil
}

// runProxyParts measures keep-alive load on both paths (direct, the bare
// forwarder, skewproxy, tinyproxy, mitmdump) and handshakes through one
// skewproxy.
func runProxyParts(ctx context.Context, cfg suiteConfig, dir string, ep *endpointProc, res *results, logf func(string, ...any)) error {
	sp, err := startSkewproxy(cfg.Skewproxy, filepath.Join(dir, "skewproxy-load"), proxyCreds,
		"--resolve", lambdaHost+":443=https://"+ep.Addr,
		"--resolve", "*."+lambdaHost+":443=https://"+ep.Addr,
		"--resolve", lambdaHost+":80=http://"+ep.PlainAddr,
		"--upstream-ca", ep.CAFile, "--pprof")
	if err != nil {
		return err
	}
	defer sp.Stop()
	logf("skewproxy %s (pid %d)", sp.ProxyURL, sp.Pid())

	if !cfg.Skip["load"] {
		targets, stop := loadTargets(cfg, dir, ep, sp, res, logf)
		defer stop()
		res.Load = map[loadPath]map[string]map[int]loadResult{}
		res.Profiles = map[loadPath]string{}
		maxClients := slicesMax(cfg.Clients)
		for _, n := range cfg.Clients {
			for _, t := range targets {
				profDone := make(chan error, 1)
				profiling := t.Name == tgtSkewproxy && n == maxClients && cfg.ProfileDir != ""
				profPath := filepath.Join(cfg.ProfileDir, profileName(t.Path))
				if profiling {
					go func() {
						time.Sleep(cfg.Warmup)
						profDone <- sp.cpuProfile(ctx, int(math.Ceil(cfg.Duration.Seconds())), profPath)
					}()
				}
				r, err := runLoad(ctx, t, n, cfg.Warmup, cfg.Duration)
				if profiling {
					if perr := <-profDone; perr != nil {
						res.Notes = append(res.Notes, "CPU profile: "+perr.Error())
					} else {
						res.Profiles[t.Path] = profPath
					}
				}
				if err != nil {
					res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", t.Path, err))
					logf("%s: %v", t.Path, err)
					continue
				}
				res.setLoad(t.Path, t.Name, n, r)
				logf("%-5s %-14s c=%-3d %8.0f req/s  p50 %v  p99 %v  proxy CPU/req %v  errors %d", t.Path.short(), t.Name, n, r.RPS, r.P50, r.P99, r.CPUPerReq, r.Errors)
				if r.Errors > 0 {
					res.Notes = append(res.Notes, fmt.Sprintf("%s, %s, %d clients: %d errors, first: %s", t.Path, t.Name, n, r.Errors, r.FirstErr))
				}
			}
		}
		// Every request of the skewproxy runs, re-signed or not (the
		// endpoint counts them by targetHeader).
		if counts, err := ep.Counts(ctx); err != nil {
			res.Notes = append(res.Notes, err.Error())
		} else {
			for _, t := range targets {
				if t.Name == tgtSkewproxy {
					c := counts.Targets[t.label()]
					res.ProxySigned += c.ProxySigned
					res.ProxyNotResigned += c.Other
				}
			}
		}
	}
	if !cfg.Skip["handshake"] {
		h, err := measureHandshakes(ctx, sp, ep, cfg.Handshakes)
		if err != nil {
			res.Notes = append(res.Notes, "handshakes: "+err.Error())
			logf("handshakes: %v", err)
		} else {
			res.Handshake = h
		}
	}
	return nil
}

// profileName is the CPU profile file of skewproxy on path p (the MITM
// one keeps the name it had before the plain path existed).
func profileName(p loadPath) string {
	if p == pathPlain {
		return "skewproxy-plain-cpu.pprof"
	}
	return "skewproxy-cpu.pprof"
}

// loadTargets starts the bare forwarder, tinyproxy and mitmdump and returns
// the load targets of both paths (less those --skip plain / --skip mitm
// names), in the table's row order; stop ends the peers. A peer that does
// not start is a note, and its rows are missing.
func loadTargets(cfg suiteConfig, dir string, ep *endpointProc, sp *skewproxyProc, res *results, logf func(string, ...any)) (targets []target, stop func()) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	_, epPort, _ := strings.Cut(ep.Addr, ":")
	port, _ := strconv.Atoi(epPort)
	peer := func(name string, p *peerProxy, err error) *peerProxy {
		if err != nil {
			res.Notes = append(res.Notes, name+": "+err.Error())
			logf("%s: %v", name, err)
			return nil
		}
		stops = append(stops, p.Stop)
		logf("%s %s (pid %d)", name, p.URL, p.Pid())
		return p
	}
	bp, err := startBareProxy(dir, ep)
	bare := peer(tgtBare, bp, err)
	tp, err := startTinyproxy(dir, port)
	tiny := peer(tgtTinyproxy, tp, err)
	mp, err := startMitmdump(dir)
	mitm := peer(tgtMitmdump, mp, err)

	via := func(t target, p *peerProxy) []target {
		if p == nil {
			return nil
		}
		t.Proxy, t.CPUPid = p.URL, p.Pid()
		if p.CAPool != nil && t.Roots == nil {
			t.Roots = p.CAPool
		}
		return []target{t}
	}
	if !cfg.Skip["mitm"] {
		// tinyproxy and mitmdump are asked to CONNECT to the endpoint's
		// address; the bare forwarder and skewproxy to the Lambda host
		// (their --resolve rules send it to the endpoint).
		direct := target{Path: pathMITM, Name: tgtDirect, URL: "https://" + ep.Addr + invokePath, Host: lambdaHost, ServerName: lambdaHost, Roots: ep.Pool}
		byHost := target{Path: pathMITM, URL: "https://" + lambdaHost + invokePath}
		intercepted := direct // by mitmdump, whose CA via() puts in Roots
		intercepted.Roots = nil
		targets = append(targets, direct)
		targets = append(targets, via(named(byHost, tgtBare), bare)...)
		targets = append(targets, target{Path: pathMITM, Name: tgtSkewproxy, URL: byHost.URL, Proxy: sp.ProxyURL, Roots: sp.CAPool, CPUPid: sp.Pid()})
		targets = append(targets, via(named(direct, tgtTinyproxy), tiny)...) // a blind tunnel: the endpoint's own certificate
		targets = append(targets, via(named(intercepted, tgtMitmdump), mitm)...)
	}
	if !cfg.Skip["plain"] {
		// Absolute-form http:// requests: to the Lambda host for the bare
		// forwarder and skewproxy (their --resolve rules send it to the
		// endpoint's plain address), to that address for tinyproxy and
		// mitmdump. Those two get no Host override: Go writes req.Host into
		// the absolute-form request line, and they would dial the real
		// Lambda host. tinyproxy closes the client connection after each
		// answer: a new connection per request.
		direct := target{Path: pathPlain, Name: tgtDirect, URL: "http://" + ep.PlainAddr + invokePath, Host: lambdaHost}
		byHost := target{Path: pathPlain, URL: "http://" + lambdaHost + invokePath}
		byAddr := target{Path: pathPlain, URL: direct.URL}
		tt := named(byAddr, tgtTinyproxy)
		tt.NoKeepAlive = true
		targets = append(targets, direct)
		targets = append(targets, via(named(byHost, tgtBare), bare)...)
		targets = append(targets, target{Path: pathPlain, Name: tgtSkewproxy, URL: byHost.URL, Proxy: sp.ProxyURL, CPUPid: sp.Pid()})
		targets = append(targets, via(tt, tiny)...)
		targets = append(targets, via(named(byAddr, tgtMitmdump), mitm)...)
	}
	return targets, stop
}

func named(t target, name string) target {
	t.Name = name
	return t
}

func slicesMax(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
