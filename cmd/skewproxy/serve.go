package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	otelapi "go.opentelemetry.io/otel"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/telemetry"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

func serveCommand() *cli.Command {
	flags := append(serveFlags(), stringFlag("ca-export", "", "also write the CA certificate (never the key) to `FILE` for apps to trust"))
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy",
		Flags: flags,
		Action: func(c *cli.Context) error {
			cfg, err := serveConfig(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			cfg.CAExport = c.String("ca-export")
			log, err := newLogger(c.App.ErrWriter, cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			return serve(c.Context, cfg, log)
		},
	}
}

// serve wires the parts together and runs until ctx is done.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Telemetry is built once the clock exists; the CA and the clock report
	// to it through these late-bound hooks (set before anything is served).
	var tel *telemetry.Telemetry
	ca, err := loadCA(cfg, certs.WithCacheSize(cfg.LeafCacheSize), certs.WithLookupObserver(func(hit bool) {
		if tel != nil {
			tel.LeafCache(hit)
		}
	}))
	if err != nil {
		return err
	}
	if cfg.CAExport != "" {
		if err := exportCA(ca, cfg.CAExport); err != nil {
			return err
		}
	}
	resolver, err := proxy.ParseResolveRules(cfg.Resolve)
	if err != nil {
		return fmt.Errorf("--resolve: %w", err)
	}
	// The proxy adds every --resolve host to these patterns itself.
	intercept, err := proxy.ParseHostPatterns(cfg.Intercept)
	if err != nil {
		return fmt.Errorf("--intercept: %w", err)
	}
	if _, err := timesource.ParseSources(cfg.TimeSources); err != nil {
		return fmt.Errorf("--time-source: %w", err)
	}
	roots, err := upstreamRoots(cfg.UpstreamCA)
	if err != nil {
		return err
	}
	var upstreamProxy *url.URL
	var tunnelDial func(ctx context.Context, network, addr string) (net.Conn, error)
	if cfg.UpstreamProxy != "" {
		if upstreamProxy, err = proxy.ParseUpstreamProxy(cfg.UpstreamProxy); err != nil {
			return fmt.Errorf("--upstream-proxy: %w", err)
		}
		tunnelDial = proxy.UpstreamTunnelDialer(upstreamProxy, roots, cfg.UpstreamDialTimeout)
	} else {
		d := &net.Dialer{Timeout: cfg.UpstreamDialTimeout, KeepAlive: 30 * time.Second}
		tunnelDial = d.DialContext
	}

	creds, provider, err := signer.LoadCredentials(ctx)
	if err != nil {
		return fmt.Errorf("AWS credentials: %w", err)
	}
	sgn := signer.New(creds, signer.Options{MaxBufferedBody: cfg.MaxBodyBuffer, Logger: log, ProviderName: provider})

	clock := timesource.New(timesource.Config{
		Sources: cfg.TimeSources, HostOffset: cfg.ClockOffset, Logger: log.With("part", "timesource"),
		OnSample: func(source string, rtt time.Duration) {
			if tel != nil {
				tel.NTPSample(source, rtt)
			}
		},
	})

	otel, err := setupOTel(ctx, version)
	if err != nil {
		return fmt.Errorf("OpenTelemetry: %w", err)
	}
	otelapi.SetErrorHandler(otelapi.ErrorHandlerFunc(func(err error) { log.Warn("OpenTelemetry export", "err", err) }))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := otel.Shutdown(sctx); err != nil {
			log.Warn("OpenTelemetry shutdown", "err", err)
		}
	}()

	limiter := lambdalimit.New(lambdalimit.Config{
		MaxInflight:         cfg.LambdaMaxInflight,
		FunctionMaxInflight: cfg.LambdaFunctionInflight,
		LimitEvents:         cfg.LambdaLimitEvents,
		QueueTimeout:        cfg.LambdaQueueTimeout,
		MaxQueue:            cfg.LambdaMaxQueue,
		Logger:              log.With("part", "lambda"),
	})
	tel, err = telemetry.New(telemetry.Options{
		TracerProvider: otel.TracerProvider,
		MeterProvider:  otel.MeterProvider,
		Clock:          clock,
		LambdaInflight: limiter.Inflight,
		Logger:         log,
	})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	p := &proxy.Proxy{
		Signer:    sgn,
		Clock:     clock,
		Intercept: intercept,
		Resolve:   resolver,
		Transport: proxy.NewTransport(proxy.TransportOptions{
			RootCAs:               roots,
			UpstreamProxy:         upstreamProxy,
			Resolver:              resolver,
			DialTimeout:           cfg.UpstreamDialTimeout,
			ResponseHeaderTimeout: cfg.UpstreamResponseHeaderTimeout,
		}),
		TunnelDial:   tunnelDial,
		Admitter:     limiter,
		Observer:     tel,
		CA:           ca,
		Logger:       log,
		ProxyAuth:    cfg.ProxyAuth,
		RetryOnSkew:  cfg.RetryOnSkew,
		RequireSync:  cfg.RequireSync,
		DrainTimeout: cfg.DrainTimeout,

		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		MaxClientConns:    cfg.MaxClientConns,
	}

	extra := map[string]http.Handler{"/presign": presignHandler(sgn, clock, log)}
	if cfg.Pprof {
		extra["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		extra["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
		extra["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		extra["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		extra["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
	}
	admin := proxy.NewAdminHandler(proxy.AdminOptions{
		Clock:   clock,
		Lambda:  func() any { return limiter.Status() },
		Metrics: otel.Metrics,
		Extra:   extra,
		// /readyz stays 200 while any source keeps the uncertainty below
		// this: after the last NTP answer the drift allowance (15 ppm)
		// reaches it after ~46 days, and any AWS answer's Date header
		// refreshes it; AWS itself allows 5 minutes of skew.
		MaxUncertainty: readyMaxUncertainty,
	})

	proxyLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("--admin-listen: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := clock.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("time sources stopped", "err", err)
		}
	}()

	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	adminDone := make(chan error, 1)
	go func() { adminDone <- adminSrv.Serve(adminLn) }()

	log.Info("skewproxy serving",
		"listen", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "version", version,
		"credentials_from", provider, "time_sources", cfg.TimeSources, "clock_offset", cfg.ClockOffset.String(),
		"state_dir", cfg.StateDir)

	err = p.Serve(ctx, proxyLn)
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if serr := adminSrv.Shutdown(sctx); serr != nil {
		log.Warn("admin shutdown", "err", serr)
	}
	<-adminDone
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("skewproxy stopped")
	return nil
}

// readyMaxUncertainty is the clock uncertainty beyond which /readyz says
// 503 (see proxy.AdminOptions.MaxUncertainty).
const readyMaxUncertainty = time.Minute

// upstreamRoots is the system roots plus --upstream-ca.
func upstreamRoots(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if file == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--upstream-ca %s: no PEM certificate found", file)
	}
	return pool, nil
}
