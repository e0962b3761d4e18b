package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skewproxy/skewproxy/proxy"
)

// envFor returns the environment variable that backs a flag:
// --listen -> SKEWPROXY_LISTEN, --lambda-max-inflight -> SKEWPROXY_LAMBDA_MAX_INFLIGHT.
func envFor(flag string) []string {
	return []string{"SKEWPROXY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

func stringFlag(name, value, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: envFor(name)}
}

func sliceFlag(name string, value []string, usage string) *cli.StringSliceFlag {
	f := &cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: envFor(name)}
	if value != nil {
		f.Value = cli.NewStringSlice(value...)
	}
	return f
}

func boolFlag(name, usage string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: name, Usage: usage, EnvVars: envFor(name)}
}

func intFlag(name string, value int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Value: value, Usage: usage, EnvVars: envFor(name)}
}

// Default time sources: the Amazon Time Sync Service over IPv4 and IPv6 on
// every EC2 instance, then its public endpoint.
var defaultTimeSources = []string{"ntp://169.254.169.123", "ntp://[fd00:ec2::123]", "ntp://time.aws.com"}

// logFlags are shared by every command that logs.
func logFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("log-level", "info", "debug, info, warn or error"),
		stringFlag("log-format", "text", "text or json"),
	}
}

// clockFlags configure the corrected clock, shared by serve, time and presign.
func clockFlags() []cli.Flag {
	return []cli.Flag{
		sliceFlag("time-source", defaultTimeSources, "time source `ntp://HOST[:PORT]` (repeatable, ordered)"),
		stringFlag("clock-offset", "0", "pretend the host clock is off by `D` (-20m, +3h, -10y): for demos and tests"),
	}
}

func stateDirFlag() cli.Flag {
	return stringFlag("state-dir", "", "directory for ca.pem and ca-key.pem (default $XDG_STATE_HOME/skewproxy or ~/.local/state/skewproxy)")
}

func caFlags() []cli.Flag {
	return []cli.Flag{
		stateDirFlag(),
		stringFlag("ca-cert", "", "use this CA certificate (PEM) instead of the one in --state-dir"),
		stringFlag("ca-key", "", "private key (PEM) of --ca-cert"),
	}
}

