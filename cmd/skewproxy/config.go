package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet"
	"github.com/skewproxy/skewproxy/signer/iotcreds"
)

// Config is everything `skewproxy serve` needs, read from flags and env.
type Config struct {
	Listen, AdminListen string
	AdminAllowRemote    bool
	Resolve             []string
	UpstreamCA          string
	UpstreamProxy       string
	Intercept           []string

	LambdaMaxInflight      int
	LambdaFunctionInflight map[string]int
	LambdaQueueTimeout     time.Duration
	LambdaMaxQueue         int
	LambdaLimitEvents      bool
	// LambdaCoordinator makes the Lambda limits fleet-wide (Redis URL; it
	// may hold a password: never logged). See readCoordinatorFlags.
	LambdaCoordinator LambdaCoordinatorConfig

	ProxyAuth            string
	AllowUnauthenticated bool
	RequireSync          bool
	AllowServices        []string
	UpstreamPlainHTTP    bool
	AllowRegions         []string
	NoTimeBootstrap      bool
	RetryOnSkew          bool
	LeafCacheSize        int
	MaxBodyBuffer        int64
	// Client and upstream limits (--max-header-bytes and friends).
	MaxHeaderBytes                int64
	ReadHeaderTimeout             time.Duration
	IdleTimeout                   time.Duration
	MaxClientConns                int
	UpstreamDialTimeout           time.Duration
	UpstreamResponseHeaderTimeout time.Duration
	DrainTimeout                  time.Duration
	Pprof                         bool

	// IoT, when its Endpoint is set, takes the credentials from AWS IoT
	// Core's credentials provider instead of the standard chain.
	IoT IoTConfig

	StateDir, CACert, CAKey string
	CAExport                string
	TimeSources             []string
	ClockOffset             time.Duration
	LogLevel, LogFormat     string
}

// IoTConfig is the --iot-* flags.
type IoTConfig struct {
	Endpoint, RoleAlias, ThingName string
	Cert, Key, CA                  string
}

// Enabled reports whether the IoT credentials provider is configured.
func (c IoTConfig) Enabled() bool { return c.Endpoint != "" }

// serveConfig reads and validates the serve flags.
func serveConfig(c *cli.Context) (Config, error) {
	cfg := Config{
		Listen:               c.String("listen"),
		AdminListen:          c.String("admin-listen"),
		AdminAllowRemote:     c.Bool("admin-allow-remote"),
		Resolve:              c.StringSlice("resolve"),
		UpstreamCA:           c.String("upstream-ca"),
		UpstreamProxy:        c.String("upstream-proxy"),
		Intercept:            c.StringSlice("intercept"),
		AllowServices:        c.StringSlice("allow-service"),
		UpstreamPlainHTTP:    c.Bool("upstream-plain-http"),
		AllowRegions:         c.StringSlice("allow-region"),
		LambdaMaxInflight:    c.Int("lambda-max-inflight"),
		LambdaMaxQueue:       c.Int("lambda-max-queue"),
		LambdaLimitEvents:    c.Bool("lambda-limit-events"),
		ProxyAuth:            c.String("proxy-auth"),
		AllowUnauthenticated: c.Bool("allow-unauthenticated"),
		RequireSync:          c.Bool("require-sync"),
		NoTimeBootstrap:      c.Bool("no-time-bootstrap"),
		RetryOnSkew:          !c.Bool("no-retry-on-skew"),
		LeafCacheSize:        c.Int("leaf-cache-size"),
		MaxClientConns:       c.Int("max-client-conns"),
		Pprof:                c.Bool("pprof"),
		LogLevel:             c.String("log-level"),
		LogFormat:            c.String("log-format"),
	}
	var errs []error
	var err error
	if cfg.LambdaFunctionInflight, err = lambdalimit.ParseFunctionMaxInflight(c.StringSlice("lambda-function-max-inflight")); err != nil {
		errs = append(errs, fmt.Errorf("--lambda-function-max-inflight: %w", err))
	}
	if cfg.LambdaQueueTimeout, err = parseDuration("lambda-queue-timeout", c.String("lambda-queue-timeout")); err != nil {
		errs = append(errs, err)
	}
	if cfg.DrainTimeout, err = parseDuration("drain-timeout", c.String("drain-timeout")); err != nil {
		errs = append(errs, err)
	}
	if cfg.MaxBodyBuffer, err = parseSize("max-body-buffer", c.String("max-body-buffer")); err != nil {
		errs = append(errs, err)
	}
	if err := readLimitFlags(c, &cfg); err != nil {
		errs = append(errs, err)
	}
	if err := readClockFlags(c, &cfg); err != nil {
		errs = append(errs, err)
	}
	if err := readCAFlags(c, &cfg); err != nil {
		errs = append(errs, err)
	}
	if err := readIoTFlags(c, &cfg); err != nil {
		errs = append(errs, err)
	}
	if err := readCoordinatorFlags(c, &cfg.LambdaCoordinator); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.validate()...)
	return cfg, errors.Join(errs...)
}

