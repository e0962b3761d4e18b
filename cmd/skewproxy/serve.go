package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/urfave/cli/v2"
	otelapi "go.opentelemetry.io/otel"

	"github.com/skewproxy/skewproxy/proxy"
	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet"
	"github.com/skewproxy/skewproxy/proxy/telemetry"
	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/signer/iotcreds"
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

// serve wires the parts together and runs until ctx is done. The corrected
// clock is built first and handed to everything that judges wall time
// (upstream TLS, credential expiry, span and log timestamps, Retry-After
// dates): it is the process's only wall clock.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	stamp := &logClock{}
	log = slog.New(stamp.wrap(log.Handler()))

	// Telemetry is built once the clock exists; the CA and the clock report
	// to it through these late-bound hooks (set before anything is served).
	var tel *telemetry.Telemetry
	clock, err := newClock(cfg, log, func(source string, rtt time.Duration) {
		if tel != nil {
			tel.NTPSample(source, rtt)
		}
	})
	if err != nil {
		return err
	}
	stamp.use(clock.Now)

	ca, err := loadCA(cfg, certs.WithCacheSize(cfg.LeafCacheSize), certs.WithClock(clock.Now), certs.WithLookupObserver(func(hit bool) {
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
	roots, err := upstreamRoots(cfg.UpstreamCA)
	if err != nil {
		return err
	}
	sgn, provider, err := newSigner(ctx, cfg, clock, log, func(err error) {
		if tel != nil {
			tel.CredentialsFetch(err)
		}
	})
	if err != nil {
		return err
	}

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

	lambda, err := newLambdaAdmission(cfg, clock.Now, roots, log.With("part", "lambda"))
	if err != nil {
		return err
	}
	defer lambda.close()
	limiter := lambda.limiter
	tel, err = telemetry.New(telemetry.Options{
		TracerProvider:        otel.TracerProvider,
		MeterProvider:         otel.MeterProvider,
		Clock:                 clock,
		LambdaInflight:        limiter.Inflight,
		LambdaCoordinatorMode: lambda.mode(),
		LambdaCoordinating:    limiter.Coordinating,
		Logger:                log,
	})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	lambda.tel.Store(tel)

	p, err := newProxy(cfg, proxyParts{clock: clock, signer: sgn, roots: roots, limiter: limiter, observer: tel, ca: ca, log: log})
	if err != nil {
		return err
	}
	admin := newAdmin(cfg, clock, sgn, lambda, otel.Metrics, log)
	return runServers(ctx, cfg, clock, p, admin, provider, log)
}

// runServers listens on --listen and --admin-listen, runs the time sources, and
// serves until ctx is done; then the proxy drains and the admin server
// shuts down (bounded).
func runServers(ctx context.Context, cfg Config, clock *timesource.Corrected, p *proxy.Proxy, admin http.Handler, provider string, log *slog.Logger) error {
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

// newClock builds the corrected clock from --time-source and
// --clock-offset, refusing any time before this binary was built.
func newClock(cfg Config, log *slog.Logger, onSample func(string, time.Duration)) (*timesource.Corrected, error) {
	if _, err := timesource.ParseSources(cfg.TimeSources); err != nil {
		return nil, fmt.Errorf("--time-source: %w", err)
	}
	return timesource.New(timesource.Config{
		Sources:    cfg.TimeSources,
		HostOffset: cfg.ClockOffset,
		NotBefore:  buildTime(),
		Logger:     log.With("part", "timesource"),
		OnSample:   onSample,
	}), nil
}

// newSigner loads the proxy's credentials on the corrected clock: their
// expiry is judged by it, and the providers' own HTTPS (STS, SSO, the AWS
// IoT credentials provider) verifies certificates by it. With --iot-* the
// credentials come from AWS IoT Core, else from the standard chain.
func newSigner(ctx context.Context, cfg Config, clock *timesource.Corrected, log *slog.Logger, onFetch func(error)) (*signer.Signer, string, error) {
	cache := signer.CredentialsCacheOptions{Now: clock.Now, OnFetch: onFetch}
	var creds *signer.CredentialsCache
	var provider string
	if cfg.IoT.Enabled() {
		iot, err := iotcreds.New(iotcreds.Options{
			Endpoint: cfg.IoT.Endpoint, RoleAlias: cfg.IoT.RoleAlias, ThingName: cfg.IoT.ThingName,
			CertFile: cfg.IoT.Cert, KeyFile: cfg.IoT.Key, CAFile: cfg.IoT.CA,
			Now: clock.Now, DialTimeout: cfg.UpstreamDialTimeout,
		})
		if err != nil {
			return nil, "", fmt.Errorf("AWS IoT credentials (--iot-*): %w", err)
		}
		cache.ExpiryWindowJitterFrac = 0.2 // as LoadCredentials: a fleet does not refresh in step
		creds, provider = signer.NewCredentialsCache(iot, cache), iot.Name()
	} else {
		var err error
		creds, provider, err = signer.LoadCredentials(ctx, signer.CredentialsOptions{Cache: cache, HTTPClient: sdkHTTPClient(clock.Now)})
		if err != nil {
			return nil, "", fmt.Errorf("AWS credentials: %w", err)
		}
	}
	return signer.New(creds, signer.Options{MaxBufferedBody: cfg.MaxBodyBuffer, Logger: log, ProviderName: provider}), provider, nil
}

// sdkHTTPClient is the HTTP client the AWS SDK's credential providers use:
// the SDK's default transport, with certificate validity judged by now.
func sdkHTTPClient(now func() time.Time) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, Time: now}
		}
		t.TLSClientConfig.Time = now
	})
}