func serveFlags() []cli.Flag {
	flags := []cli.Flag{
		stringFlag("listen", "127.0.0.1:8080", "proxy `ADDR` (HTTP forward proxy: CONNECT and absolute-form http://)"),
		stringFlag("admin-listen", "127.0.0.1:9090", "admin `ADDR`: /healthz /readyz /status /metrics /presign"),
		boolFlag("admin-allow-remote", "allow --admin-listen on a non-loopback address"),
		sliceFlag("resolve", nil, "`HOST:PORT=URL`: send traffic for that host to another base URL, keeping the Host header (repeatable; HOST may start with *.)"),
		stringFlag("upstream-ca", "", "extra root certificates (PEM `FILE`) for upstream TLS; system roots are always used"),
		stringFlag("upstream-proxy", "", "send upstream traffic through this proxy `URL` (the proxy never reads HTTPS_PROXY itself)"),
		sliceFlag("intercept", proxy.DefaultInterceptPatterns(), "host `PATTERN` to intercept and re-sign (repeatable); --resolve hosts are added"),
		boolFlag("upstream-plain-http", "keep intercepted http:// requests on plain HTTP upstream (default: sent over HTTPS, verified)"),
		sliceFlag("allow-service", nil, "sign only for this signing `NAME` (repeatable; default: every service); others get 403 AccessDenied and are not sent"),
		sliceFlag("allow-region", nil, "sign only for this `REGION` (repeatable; default: every region); others get 403 AccessDenied and are not sent"),
		intFlag("lambda-max-inflight", 0, "Lambda invokes in flight across all functions (0 = no limit)"),
		sliceFlag("lambda-function-max-inflight", nil, "per-function limit `NAME=N` (repeatable)"),
		stringFlag("lambda-queue-timeout", "4m", "answer 429 to an invoke that waited longer than `D`"),
		intFlag("lambda-max-queue", 0, "queued invokes beyond which new ones get 429 at once (0 = no limit)"),
		boolFlag("lambda-limit-events", "also hold asynchronous (Event) invokes"),
		stringFlag("lambda-coordinator", "", "make the Lambda limits fleet-wide: Redis `URL` redis://[user:pass@]HOST:PORT/DB or rediss:// (every proxy naming the same Redis and namespace shares them)"),
		stringFlag("lambda-coordinator-namespace", "skewproxy", "key prefix in the coordinator's Redis: proxies with the same `NAME` share limits"),
		stringFlag("lambda-coordinator-fallback", "local", "`MODE` while Redis is unreachable or slow: local (each proxy keeps ceil(limit / fleet size)) or closed (refuse held invokes with 429)"),
		intFlag("lambda-coordinator-fleet-size", 0, "expected number `N` of proxies, dividing the limits in the local fallback (0 = the live proxies last seen in Redis)"),
		stringFlag("lambda-coordinator-password-file", "", "read the Redis password from `FILE` (overrides the URL's)"),
		stringFlag("lambda-coordinator-lease-ttl", "15s", "a slot of a proxy that stopped renewing it (killed, cut off) frees after `D`"),
		stringFlag("lambda-coordinator-timeout", "250ms", "a Redis round trip slower than `D` counts as Redis unavailable (fallback)"),
		stringFlag("proxy-auth", "", "require Proxy-Authorization Basic `USER:PASS` from clients"),
		boolFlag("allow-unauthenticated", "allow --listen on a non-loopback address without --proxy-auth"),
		boolFlag("require-sync", "answer 503 instead of signing with a clock no time source has confirmed"),
		boolFlag("no-retry-on-skew", "do not re-sign and retry once after a clock-skew failure"),
		boolFlag("no-time-bootstrap", "while no time source has answered, do not learn the time from the HTTPS Date of the first intercepted host"),
		intFlag("leaf-cache-size", 1024, "leaf certificates kept in memory"),
		stringFlag("max-body-buffer", "64MiB", "largest body buffered to hash it (beyond: 413)"),
		stringFlag("max-header-bytes", "1MiB", "largest request header block, on the listener and inside intercepted tunnels (beyond: 431)"),
		stringFlag("read-header-timeout", "30s", "close a client that takes longer than `D` to send a request's headers (or its TLS handshake in a tunnel)"),
		stringFlag("idle-timeout", "5m", "close a keep-alive client connection idle for `D`, and a tunnel client that stalls that long sending a body or reading an answer"),
		intFlag("max-client-conns", 4096, "open client connections, tunnels included; beyond, a new connection gets 503 and is closed (0 = no limit)"),
		stringFlag("upstream-dial-timeout", "10s", "bound each upstream TCP connect (signed requests and blind tunnels) to `D`"),
		stringFlag("upstream-response-header-timeout", "0", "answer 504 when the upstream sends no response headers within `D` of the request (0 = none: Lambda invokes may run 15 minutes)"),
		stringFlag("drain-timeout", "30s", "on SIGTERM, wait up to `D` for in-flight requests"),
		boolFlag("pprof", "serve /debug/pprof/ on the admin port"),
	}
	flags = append(flags, iotFlags()...)
	flags = append(flags, caFlags()...)
	flags = append(flags, clockFlags()...)
	return append(flags, logFlags()...)
}

// iotFlags take the proxy's credentials from AWS IoT Core's credentials
// provider instead of the standard chain: all of them but --iot-ca, or none.
func iotFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("iot-credentials-endpoint", "", "get credentials from AWS IoT Core's credentials provider at `HOST[:PORT]` (aws iot describe-endpoint --endpoint-type iot:CredentialProvider) instead of the standard chain"),
		stringFlag("iot-role-alias", "", "AWS IoT role alias `NAME` whose role's credentials the proxy signs with"),
		stringFlag("iot-thing-name", "", "thing `NAME` attached to --iot-cert (sent as x-amzn-iot-thingname)"),
		stringFlag("iot-cert", "", "device certificate (PEM `FILE`) registered with AWS IoT Core"),
		stringFlag("iot-key", "", "private key (PEM `FILE`) of --iot-cert; read once at start"),
		stringFlag("iot-ca", "", "extra root certificates (PEM `FILE`) for the credentials endpoint; system roots are always used"),
	}
}
