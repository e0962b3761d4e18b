package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// idleResult is the idle-connection row: the proxy's resident memory
// before and after n intercepted connections were opened and left silent.
type idleResult struct {
	Conns      int
	BeforeKiB  int64
	AfterKiB   int64
	PerConnKiB float64
	Opening    time.Duration // time to open them all
}

// runIdle starts a fresh skewproxy, makes one request through it (so the
// leaf, upstream pool and code pages are in), reads its VmRSS, then opens
// cfg.IdleConns connections — CONNECT to the Lambda host, TLS handshake
// with the proxy's leaf (resumed where possible), no request — and reads
// VmRSS again while they are all open.
func runIdle(ctx context.Context, cfg suiteConfig, dir string, ep *endpointProc, res *results, logf func(string, ...any)) error {
	n := cfg.IdleConns
	if n < 1 {
		return errors.New("no idle connections asked for")
	}
	sp, err := startSkewproxy(cfg.Skewproxy, filepath.Join(dir, "skewproxy-idle"), proxyCreds,
		"--resolve", lambdaHost+":443=https://"+ep.Addr, "--upstream-ca", ep.CAFile,
		"--max-client-conns", strconv.Itoa(n+1024), "--pprof")
	if err != nil {
		return err
	}
	defer sp.Stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	tlsCfg := &tls.Config{RootCAs: sp.CAPool, NextProtos: []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	dial := connectDialer(sp.ProxyURL.Host)
	hdr, err := signedInvokeHeaders(lambdaHost, time.Now())
	if err != nil {
		return err
	}
	warm, err := handshake(ctx, dial, lambdaHost, tlsCfg)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	err = invokeOn(warm, lambdaHost, hdr)
	warm.Close()
	if err != nil {
		return fmt.Errorf("warm-up request: %w", err)
	}
	time.Sleep(time.Second)
	before, err := procStatusKiB(sp.Pid(), "VmRSS")
	if err != nil {
		return err
	}

	conns := make([]net.Conn, 0, n)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan struct{})
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := handshake(ctx, dial, lambdaHost, tlsCfg)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	opening := time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("opened %d of %d idle connections: %w", len(conns), n, firstErr)
	}
	time.Sleep(2 * time.Second) // let the proxy settle on every connection
	after, err := procStatusKiB(sp.Pid(), "VmRSS")
	if err != nil {
		return err
	}
	if cfg.ProfileDir != "" { // where the memory of idle connections goes
		path := filepath.Join(cfg.ProfileDir, "skewproxy-idle-heap.pprof")
		if err := sp.fetchProfile(ctx, "heap", path, time.Minute); err != nil {
			res.Notes = append(res.Notes, "idle heap profile: "+err.Error())
		} else {
			res.IdleProfile = path
		}
	}
	res.Idle = &idleResult{Conns: len(conns), BeforeKiB: before, AfterKiB: after,
		PerConnKiB: float64(after-before) / float64(len(conns)), Opening: opening}
	logf("idle: %d connections in %v, proxy RSS %d -> %d KiB (%.1f KiB/conn)", len(conns), opening.Round(time.Millisecond), before, after, res.Idle.PerConnKiB)
	return nil
}
