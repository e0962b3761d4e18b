package main

// The gateway footprint: release binary sizes, the proxy's resident memory
// idle and at a steady 100 req/s, and its CPU per request at that rate on
// this machine (native) and for the ARM builds under qemu-user (emulated:
// a ratio for information, not a device figure).

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// footprintRun is one binary to measure, natively or under an emulator.
type footprintRun struct {
	Name string   // "amd64", "arm64", "armv7"
	Bin  string   // the built binary
	QEMU string   // qemu-user emulator for ARM builds; "" = native
	Argv []string // resolved command prefix (emulator, binary)
}

// footprintResult is one binary's figures.
type footprintResult struct {
	Name      string
	Emulated  string // emulator name, or "" when native
	SizeBytes int64
	// IdleRSSKiB is VmRSS after a warm-up and footprintIdle of silence;
	// LoadRSSKiB the largest VmRSS sampled under the paced load.
	IdleRSSKiB, LoadRSSKiB int64
	Rate                   float64       // requests completed per second under the paced load
	CPUPerReq              time.Duration // user + system CPU per completed request
	Errors                 int           // failed requests
	Late                   int           // requests not started: 64 were still in flight
	FirstErr               string
}

// footprintIdle is how long the proxy stays silent before idle RSS is read.
const footprintIdle = 3 * time.Second

// runFootprint measures each binary in turn against the endpoint.
func runFootprint(ctx context.Context, cfg suiteConfig, dir string, ep *endpointProc, res *results, logf func(string, ...any)) {
	runs := []footprintRun{{Name: "amd64", Bin: cfg.Skewproxy}}
	for _, a := range []struct{ name, bin, qemu string }{
		{"arm64", cfg.ARM64, "qemu-aarch64-static"},
		{"armv7", cfg.ARMv7, "qemu-arm-static"},
	} {
		if a.bin != "" {
			runs = append(runs, footprintRun{Name: a.name, Bin: a.bin, QEMU: a.qemu})
		}
	}
	for _, r := range runs {
		fr := footprintResult{Name: r.Name, Emulated: r.QEMU}
		if st, err := os.Stat(r.Bin); err == nil {
			fr.SizeBytes = st.Size()
		}
		r.Argv = []string{r.Bin}
		if r.QEMU != "" {
			q, err := exec.LookPath(r.QEMU)
			if err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("footprint %s: %s not found (Debian qemu-user-static); size only", r.Name, r.QEMU))
				res.Footprint = append(res.Footprint, fr)
				continue
			}
			r.Argv = []string{q, r.Bin}
		}
		if err := measureFootprint(ctx, cfg, dir, ep, r, &fr); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("footprint %s: %v", r.Name, err))
			logf("footprint %s: %v", r.Name, err)
		} else {
			logf("footprint %-5s %s: idle RSS %.1f MiB, at %.0f req/s RSS %.1f MiB, CPU %v/req, %d errors, %d late",
				r.Name, map[bool]string{true: "(" + r.QEMU + ")", false: "(native)"}[r.QEMU != ""],
				float64(fr.IdleRSSKiB)/1024, fr.Rate, float64(fr.LoadRSSKiB)/1024, fr.CPUPerReq, fr.Errors, fr.Late)
		}
		if fr.Errors > 0 || fr.Late > 0 {
			note := fmt.Sprintf("footprint %s: %d requests failed, %d not sent (64 were in flight: the proxy fell behind the pace)", r.Name, fr.Errors, fr.Late)
			if fr.FirstErr != "" {
				note += "; first error: " + fr.FirstErr
			}
			res.Notes = append(res.Notes, note)
		}
		res.Footprint = append(res.Footprint, fr)
	}
}

// measureFootprint runs one proxy: warm-up, idle RSS, then the paced load.
func measureFootprint(ctx context.Context, cfg suiteConfig, dir string, ep *endpointProc, r footprintRun, fr *footprintResult) error {
	sp, err := startSkewproxyCmd(r.Argv, filepath.Join(dir, "skewproxy-footprint-"+r.Name), proxyCreds,
		"--resolve", lambdaHost+":443=https://"+ep.Addr, "--upstream-ca", ep.CAFile)
	if err != nil {
		return err
	}
	defer sp.Stop()
	t := target{Name: "skewproxy-" + r.Name, URL: "https://" + lambdaHost + invokePath, Proxy: sp.ProxyURL, Roots: sp.CAPool}
	// Warm up: the leaf certificate, the upstream connection, the code
	// paths (and, under qemu, their translation).
	if p := runPaced(ctx, t, 20, time.Second, nil); p.ok == 0 {
		return fmt.Errorf("warm-up: no request succeeded (%d errors; first: %v)", p.errs, p.firstErr)
	}
	time.Sleep(footprintIdle)
	if fr.IdleRSSKiB, err = procStatusKiB(sp.Pid(), "VmRSS"); err != nil {
		return err
	}
	cpu0, err := procCPU(sp.Pid())
	if err != nil {
		return err
	}
	start := time.Now()
	p := runPaced(ctx, t, cfg.FootprintRate, cfg.FootprintDuration, func() {
		if rss, err := procStatusKiB(sp.Pid(), "VmRSS"); err == nil {
			fr.LoadRSSKiB = max(fr.LoadRSSKiB, rss)
		}
	})
	elapsed := time.Since(start)
	cpu1, err := procCPU(sp.Pid())
	if err != nil {
		return err
	}
	fr.Errors, fr.Late = p.errs, p.late
	if p.firstErr != nil {
		fr.FirstErr = p.firstErr.Error()
	}
	if p.ok == 0 {
		return fmt.Errorf("no request succeeded (%d errors; first: %v)", p.errs, p.firstErr)
	}
	fr.Rate = float64(p.ok) / elapsed.Seconds()
	fr.CPUPerReq = (cpu1 - cpu0) / time.Duration(p.ok)
	return nil
}

// pacedResult counts a paced run's requests.
type pacedResult struct {
	ok, errs, late int
	firstErr       error
}

// runPaced sends rate requests per second for dur (open loop: one request
// starts every 1/rate whether or not earlier ones finished, up to 64 at
// once; beyond, the request is counted late and not sent) and calls sample
// every 500 ms.
func runPaced(ctx context.Context, t target, rate int, dur time.Duration, sample func()) pacedResult {
	var res pacedResult
	u, err := url.Parse(t.URL)
	if err != nil {
		res.firstErr = err
		return res
	}
	hdr, err := signedInvokeHeaders(u.Host, time.Now())
	if err != nil {
		res.firstErr = err
		return res
	}
	const maxInflight = 64
	tr := newClientTransport(t, maxInflight)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()

	if sample != nil {
		// The sampler has stopped when runPaced returns.
		stop, stopped := make(chan struct{}), make(chan struct{})
		defer func() { close(stop); <-stopped }()
		go func() {
			defer close(stopped)
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					sample()
				case <-stop:
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxInflight)
	// Request i starts at start + i/rate: a late loop catches up instead of
	// dropping ticks as a time.Ticker would.
	interval := time.Second / time.Duration(max(rate, 1))
	start := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= dur {
			break
		}
		time.Sleep(time.Until(at))
		select {
		case slots <- struct{}{}:
		default:
			mu.Lock()
			res.late++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			rerr := doInvoke(ctx, client, t.URL, u.Host, hdr)
			mu.Lock()
			defer mu.Unlock()
			if rerr != nil {
				res.errs++
				if res.firstErr == nil {
					res.firstErr = rerr
				}
				return
			}
			res.ok++
		}()
	}
	wg.Wait()
	return res
}