// proxyParts are the pieces newProxy wires into the proxy.
type proxyParts struct {
	clock    *timesource.Corrected
	signer   *signer.Signer
	roots    *x509.CertPool
	limiter  *lambdalimit.Limiter
	observer proxy.Observer
	ca       *certs.Authority
	log      *slog.Logger
}

// newProxy builds the proxy from the configuration and its parts.
func newProxy(cfg Config, parts proxyParts) (*proxy.Proxy, error) {
	resolver, err := proxy.ParseResolveRules(cfg.Resolve)
	if err != nil {
		return nil, fmt.Errorf("--resolve: %w", err)
	}
	// The proxy adds every --resolve host to these patterns itself.
	intercept, err := proxy.ParseHostPatterns(cfg.Intercept)
	if err != nil {
		return nil, fmt.Errorf("--intercept: %w", err)
	}
	var upstreamProxy *url.URL
	var tunnelDial func(ctx context.Context, network, addr string) (net.Conn, error)
	if cfg.UpstreamProxy != "" {
		if upstreamProxy, err = proxy.ParseUpstreamProxy(cfg.UpstreamProxy); err != nil {
			return nil, fmt.Errorf("--upstream-proxy: %w", err)
		}
		tunnelDial = proxy.UpstreamTunnelDialer(upstreamProxy, parts.roots, parts.clock.Now, cfg.UpstreamDialTimeout)
	} else {
		d := &net.Dialer{Timeout: cfg.UpstreamDialTimeout, KeepAlive: 30 * time.Second}
		tunnelDial = d.DialContext
	}
	return &proxy.Proxy{
		Signer:    parts.signer,
		Clock:     parts.clock,
		Intercept: intercept,
		Resolve:   resolver,
		Transport: proxy.NewTransport(proxy.TransportOptions{
			RootCAs:               parts.roots,
			UpstreamProxy:         upstreamProxy,
			Resolver:              resolver,
			DialTimeout:           cfg.UpstreamDialTimeout,
			ResponseHeaderTimeout: cfg.UpstreamResponseHeaderTimeout,
			Now:                   parts.clock.Now,
		}),
		TunnelDial:        tunnelDial,
		TimeBootstrap:     newTimeBootstrap(cfg, parts),
		Admitter:          parts.limiter,
		Observer:          parts.observer,
		CA:                parts.ca,
		Logger:            parts.log,
		ProxyAuth:         cfg.ProxyAuth,
		RetryOnSkew:       cfg.RetryOnSkew,
		RequireSync:       cfg.RequireSync,
		Allow:             proxy.Allowlist{Services: cfg.AllowServices, Regions: cfg.AllowRegions},
		UpstreamPlainHTTP: cfg.UpstreamPlainHTTP,
		DrainTimeout:      cfg.DrainTimeout,

		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		MaxClientConns:    cfg.MaxClientConns,
	}, nil
}

// newTimeBootstrap is the HTTPS Date bootstrap: with no time source
// answering, the first intercepted host's Date sets the clock (README: "A
// gateway that boots at 1970"). The probe dials directly, never through
// --upstream-proxy. nil with --no-time-bootstrap.
func newTimeBootstrap(cfg Config, parts proxyParts) proxy.TimeBootstrapper {
	if cfg.NoTimeBootstrap {
		return nil
	}
	return timesource.NewBootstrapper(parts.clock, timesource.DateProbe{
		Dial:  (&net.Dialer{Timeout: cfg.UpstreamDialTimeout}).DialContext,
		Roots: parts.roots,
	}, 0, parts.log.With("part", "timesource"))
}

