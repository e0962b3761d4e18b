package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skewproxy/skewproxy/signer/awserrors"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "skewproxy %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func explainCommand() *cli.Command {
	return &cli.Command{
		Name:      "explain",
		Usage:     "say what an AWS skew or expiry error means and what to do",
		ArgsUsage: "MESSAGE (the CLI error line, a JSON body or an XML body; - or nothing reads stdin)",
		Flags:     []cli.Flag{boolFlag("json", "print JSON")},
		Action: func(c *cli.Context) error {
			msg := strings.Join(c.Args().Slice(), " ")
			if msg == "" || msg == "-" {
				b, err := io.ReadAll(io.LimitReader(c.App.Reader, 1<<20))
				if err != nil {
					return fmt.Errorf("read message from stdin: %w", err)
				}
				msg = string(b)
			}
			if strings.TrimSpace(msg) == "" {
				return cli.Exit("explain: give the AWS error message as an argument or on stdin", 2)
			}
			e := awserrors.Explain(msg)
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(e); err != nil {
					return err
				}
			} else if _, err := fmt.Fprintln(c.App.Writer, e.Text()); err != nil {
				return err
			}
			if e.Failure == awserrors.FailureNone {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}

func healthcheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "exit 0 when the proxy at --admin-listen answers 200 on --path (default /readyz), 1 otherwise",
		Flags: []cli.Flag{
			stringFlag("admin-listen", "127.0.0.1:9090", "admin `ADDR` of the running proxy"),
			stringFlag("path", "/readyz", "admin `PATH` to check (/readyz, or /healthz for liveness)"),
			stringFlag("timeout", "3s", "give up after `D`"),
		},
		Action: func(c *cli.Context) error {
			timeout, err := parseDuration("timeout", c.String("timeout"))
			if err != nil {
				return err
			}
			path := c.String("path")
			if !strings.HasPrefix(path, "/") {
				return cli.Exit("healthcheck: --path must start with /", 2)
			}
			return healthcheck(c.Context, c.String("admin-listen"), path, timeout, c.App.Writer)
		},
	}
}

func healthcheck(ctx context.Context, addr, path string, timeout time.Duration, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return cli.Exit(fmt.Sprintf("healthcheck: %v", err), 1)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return cli.Exit(fmt.Sprintf("healthcheck: %v", err), 1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(w, "%s %s\n", resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return cli.Exit("", 1)
	}
	return nil
}
