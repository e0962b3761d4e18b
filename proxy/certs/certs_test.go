package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadOrCreatePermissionsAndReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, CertFileName), 0o644},
		{filepath.Join(dir, KeyFileName), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	a2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a1.CertPEM(), a2.CertPEM()) {
		t.Fatal("second LoadOrCreate made a new CA instead of reusing the first")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, CertFileName))
	if !bytes.Equal(onDisk, a1.CertPEM()) {
		t.Fatal("CertPEM differs from ca.pem")
	}
}

func TestLoadOrCreateRefusesBrokenState(t *testing.T) {
	other := t.TempDir()
	if _, err := LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, KeyFileName))

	cases := []struct {
		name    string
		setup   func(dir string)
		wantErr string
	}{
		{"key missing", func(dir string) { os.Remove(filepath.Join(dir, KeyFileName)) }, "does not"},
		{"cert missing", func(dir string) { os.Remove(filepath.Join(dir, CertFileName)) }, "does not"},
		{"cert garbage", func(dir string) { os.WriteFile(filepath.Join(dir, CertFileName), []byte("garbage"), 0o644) }, "unusable or do not match"},
		{"key from another CA", func(dir string) { os.WriteFile(filepath.Join(dir, KeyFileName), otherKey, 0o600) }, "do not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, CertFileName))
			tc.setup(dir)
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			after, _ := os.ReadFile(filepath.Join(dir, CertFileName))
			if len(before) > 0 && len(after) > 0 && !bytes.Equal(after, before) && !bytes.Equal(after, []byte("garbage")) {
				t.Fatal("a broken state directory was silently regenerated")
			}
		})
	}
}

func TestLoadRejectsNonCA(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Leaf("example.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile := filepath.Join(dir, "leaf.pem")
	keyFile := filepath.Join(dir, "leaf-key.pem")
	os.WriteFile(certFile, pemOf(leaf.Certificate[0]), 0o644)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	os.WriteFile(keyFile, pemBlock("PRIVATE KEY", keyDER), 0o600)
	if _, err := Load(certFile, keyFile); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("Load of a leaf as CA: err = %v", err)
	}
}

// handshake runs a TLS handshake between a client configured by cc and a
// server using sc over loopback TCP and returns the client's state.
func handshake(t *testing.T, sc, cc *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(c, sc)
		if s.Handshake() == nil {
			// Read until the client closes so TLS 1.3 tickets are sent.
			buf := make([]byte, 1)
			s.Read(buf)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, cc)
	err = tc.Handshake()
	var st tls.ConnectionState
	if err == nil {
		// A read makes the client process the session ticket.
		tc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		tc.Read(make([]byte, 1))
		st = tc.ConnectionState()
	}
	tc.Close()
	<-done
	return st, err
}

func TestLeafAcceptedByClientWithWrongClock(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.Certificate())
	cases := []struct {
		name string
		host string
		now  time.Time
	}{
		{"1970 boot", "lambda.us-east-1.amazonaws.com", time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)},
		{"1971", "sts.amazonaws.com", time.Date(1971, 6, 1, 0, 0, 0, 0, time.UTC)},
		{"today", "s3.us-east-1.amazonaws.com", time.Now()},
		{"2090", "bucket.s3.us-east-1.amazonaws.com", time.Date(2090, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"ip literal", "127.0.0.1", time.Date(2090, 3, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := a.TLSConfigForHost(tc.host + ":443")
			if err != nil {
				t.Fatal(err)
			}
			now := tc.now
			cc := &tls.Config{RootCAs: pool, ServerName: tc.host, Time: func() time.Time { return now }}
			if _, err := handshake(t, sc, cc); err != nil {
				t.Fatalf("handshake with client clock %v: %v", now, err)
			}
		})
	}
	t.Run("wrong name refused", func(t *testing.T) {
		sc, _ := a.TLSConfigForHost("sts.amazonaws.com")
		cc := &tls.Config{RootCAs: pool, ServerName: "evil.test"}
		if _, err := handshake(t, sc, cc); err == nil {
			t.Fatal("a leaf for sts.amazonaws.com was accepted for evil.test")
		}
	})
}

func TestSessionResumptionAcrossConnections(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.Certificate())
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			cc := &tls.Config{RootCAs: pool, ServerName: "sts.amazonaws.com", ClientSessionCache: cache, MaxVersion: v}
			// Two separate server configs, as two CONNECT tunnels get.
			sc1, _ := a.TLSConfigForHost("sts.amazonaws.com")
			st1, err := handshake(t, sc1, cc)
			if err != nil {
				t.Fatal(err)
			}
			if st1.DidResume {
				t.Fatal("first handshake resumed")
			}
			sc2, _ := a.TLSConfigForHost("sts.amazonaws.com")
			st2, err := handshake(t, sc2, cc)
			if err != nil {
				t.Fatal(err)
			}
			if !st2.DidResume {
				t.Fatal("second handshake on a new connection did not resume")
			}
		})
	}
}

func TestLeafConcurrentFirstUseIssuesOnce(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, 50)
	for i := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.Leaf("Lambda.US-East-1.amazonaws.com.:443")
			if err != nil {
				t.Error(err)
			}
			certs[i] = c
		}()
	}
	wg.Wait()
	for i, c := range certs {
		if c != certs[0] {
			t.Fatalf("leaf %d differs from leaf 0: more than one leaf issued", i)
		}
	}
	if got := certs[0].Leaf.DNSNames; len(got) != 1 || got[0] != "lambda.us-east-1.amazonaws.com" {
		t.Fatalf("DNSNames = %v", got)
	}
}

func TestLeafCacheEvicts(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir(), WithCacheSize(2))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.Leaf("a.test")
	a.Leaf("b.test")
	a.Leaf("c.test")
	again, _ := a.Leaf("a.test")
	if first == again {
		t.Fatal("cache of size 2 kept 3 leaves")
	}
}

func TestLeafRejectsBadNames(t *testing.T) {
	a, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"", ":443", "a..b", "bad host", "x/y"} {
		if _, err := a.Leaf(h); err == nil {
			t.Errorf("Leaf(%q) succeeded", h)
		}
	}
}

func BenchmarkLeafIssue(b *testing.B) {
	a, err := LoadOrCreate(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := a.Leaf(fmt.Sprintf("h%d.lambda.us-east-1.amazonaws.com", i)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLookupObserverCountsHitsAndMisses(t *testing.T) {
	var hits, misses atomic.Int64
	a, err := LoadOrCreate(t.TempDir(), WithLookupObserver(func(hit bool) {
		if hit {
			hits.Add(1)
		} else {
			misses.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.test", "a.test", "b.test", "a.test:443", "b.test"} {
		if _, err := a.Leaf(h); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 3 || misses.Load() != 2 {
		t.Fatalf("hits %d misses %d, want 3 and 2", hits.Load(), misses.Load())
	}
}