// readLimitFlags reads the client and upstream limits.
func readLimitFlags(c *cli.Context, cfg *Config) error {
	var errs []error
	var err error
	if cfg.MaxHeaderBytes, err = parseSize("max-header-bytes", c.String("max-header-bytes")); err != nil {
		errs = append(errs, err)
	}
	durations := []struct {
		flag string
		dst  *time.Duration
	}{
		{"read-header-timeout", &cfg.ReadHeaderTimeout},
		{"idle-timeout", &cfg.IdleTimeout},
		{"upstream-dial-timeout", &cfg.UpstreamDialTimeout},
		{"upstream-response-header-timeout", &cfg.UpstreamResponseHeaderTimeout},
	}
	for _, d := range durations {
		if *d.dst, err = parseDuration(d.flag, c.String(d.flag)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return cfg.validateLimits()
}

// validateLimits checks the limits read by readLimitFlags.
func (cfg Config) validateLimits() error {
	var errs []error
	if cfg.MaxClientConns < 0 {
		errs = append(errs, errors.New("--max-client-conns must be >= 0"))
	}
	if cfg.MaxHeaderBytes < 1<<10 || cfg.MaxHeaderBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("--max-header-bytes %d: want between 1KiB and 64MiB", cfg.MaxHeaderBytes))
	}
	if cfg.ReadHeaderTimeout == 0 || cfg.IdleTimeout == 0 || cfg.UpstreamDialTimeout == 0 {
		errs = append(errs, errors.New("--read-header-timeout, --idle-timeout and --upstream-dial-timeout must be > 0"))
	}
	return errors.Join(errs...)
}

func readClockFlags(c *cli.Context, cfg *Config) error {
	cfg.TimeSources = c.StringSlice("time-source")
	off, err := parseOffset(c.String("clock-offset"))
	cfg.ClockOffset = off
	return err
}

func readCAFlags(c *cli.Context, cfg *Config) error {
	cfg.CACert, cfg.CAKey = c.String("ca-cert"), c.String("ca-key")
	if (cfg.CACert == "") != (cfg.CAKey == "") {
		return errors.New("--ca-cert and --ca-key go together")
	}
	dir, err := stateDir(c.String("state-dir"))
	cfg.StateDir = dir
	return err
}

// readIoTFlags reads the --iot-* flags: all of them but --iot-ca, or none.
func readIoTFlags(c *cli.Context, cfg *Config) error {
	cfg.IoT = IoTConfig{
		Endpoint:  c.String("iot-credentials-endpoint"),
		RoleAlias: c.String("iot-role-alias"),
		ThingName: c.String("iot-thing-name"),
		Cert:      c.String("iot-cert"),
		Key:       c.String("iot-key"),
		CA:        c.String("iot-ca"),
	}
	return cfg.IoT.validate()
}

// validate checks that the IoT flags come together.
func (c IoTConfig) validate() error {
	required := []struct{ flag, value string }{
		{"--iot-credentials-endpoint", c.Endpoint},
		{"--iot-role-alias", c.RoleAlias},
		{"--iot-thing-name", c.ThingName},
		{"--iot-cert", c.Cert},
		{"--iot-key", c.Key},
	}
	var set, missing []string
	for _, r := range required {
		if r.value == "" {
			missing = append(missing, r.flag)
		} else {
			set = append(set, r.flag)
		}
	}
	if len(set) == 0 {
		if c.CA != "" {
			return errors.New("--iot-ca needs the other --iot-* flags")
		}
		return nil
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s need %s too (AWS IoT credentials take all of them)", strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	if _, err := iotcreds.ParseEndpoint(c.Endpoint); err != nil {
		return fmt.Errorf("--iot-credentials-endpoint: %w", err)
	}
	return nil
}

// validate checks relations between flags.
func (cfg Config) validate() []error {
	var errs []error
	if err := requireLoopbackOr(cfg.Listen, "--listen", cfg.ProxyAuth != "" || cfg.AllowUnauthenticated,
		"set --proxy-auth USER:PASS (or --allow-unauthenticated) to listen beyond loopback"); err != nil {
		errs = append(errs, err)
	}
	if err := requireLoopbackOr(cfg.AdminListen, "--admin-listen", cfg.AdminAllowRemote,
		"set --admin-allow-remote to serve the admin port beyond loopback"); err != nil {
		errs = append(errs, err)
	}
	if cfg.ProxyAuth != "" && !strings.Contains(cfg.ProxyAuth, ":") {
		errs = append(errs, errors.New("--proxy-auth must be USER:PASS"))
	}
	if cfg.LambdaMaxInflight < 0 || cfg.LambdaMaxQueue < 0 {
		errs = append(errs, errors.New("--lambda-max-inflight and --lambda-max-queue must be >= 0"))
	}
	if cfg.LeafCacheSize < 1 {
		errs = append(errs, errors.New("--leaf-cache-size must be >= 1"))
	}
	if len(cfg.TimeSources) == 0 {
		errs = append(errs, errors.New("at least one --time-source is needed"))
	}
	switch cfg.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat))
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// requireLoopbackOr refuses a listen address beyond loopback unless allowed.
func requireLoopbackOr(addr, flag string, allowed bool, fix string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if isLoopbackHost(host) || allowed {
		return nil
	}
	return fmt.Errorf("%s %q is not a loopback address: %s", flag, addr, fix)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func parseDuration(flag, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--%s %q: want a duration such as 30s or 4m", flag, s)
	}
	return d, nil
}

