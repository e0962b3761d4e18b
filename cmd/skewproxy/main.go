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
	"syscall"

	"github.com/urfave/cli/v2"
)

// Set by the release build: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

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
