// Command skewbench is skewproxy's load generator and benchmark driver: the
// program behind `make bench`. It holds a loopback endpoint (HTTPS, and
// plain HTTP on a second port) that answers Lambda-Invoke-like requests
// with a small JSON body, a bare net/http forward proxy with no signing
// (`skewbench bare-proxy`: the floor skewproxy is held to), keep-alive load
// clients that record every latency (for p50/p99) and can go through a
// proxy (absolute-form http:// or HTTPS in CONNECT), a TLS handshake timer,
// an idle-connection holder and an S3 upload driver (minio-go
// chunk-signed, aws-sdk-go-v2 unsigned-trailer). `skewbench run` starts the
// real peers — the built skewproxy binary, the bare forwarder, tinyproxy,
// mitmdump and MinIO — measures skewproxy against them side by side in one
// run, on the plain-HTTP path and the MITM path, and prints a markdown
// report: a table of figures, ratios and goals, and a load table of every
// target at every client count.
//
// It is not a test: it asserts no timings and never fails on a slow
// figure; it prints them, with the goals of issue 22 (and issue 10's not
// superseded) marked met or not met.
// It is not a general-purpose load tester either (use wrk or hey for that):
// its requests are shaped for skewproxy.
//
// Usage:
//
//	skewbench run --skewproxy bin/skewproxy [--gobench FILE] [--out FILE] [--profile-dir DIR]
//	skewbench endpoint [--dir DIR]        # serve the endpoint (HTTPS and plain HTTP) until interrupted
//	skewbench bare-proxy [--dir DIR] [--upstream-ca FILE] [--resolve HOST:PORT=ADDR]...  # the bare forwarder
//	skewbench load --url URL [--proxy URL] [--ca FILE] [--clients N] [--duration D]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skewbench:", err)
		os.Exit(1)
	}
}

// run dispatches a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: skewbench run|endpoint|load|bare-proxy [flags] (see the package doc)")
	}
	switch args[0] {
	case "run":
		return runSuite(ctx, args[1:], stdout, stderr)
	case "endpoint":
		return runEndpoint(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoadCommand(ctx, args[1:], stdout, stderr)
	case "bare-proxy":
		return runBareProxy(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want run, endpoint, load or bare-proxy)", args[0])
	}
}
