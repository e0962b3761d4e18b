// Command skewproxy is a local forward proxy that re-signs AWS requests at
// the instant they leave, with credentials it holds and with time from the
// Amazon Time Sync Service instead of the host clock.
//
// This package only turns flags and environment into configuration and wires
// the parts together; protocol logic lives in proxy, signer and timesource.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// Set by the release build: -ldflags "-X main.version=... -X main.commit=...
// -X main.built=<RFC 3339>".
var (
	version = "dev"
	commit  = "unknown"
	built   = ""
)

// buildTime is when this binary was built: the -X main.built stamp, else
// the commit time Go records from version control, else zero. The clock
// never accepts a time before it (as systemd-timesyncd does), so a time
// source answering 1970 cannot send the proxy back there.
func buildTime() time.Time {
	if t, err := time.Parse(time.RFC3339, built); err == nil {
		return t
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Time{}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "skewproxy:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "skewproxy:", err)
		os.Exit(1)
	}
}

// run is main without the process: it parses args and runs the chosen
// command until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp(stdout, stderr)
	return app.RunContext(ctx, args)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "skewproxy",
		Usage: "re-sign AWS requests at send time with corrected time",
		Description: "skewproxy is a forward proxy for AWS traffic. Point HTTPS_PROXY at it and trust its CA;\n" +
			"it re-signs every AWS request with its own credentials and with time from the Amazon Time Sync Service.",
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideVersion:            true,
		UseShortOptionHandling: false,
		ExitErrHandler:         func(*cli.Context, error) {}, // run returns errors; main decides the exit code
		Commands: []*cli.Command{
			serveCommand(),
			caCommand(),
			timeCommand(),
			presignCommand(),
			explainCommand(),
			healthcheckCommand(),
			versionCommand(),
		},
	}
}