// newAdmin builds the admin handler: health, readiness, status, metrics,
// presign and (with --pprof) the profiler.
func newAdmin(cfg Config, clock *timesource.Corrected, sgn *signer.Signer, lambda *lambdaAdmission, metrics http.Handler, log *slog.Logger) http.Handler {
	extra := map[string]http.Handler{"/presign": presignHandler(sgn, clock, log)}
	if cfg.Pprof {
		extra["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		extra["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
		extra["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		extra["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		extra["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
	}
	return proxy.NewAdminHandler(proxy.AdminOptions{
		Clock:       clock,
		Lambda:      lambda.status,
		ReadyDetail: lambda.readyDetail,
		Metrics:     metrics,
		Extra:       extra,
		// /readyz stays 200 while any source keeps the uncertainty below
		// this: after the last NTP answer the drift allowance (15 ppm)
		// reaches it after ~46 days, and any AWS answer's Date header
		// refreshes it; AWS itself allows 5 minutes of skew.
		MaxUncertainty: readyMaxUncertainty,
	})
}

// readyMaxUncertainty is the clock uncertainty beyond which /readyz says
// 503 (see proxy.AdminOptions.MaxUncertainty).
const readyMaxUncertainty = time.Minute

// lambdaAdmission is the Lambda invoke limiter and, with
// --lambda-coordinator, the fleet coordinator that makes its limits
// fleet-wide.
type lambdaAdmission struct {
	limiter *lambdalimit.Limiter
	coord   *fleet.Coordinator // nil without --lambda-coordinator
	// tel receives the coordinator's measurements once telemetry exists
	// (the coordinator starts reporting before).
	tel atomic.Pointer[telemetry.Telemetry]
}

// newLambdaAdmission builds the limiter, and the coordinator first when
// one is configured. Redis not answering does not stop the proxy: the
// coordinator starts in its fallback and keeps probing.
func newLambdaAdmission(cfg Config, now func() time.Time, roots *x509.CertPool, log *slog.Logger) (*lambdaAdmission, error) {
	a := &lambdaAdmission{}
	lcfg := lambdalimit.Config{
		MaxInflight:         cfg.LambdaMaxInflight,
		FunctionMaxInflight: cfg.LambdaFunctionInflight,
		LimitEvents:         cfg.LambdaLimitEvents,
		QueueTimeout:        cfg.LambdaQueueTimeout,
		MaxQueue:            cfg.LambdaMaxQueue,
		Clock:               now,
		Logger:              log,
	}
	if lc := cfg.LambdaCoordinator; lc.URL != "" {
		coord, err := fleet.New(fleet.Config{
			URL:                 lc.URL,
			Password:            lc.Password,
			Namespace:           lc.Namespace,
			MaxInflight:         cfg.LambdaMaxInflight,
			FunctionMaxInflight: cfg.LambdaFunctionInflight,
			FailClosed:          lc.FailClosed,
			FleetSize:           lc.FleetSize,
			LeaseTTL:            lc.LeaseTTL,
			Timeout:             lc.Timeout,
			RetryAfterCap:       max(cfg.LambdaQueueTimeout, time.Second),
			Clock:               now,
			RootCAs:             roots,
			Logger:              log,
			OnRoundTrip: func(op string, d time.Duration, err error) {
				if t := a.tel.Load(); t != nil {
					t.CoordinatorRoundTrip(op, d, err)
				}
			},
			OnWait: func(d time.Duration) {
				if t := a.tel.Load(); t != nil {
					t.CoordinationWait(d)
				}
			},
			OnModeChange: func(m lambdalimit.Mode) {
				if t := a.tel.Load(); t != nil {
					t.CoordinatorModeChanged(m.String())
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("--lambda-coordinator: %w", err)
		}
		a.coord = coord
		lcfg.Coordinator = coord
	}
	a.limiter = lambdalimit.New(lcfg)
	return a, nil
}

// close stops the coordinator (after the proxy has drained).
func (a *lambdaAdmission) close() {
	if a.coord == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.coord.Close(ctx)
}

// mode is the coordinator's mode for the telemetry gauge; nil without one.
func (a *lambdaAdmission) mode() func() string {
	if a.coord == nil {
		return nil
	}
	return func() string { return a.coord.Mode().String() }
}

// lambdaStatus is the "lambda" object of /status with a coordinator.
type lambdaStatus struct {
	lambdalimit.Status
	Coordinator fleet.Status `json:"coordinator"`
}

// status is the "lambda" object of /status.
func (a *lambdaAdmission) status() any {
	if a.coord == nil {
		return a.limiter.Status()
	}
	return lambdaStatus{Status: a.limiter.Status(), Coordinator: a.coord.Status()}
}

// readyDetail adds the coordinator's mode to /readyz (it does not change
// readiness: the proxy keeps serving in a fallback).
func (a *lambdaAdmission) readyDetail() map[string]any {
	if a.coord == nil {
		return nil
	}
	return map[string]any{"lambda_coordinator": map[string]string{
		"mode": a.coord.Mode().String(), "detail": a.coord.Detail()}}
}

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
