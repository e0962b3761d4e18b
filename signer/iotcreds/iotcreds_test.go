package iotcreds_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/signer/iotcreds"
	"github.com/skewproxy/skewproxy/signer/iotcreds/iottest"
)

// options are Options for the server's registered device.
func options(s *iottest.Server, now func() time.Time) iotcreds.Options {
	return iotcreds.Options{
		Endpoint:  s.Endpoint,
		RoleAlias: s.RoleAlias(),
		ThingName: s.ThingName(),
		CertFile:  s.Device.CertFile,
		KeyFile:   s.Device.KeyFile,
		CAFile:    s.CAFile,
		Now:       now,
	}
}

func retrieve(t *testing.T, o iotcreds.Options) error {
	t.Helper()
	p, err := iotcreds.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = p.Retrieve(ctx)
	return err
}

func TestRetrieveIssuesCredentials(t *testing.T) {
	s := iottest.Start(t, iottest.Options{Now: time.Now})
	p, err := iotcreds.New(options(s, time.Now))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	c, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	want := s.Credentials()
	if c.AccessKeyID != want.AccessKeyID || c.SecretAccessKey != want.SecretAccessKey || c.SessionToken != want.SessionToken {
		t.Errorf("credentials %+v, want %+v", c, want)
	}
	if !c.CanExpire || c.Expires.Before(before.Add(59*time.Minute)) || c.Expires.After(before.Add(61*time.Minute)) {
		t.Errorf("expires %v (CanExpire %t), want about an hour from now", c.Expires, c.CanExpire)
	}
	if !strings.Contains(c.Source, "AWS IoT") || c.Source != p.Name() {
		t.Errorf("source %q, name %q", c.Source, p.Name())
	}
	reqs := s.Requests()
	if len(reqs) != 1 || reqs[0].ThingName != s.ThingName() || reqs[0].Path != "/role-aliases/"+s.RoleAlias()+"/credentials" {
		t.Errorf("endpoint saw %+v", reqs)
	}
}

// TestRetrieveNamesTheCause: each refusal says what is wrong, and no error
// text quotes a secret.
func TestRetrieveNamesTheCause(t *testing.T) {
	s := iottest.Start(t, iottest.Options{Now: time.Now})
	cases := []struct {
		name   string
		edit   func(*iotcreds.Options)
		cause  iotcreds.Cause
		status int
		text   []string
	}{
		{"certificate from an unknown CA", func(o *iotcreds.Options) {
			d := s.ForeignDevice(t)
			o.CertFile, o.KeyFile = d.CertFile, d.KeyFile
		}, iotcreds.CauseCertificateRefused, 0, []string{"device certificate was refused", "--iot-cert"}},
		{"certificate not registered", func(o *iotcreds.Options) {
			d := s.NewDevice(t, false)
			o.CertFile, o.KeyFile = d.CertFile, d.KeyFile
		}, iotcreds.CauseCertificateRefused, 403, []string{"device certificate was refused", "Certificate is invalid on this endpoint"}},
		{"role alias unknown", func(o *iotcreds.Options) { o.RoleAlias = "no-such-alias" },
			iotcreds.CauseRoleAliasUnknown, 404, []string{`role alias "no-such-alias" unknown`, "404"}},
		{"thing name mismatch", func(o *iotcreds.Options) { o.ThingName = "someone-else" },
			iotcreds.CauseThingNameMismatch, 403, []string{`thing name "someone-else" refused`, "Thing name does not match", "iot:AssumeRoleWithCertificate"}},
		{"endpoint unreachable", func(o *iotcreds.Options) { o.Endpoint = "127.0.0.1:1" },
			iotcreds.CauseUnreachable, 0, []string{"endpoint unreachable", "connection refused"}},
		{"endpoint not trusted", func(o *iotcreds.Options) { o.CAFile = "" },
			iotcreds.CauseEndpointUntrusted, 0, []string{"certificate is not trusted", "--iot-ca"}},
	}
	secrets := []string{s.Credentials().SecretAccessKey, s.Credentials().SessionToken, "PRIVATE KEY"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options(s, time.Now)
			tc.edit(&o)
			err := retrieve(t, o)
			t.Log(err)
			var e *iotcreds.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *iotcreds.Error", err, err)
			}
			if e.Cause != tc.cause || e.Status != tc.status {
				t.Errorf("cause %v status %d, want %v %d (%v)", e.Cause, e.Status, tc.cause, tc.status, err)
			}
			for _, want := range tc.text {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			for _, secret := range secrets {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes a secret: %q", err)
				}
			}
		})
	}
}

