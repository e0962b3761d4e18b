package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseOffset(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "", want: 0},
		{in: "-20m", want: -20 * time.Minute},
		{in: "+3h", want: 3 * time.Hour},
		{in: "3h", want: 3 * time.Hour},
		{in: "-10y", want: -10 * 365 * 24 * time.Hour},
		{in: "1y2d3h", want: (365+2)*24*time.Hour + 3*time.Hour},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "-250ms", want: -250 * time.Millisecond},
		{in: "abc", wantErr: true},
		{in: "10", wantErr: true},
		{in: "-", wantErr: true},
		{in: "5x", wantErr: true},
		{in: "y", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseOffset(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseOffset(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseOffset(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "64MiB", want: 64 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "512KiB", want: 512 << 10},
		{in: "1048576", want: 1 << 20},
		{in: "10 MB", want: 10e6},
		{in: "-1", wantErr: true},
		{in: "lots", wantErr: true},
		{in: "99999999999999999999GiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize("max-body-buffer", tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSize(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateListen(t *testing.T) {
	base := Config{Listen: "127.0.0.1:8080", AdminListen: "127.0.0.1:9090", LeafCacheSize: 1,
		TimeSources: []string{"ntp://127.0.0.1"}, LogFormat: "text", LogLevel: "info"}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "ipv6 loopback", edit: func(c *Config) { c.Listen = "[::1]:8080" }},
		{name: "localhost", edit: func(c *Config) { c.Listen = "localhost:8080" }},
		{name: "lan without auth", edit: func(c *Config) { c.Listen = "0.0.0.0:8080" }, wantErr: "--proxy-auth"},
		{name: "empty host is every interface", edit: func(c *Config) { c.Listen = ":8080" }, wantErr: "not a loopback"},
		{name: "lan with auth", edit: func(c *Config) { c.Listen = "0.0.0.0:8080"; c.ProxyAuth = "u:p" }},
		{name: "lan allowed", edit: func(c *Config) { c.Listen = "192.168.1.10:8080"; c.AllowUnauthenticated = true }},
		{name: "auth without colon", edit: func(c *Config) { c.ProxyAuth = "user" }, wantErr: "USER:PASS"},
		{name: "admin remote", edit: func(c *Config) { c.AdminListen = "0.0.0.0:9090" }, wantErr: "--admin-allow-remote"},
		{name: "admin remote allowed", edit: func(c *Config) { c.AdminListen = "0.0.0.0:9090"; c.AdminAllowRemote = true }},
		{name: "bad address", edit: func(c *Config) { c.Listen = "nonsense" }, wantErr: "--listen"},
		{name: "bad log format", edit: func(c *Config) { c.LogFormat = "xml" }, wantErr: "--log-format"},
		{name: "bad log level", edit: func(c *Config) { c.LogLevel = "loud" }, wantErr: "--log-level"},
		{name: "no time source", edit: func(c *Config) { c.TimeSources = nil }, wantErr: "--time-source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			errs := cfg.validate()
			var msg []string
			for _, e := range errs {
				msg = append(msg, e.Error())
			}
			got := strings.Join(msg, "; ")
			if tt.wantErr == "" && got != "" {
				t.Fatalf("validate() = %q, want no error", got)
			}
			if tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Fatalf("validate() = %q, want an error mentioning %q", got, tt.wantErr)
			}
		})
	}
}

func TestEnvForFlag(t *testing.T) {
	for flag, want := range map[string]string{"listen": "SKEWPROXY_LISTEN", "lambda-max-inflight": "SKEWPROXY_LAMBDA_MAX_INFLIGHT"} {
		if got := envFor(flag)[0]; got != want {
			t.Errorf("envFor(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	for key, want := range map[string]bool{
		"authorization": true, "Proxy-Authorization": true, "x-amz-security-token": true, "X-Amz-Signature": true,
		"x-amz-credential": true, "aws_secret": true, "secret_access_key": true, "session_token": true, "password": true,
		"client_signature_age": false, "credentials_from": false, "signed_headers": false, "service": false, "err": false,
	} {
		if got := sensitiveKey(key); got != want {
			t.Errorf("sensitiveKey(%q) = %v, want %v", key, got, want)
		}
	}
}
