package main

// The ARM release binaries under qemu-user: the linux/arm64 and
// linux/arm/v7 builds (as `make release` makes them: static, trimmed,
// GOARM=7) print their version, query chrony, and sign a request through
// the proxy to the verifying endpoint. They are built once per test run,
// both at once, beside the test binary.

import (
	"context"
	"debug/elf"
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// armRelease is one ARM release platform.
type armRelease struct {
	name    string   // dist/skewproxy-linux-<name>
	env     []string // GOARCH, GOARM
	qemu    string   // the qemu-user emulator (Debian qemu-user-static)
	machine elf.Machine
}

var armReleases = []armRelease{
	{"arm64", []string{"GOOS=linux", "GOARCH=arm64"}, "qemu-aarch64-static", elf.EM_AARCH64},
	{"armv7", []string{"GOOS=linux", "GOARCH=arm", "GOARM=7"}, "qemu-arm-static", elf.EM_ARM},
}

// armBuilds builds every armRelease once per test run.
var armBuilds struct {
	once sync.Once
	bins map[string]string // name -> path
	errs map[string]error
	took time.Duration
}

// armBinary returns the built binary for r (building all of them the
// first time) and the emulator's path; it fails the test when either is
// missing.
func armBinary(t *testing.T, r armRelease) (qemu, bin string) {
	t.Helper()
	qemu, err := exec.LookPath(r.qemu)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (Debian qemu-user-static)", r.qemu)
	}
	armBuilds.once.Do(func() {
		start := time.Now()
		armBuilds.bins, armBuilds.errs = map[string]string{}, map[string]error{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, r := range armReleases {
			wg.Go(func() {
				out := filepath.Join(filepath.Dir(testBinary), "skewproxy-linux-"+r.name)
				err := buildBinary(out, r.env...)
				mu.Lock()
				defer mu.Unlock()
				armBuilds.bins[r.name], armBuilds.errs[r.name] = out, err
			})
		}
		wg.Wait()
		armBuilds.took = time.Since(start)
	})
	if err := armBuilds.errs[r.name]; err != nil {
		t.Fatal(err)
	}
	t.Logf("ARM builds took %v (once per run)", armBuilds.took.Round(time.Second))
	return qemu, armBuilds.bins[r.name]
}

// TestReleaseQEMU runs each ARM release binary under qemu-user.
func TestReleaseQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two ARM binaries (skipped in -short mode)")
	}
	chrony := "ntp://" + ntptest.Start(t)
	for _, r := range armReleases {
		t.Run(r.name, func(t *testing.T) {
			qemu, bin := armBinary(t, r)
			t.Run("static ELF", func(t *testing.T) { releaseQEMUCheckELF(t, bin, r.machine) })
			t.Run("version", func(t *testing.T) {
				out, errOut, code := releaseQEMURun(t, qemu, bin, "version")
				want := "skewproxy test-build (commit harness, "
				if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "linux/"+strings.TrimSuffix(r.name, "v7")) {
					t.Fatalf("version: exit %d, out %q, stderr %q", code, out, errOut)
				}
			})
			t.Run("time against chrony", func(t *testing.T) {
				out, errOut, code := releaseQEMURun(t, qemu, bin, "time", "--json", "--time-source", chrony)
				if code != 0 {
					t.Fatalf("time: exit %d, stderr %q", code, errOut)
				}
				var rs []struct {
					Source        string  `json:"source"`
					OffsetSeconds float64 `json:"offset_seconds"`
					Stratum       int     `json:"stratum"`
					Error         string  `json:"error"`
				}
				if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
					t.Fatalf("time --json output %q: %v", out, err)
				}
				// One query under emulation: allow its round trip.
				if r := rs[0]; r.Error != "" || r.Stratum == 0 || math.Abs(r.OffsetSeconds) > 0.25 {
					t.Errorf("result %+v, want chrony's answer with an offset near 0", r)
				}
			})
			t.Run("signed request through the proxy", func(t *testing.T) {
				fake := proxytest.NewAWS(t, proxytest.AWSOptions{Credentials: proxyKeys})
				p := startProxy(t, proxyOptions{
					Command: []string{qemu, bin},
					Args: []string{
						"--resolve", "sts.us-east-1.amazonaws.com:443=" + fake.URL(),
						"--resolve", "lambda.us-east-1.amazonaws.com:443=" + fake.URL(),
						"--upstream-ca", fake.CAFile(t),
						"--time-source", chrony,
					},
					Env: proxyCredsEnv(proxyKeys),
				})
				p.waitReady(t, 20*time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cfg := p.awsConfig()
				if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
					t.Fatalf("GetCallerIdentity through the %s proxy: %v", r.name, err)
				}
				if _, err := lambda.NewFromConfig(cfg).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arm"), Payload: []byte(`{}`)}); err != nil {
					t.Fatalf("Invoke through the %s proxy: %v", r.name, err)
				}
				fake.WaitIdle(ctx)
				if st := fake.Stats(); st.Verified != 2 || st.Operations["STS.GetCallerIdentity"] != 1 || st.Operations["Lambda.Invoke"] != 1 {
					t.Errorf("endpoint verified %d requests (%v), want GetCallerIdentity and Invoke", st.Verified, st.Operations)
				}
			})
		})
	}
}

// releaseQEMUCheckELF checks that bin is a static executable for machine.
func releaseQEMUCheckELF(t *testing.T, bin string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("machine %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("not static: has %v", p.Type)
		}
	}
}

// releaseQEMURun runs bin under qemu with a clean environment.
func releaseQEMURun(t *testing.T, qemu, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, append([]string{bin}, args...)...)
	cmd.Env = baseEnv(t, t.TempDir())
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish in 60s", filepath.Base(bin), args)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}