// parseOffset reads a signed duration that may also use d (days) and y
// (365 days) units: "-20m", "+3h", "-10y", "1y2d3h".
func parseOffset(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	neg := false
	rest := s
	if rest[0] == '+' || rest[0] == '-' {
		neg = rest[0] == '-'
		rest = rest[1:]
		if rest == "" {
			return 0, fmt.Errorf("--clock-offset %q: want a duration such as -20m, +3h or -10y", s)
		}
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, fmt.Errorf("--clock-offset %q: want a duration such as -20m, +3h or -10y", s)
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var d time.Duration
		switch unit {
		case "d", "y":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("--clock-offset %q: %w", s, err)
			}
			day := 24 * time.Hour
			if unit == "y" {
				day *= 365
			}
			d = time.Duration(f * float64(day))
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, fmt.Errorf("--clock-offset %q: want a duration such as -20m, +3h or -10y", s)
			}
		}
		total += d
	}
	if neg {
		total = -total
	}
	return total, nil
}

// parseSize reads a byte count such as 64MiB, 1GiB, 512KiB or 1048576.
func parseSize(flag, s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	str := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(str, u.suffix) {
			str, mult = strings.TrimSpace(strings.TrimSuffix(str, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("--%s %q: want a size such as 64MiB", flag, s)
	}
	return n * mult, nil
}

// stateDir resolves --state-dir: the flag, else $XDG_STATE_HOME/skewproxy,
// else ~/.local/state/skewproxy.
func stateDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "skewproxy"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --state-dir and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "skewproxy"), nil
}

// LambdaCoordinatorConfig is the --lambda-coordinator* flags.
type LambdaCoordinatorConfig struct {
	URL       string // "" = limits are per process
	Password  string // from --lambda-coordinator-password-file
	Namespace string
	// FailClosed: --lambda-coordinator-fallback closed.
	FailClosed bool
	FleetSize  int
	LeaseTTL   time.Duration
	Timeout    time.Duration
}

// readCoordinatorFlags reads and checks the fleet coordinator's flags (the
// URL's form only: Redis is not contacted here).
func readCoordinatorFlags(c *cli.Context, lc *LambdaCoordinatorConfig) error {
	lc.URL = c.String("lambda-coordinator")
	lc.Namespace = c.String("lambda-coordinator-namespace")
	lc.FleetSize = c.Int("lambda-coordinator-fleet-size")
	var errs []error
	if lc.URL != "" {
		if err := fleet.ValidateURL(lc.URL); err != nil {
			errs = append(errs, fmt.Errorf("--lambda-coordinator: %w", err))
		}
	}
	switch fb := c.String("lambda-coordinator-fallback"); fb {
	case "local":
	case "closed":
		lc.FailClosed = true
	default:
		errs = append(errs, fmt.Errorf("--lambda-coordinator-fallback %q: want local or closed", fb))
	}
	if lc.Namespace == "" {
		errs = append(errs, errors.New("--lambda-coordinator-namespace must not be empty"))
	}
	if lc.FleetSize < 0 {
		errs = append(errs, errors.New("--lambda-coordinator-fleet-size must be >= 0"))
	}
	var err error
	if lc.LeaseTTL, err = parseDuration("lambda-coordinator-lease-ttl", c.String("lambda-coordinator-lease-ttl")); err != nil {
		errs = append(errs, err)
	} else if lc.LeaseTTL < 500*time.Millisecond {
		errs = append(errs, errors.New("--lambda-coordinator-lease-ttl must be at least 500ms"))
	}
	if lc.Timeout, err = parseDuration("lambda-coordinator-timeout", c.String("lambda-coordinator-timeout")); err != nil {
		errs = append(errs, err)
	} else if lc.Timeout == 0 {
		errs = append(errs, errors.New("--lambda-coordinator-timeout must be > 0"))
	}
	if f := c.String("lambda-coordinator-password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("--lambda-coordinator-password-file: %w", err))
		}
		lc.Password = strings.TrimRight(string(b), "\r\n")
	}
	return errors.Join(errs...)
}