// TestRetrieveJudgesTheEndpointByCorrectedTime: the world's true time is
// ten years after the host clock and the endpoint's certificate is valid
// for an hour around it. With the corrected clock the exchange works; with
// the host clock it fails, and says the validity was judged at corrected
// time.
func TestRetrieveJudgesTheEndpointByCorrectedTime(t *testing.T) {
	const shift = 10 * 365 * 24 * time.Hour
	trueNow := func() time.Time { return time.Now().Add(shift) }
	s := iottest.Start(t, iottest.Options{Now: trueNow, CertValidity: time.Hour})
	if err := retrieve(t, options(s, trueNow)); err != nil {
		t.Fatalf("with the corrected clock: %v", err)
	}
	err := retrieve(t, options(s, time.Now))
	var e *iotcreds.Error
	if !errors.As(err, &e) || e.Cause != iotcreds.CauseEndpointUntrusted || !strings.Contains(err.Error(), "judged at corrected time") {
		t.Fatalf("with the host clock: %v, want an untrusted endpoint judged at corrected time", err)
	}
}

// TestKeyReadOnce: the key file is read by New; removing it afterwards
// changes nothing.
func TestKeyReadOnce(t *testing.T) {
	s := iottest.Start(t, iottest.Options{Now: time.Now})
	d := s.NewDevice(t, true)
	o := options(s, time.Now)
	o.CertFile, o.KeyFile = d.CertFile, d.KeyFile
	p, err := iotcreds.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d.KeyFile); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := p.Retrieve(context.Background()); err != nil {
			t.Fatalf("Retrieve after the key file went away: %v", err)
		}
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	s := iottest.Start(t, iottest.Options{Now: time.Now})
	other := s.NewDevice(t, true)
	cases := []struct {
		name string
		edit func(*iotcreds.Options)
		want string
	}{
		{"no clock", func(o *iotcreds.Options) { o.Now = nil }, "no clock"},
		{"URL for endpoint", func(o *iotcreds.Options) { o.Endpoint = "https://" + o.Endpoint }, "want HOST[:PORT]"},
		{"no role alias", func(o *iotcreds.Options) { o.RoleAlias = "" }, "role alias"},
		{"key missing", func(o *iotcreds.Options) { o.KeyFile += ".missing" }, "device key"},
		{"key of another certificate", func(o *iotcreds.Options) { o.KeyFile = other.KeyFile }, "private key does not match"},
		{"CA file without certificates", func(o *iotcreds.Options) { o.CAFile = o.KeyFile }, "no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options(s, time.Now)
			tc.edit(&o)
			_, err := iotcreds.New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"c1.credentials.iot.us-east-1.amazonaws.com", "c1.credentials.iot.us-east-1.amazonaws.com:443", true},
		{"c1.credentials.iot.us-east-1.amazonaws.com:8443", "c1.credentials.iot.us-east-1.amazonaws.com:8443", true},
		{"127.0.0.1:9443", "127.0.0.1:9443", true},
		{"[::1]:9443", "[::1]:9443", true},
		{"", "", false},
		{"https://c1.credentials.iot.us-east-1.amazonaws.com", "", false},
		{"host/role-aliases/x", "", false},
		{":443", "", false},
	}
	for _, tc := range cases {
		got, err := iotcreds.ParseEndpoint(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q ok=%t", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestBehindCredentialsCache: the cache fetches once, then serves from
// memory until the corrected clock says refresh; a refusal surfaces as an
// *iotcreds.Error and a later request recovers by itself.
func TestBehindCredentialsCache(t *testing.T) {
	s := iottest.Start(t, iottest.Options{Now: time.Now})
	p, err := iotcreds.New(options(s, time.Now))
	if err != nil {
		t.Fatal(err)
	}
	var fetches []error
	cache := signer.NewCredentialsCache(p, signer.CredentialsCacheOptions{Now: time.Now, OnFetch: func(err error) { fetches = append(fetches, err) }})
	s.FailNext(iottest.Failure{Status: 403, Message: "Access Denied"})
	_, err = cache.Retrieve(context.Background())
	var e *iotcreds.Error
	if !errors.As(err, &e) || e.Cause != iotcreds.CauseThingNameMismatch {
		t.Fatalf("first Retrieve: %v, want a refused thing name", err)
	}
	for range 3 {
		if _, err := cache.Retrieve(context.Background()); err != nil {
			t.Fatalf("Retrieve after the refusal: %v", err)
		}
	}
	if s.Issued() != 1 || len(fetches) != 2 || fetches[1] != nil {
		t.Errorf("issued %d times, fetches %v; want one issue after one refusal", s.Issued(), fetches)
	}
}
