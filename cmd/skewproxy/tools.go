package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/skewproxy/skewproxy/proxy/certs"
	"github.com/skewproxy/skewproxy/timesource"
)

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "the proxy's certificate authority",
		Subcommands: []*cli.Command{{
			Name:  "export",
			Usage: "print the CA certificate (PEM) that clients must trust; made on first use",
			Flags: caFlags(),
			Action: func(c *cli.Context) error {
				var cfg Config
				if err := readCAFlags(c, &cfg); err != nil {
					return err
				}
				ca, err := loadCA(cfg)
				if err != nil {
					return err
				}
				_, err = c.App.Writer.Write(ca.CertPEM())
				return err
			},
		}},
	}
}

// loadCA opens --ca-cert/--ca-key, else the CA in the state directory
// (created on first use).
func loadCA(cfg Config, opts ...certs.Option) (*certs.Authority, error) {
	if cfg.CACert != "" {
		ca, err := certs.Load(cfg.CACert, cfg.CAKey, opts...)
		if err != nil {
			return nil, fmt.Errorf("load CA from --ca-cert/--ca-key: %w", err)
		}
		return ca, nil
	}
	ca, err := certs.LoadOrCreate(cfg.StateDir, opts...)
	if err != nil {
		return nil, fmt.Errorf("CA in state dir %s: %w", cfg.StateDir, err)
	}
	return ca, nil
}

// exportCA writes the CA certificate (never the key) where apps can read it,
// replacing the file atomically.
func exportCA(ca *certs.Authority, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--ca-export: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ca-*.pem")
	if err != nil {
		return fmt.Errorf("--ca-export: %w", err)
	}
	_, werr := tmp.Write(ca.CertPEM())
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--ca-export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--ca-export: %w", err)
	}
	return nil
}

func timeCommand() *cli.Command {
	flags := append(clockFlags(), boolFlag("json", "print JSON"), stringFlag("timeout", "2s", "per-source query timeout `D`"))
	return &cli.Command{
		Name:  "time",
		Usage: "query each time source once: offset of this host, round trip, stratum, uncertainty, leap",
		Flags: flags,
		Action: func(c *cli.Context) error {
			var cfg Config
			if err := readClockFlags(c, &cfg); err != nil {
				return err
			}
			if _, err := timesource.ParseSources(cfg.TimeSources); err != nil {
				return fmt.Errorf("--time-source: %w", err)
			}
			timeout, err := parseDuration("timeout", c.String("timeout"))
			if err != nil {
				return err
			}
			rs := timesource.QueryAllWithOffset(c.Context, cfg.TimeSources, timeout, cfg.ClockOffset)
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rs); err != nil {
					return err
				}
			} else {
				timesource.FormatTable(c.App.Writer, rs)
			}
			for _, r := range rs {
				if r.Err == nil {
					return nil
				}
			}
			return cli.Exit("no time source answered", 1)
		},
	}
}
