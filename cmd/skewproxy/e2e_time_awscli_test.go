package main

// The AWS CLI v2 as the client with the wrong clock (faketime), against
// MinIO through the real binary, and the retry rule for streamed bodies.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skewproxy/skewproxy/proxy/proxytest"
	"github.com/skewproxy/skewproxy/timesource/ntptest"
)

// timeE2EAWSCLI runs the AWS CLI v2, optionally under faketime, with a
// clean environment plus env, bounded to 90 s.
func timeE2EAWSCLI(t *testing.T, faketimeSpec string, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	name, argv := "/usr/bin/aws", args
	if faketimeSpec != "" {
		name, argv = "faketime", append([]string{"-f", faketimeSpec, "/usr/bin/aws"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	home := t.TempDir()
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional",
		"AWS_MAX_ATTEMPTS=1",
		"AWS_PAGER=",
	}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestTimeE2EAWSCLIUnderFaketimeMinIO: the AWS CLI v2 on a host 20 minutes
// behind (faketime) stores and reads objects in a real MinIO through the
// proxy (also 20 minutes behind, corrected by chrony); the same CLI straight
// to MinIO with the real keys is refused with RequestTimeTooSkewed.
func TestTimeE2EAWSCLIUnderFaketimeMinIO(t *testing.T) {
	if _, err := os.Stat("/usr/bin/aws"); err != nil {
		t.Skip("AWS CLI v2 not at /usr/bin/aws")
	}
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Skip("faketime not installed")
	}
	// faketime must really shift the clock here.
	out, err := exec.Command("faketime", "-f", "-20m", "date", "+%s").Output()
	if err != nil {
		t.Fatalf("faketime -f -20m date: %v", err)
	}
	var faked int64
	fmt.Sscan(strings.TrimSpace(string(out)), &faked)
	if d := time.Now().Unix() - faked; d < 1190 || d > 1210 {
		t.Fatalf("faketime -f -20m date is %ds behind, want 1200", d)
	}

	chrony := ntptest.Start(t)
	minio := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--resolve", "*.s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--time-source", "ntp://" + chrony,
			"--clock-offset", "-20m",
		},
		Env: proxyCredsEnv(minio.Credentials),
	})
	timeE2EWaitReady(t, p, time.Now(), 5*time.Second)

	viaProxy := []string{
		"HTTPS_PROXY=" + p.ProxyURL.String(),
		"AWS_CA_BUNDLE=" + p.CAFile,
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER",
		"AWS_SECRET_ACCESS_KEY=placeholder-secret",
	}
	content := "corrected time, " + time.Now().UTC().Format(time.RFC3339Nano) + "\n"
	local := filepath.Join(t.TempDir(), "object.txt")
	if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// 9 MiB: the CLI uploads it in two parts (multipart, 8 MiB threshold).
	big := bytes.Repeat([]byte("skewproxy corrected time\n"), 9<<20/25)
	bigLocal := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(bigLocal, big, 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		args []string
	}{
		{name: "create bucket", args: []string{"s3api", "create-bucket", "--bucket", "timee2e"}},
		{name: "list buckets", args: []string{"s3api", "list-buckets"}}, // host s3.us-east-1.amazonaws.com
		{name: "put object", args: []string{"s3", "cp", local, "s3://timee2e/dir/object.txt"}},
		{name: "put multipart object", args: []string{"s3", "cp", bigLocal, "s3://timee2e/dir/big.bin"}},
		{name: "list", args: []string{"s3", "ls", "s3://timee2e/dir/"}},
	}
	for _, st := range steps {
		if out, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, st.args...); err != nil {
			t.Fatalf("%s through the proxy: %v\nstdout: %s\nstderr: %s", st.name, err, out, errOut)
		}
	}
	reads := []struct {
		key  string
		want []byte
	}{
		{key: "dir/object.txt", want: []byte(content)},
		{key: "dir/big.bin", want: big},
	}
	for _, r := range reads {
		got, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, "s3", "cp", "s3://timee2e/"+r.key, "-")
		if err != nil {
			t.Fatalf("get %s through the proxy: %v\nstderr: %s", r.key, err, errOut)
		}
		if !bytes.Equal([]byte(got), r.want) {
			t.Errorf("%s read back: %d bytes, want %d bytes as written", r.key, len(got), len(r.want))
		}
	}
	recs := timeE2ERequestLogs(t, p, 7)
	for _, r := range recs {
		t.Logf("proxy: %v %v %v status=%v retried=%v", r["method"], r["host"], r["operation"], r["status"], r["retried"])
	}
	if len(recs) < 7 || timeE2ERetried(recs) != 0 {
		t.Errorf("%d request log records, %d retried; want >= 7 and none retried (chrony corrected the clock)", len(recs), timeE2ERetried(recs))
	}

	direct := []string{
		"AWS_ACCESS_KEY_ID=" + minio.Credentials.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + minio.Credentials.SecretAccessKey,
	}
	endpoint := []string{"--endpoint-url", minio.Endpoint(), "s3api", "list-objects-v2", "--bucket", "timee2e"}
	_, errOut, err := timeE2EAWSCLI(t, "-20m", direct, endpoint...)
	t.Logf("CLI 20m behind straight to MinIO: %s", strings.TrimSpace(errOut))
	if err == nil || !strings.Contains(errOut, "RequestTimeTooSkewed") {
		t.Errorf("CLI 20m behind straight to MinIO: err %v, stderr %q; want RequestTimeTooSkewed", err, errOut)
	}
	// The same call with the true time works: the refusal was the clock's.
	if out, errOut, err := timeE2EAWSCLI(t, "", direct, endpoint...); err != nil || !strings.Contains(out, "dir/object.txt") {
		t.Errorf("CLI with the true time straight to MinIO: err %v, stdout %q, stderr %q", err, out, errOut)
	}
}

// TestTimeE2EAWSCLINoNTPRetriesAgainstMinIO is the IoT gateway: the whole
// host is 20 minutes behind and no NTP server answers. The first request
// MinIO refuses (RequestTimeTooSkewed); the proxy learns the server time
// from that answer, re-signs and retries once, and the CLI sees success.
// Later requests go through without a retry.
func TestTimeE2EAWSCLINoNTPRetriesAgainstMinIO(t *testing.T) {
	if _, err := os.Stat("/usr/bin/aws"); err != nil {
		t.Skip("AWS CLI v2 not at /usr/bin/aws")
	}
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Skip("faketime not installed")
	}
	minio := proxytest.StartMinIO(t)
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--resolve", "*.s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--time-source", timeE2ENoNTP,
			"--clock-offset", "-20m",
		},
		Env: proxyCredsEnv(minio.Credentials),
	})
	viaProxy := []string{
		"HTTPS_PROXY=" + p.ProxyURL.String(),
		"AWS_CA_BUNDLE=" + p.CAFile,
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER",
		"AWS_SECRET_ACCESS_KEY=placeholder-secret",
	}
	if out, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, "s3api", "create-bucket", "--bucket", "gateway"); err != nil {
		t.Fatalf("create bucket through the proxy: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	recs := timeE2ERequestLogs(t, p, 1)
	if len(recs) != 1 || recs[0]["retried"] != true {
		t.Fatalf("request log records %v, want one with retried=true", recs)
	}
	s := timeE2EStatus(t, p, 3)
	t.Logf("after MinIO's answer: source=%s corrected-time error=%v offset=%.3fs", s.Clock.Source, s.err(), s.Clock.OffsetSeconds)
	if !s.Clock.Synced || s.err() > time.Second {
		t.Errorf("clock synced=%v, %v off the true time; want synced within 1s", s.Clock.Synced, s.err())
	}

	local := filepath.Join(t.TempDir(), "reading.json")
	if err := os.WriteFile(local, []byte(`{"temperature":21.5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, "s3", "cp", local, "s3://gateway/reading.json"); err != nil {
		t.Fatalf("put object through the proxy: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	got, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, "s3", "cp", "s3://gateway/reading.json", "-")
	if err != nil || got != `{"temperature":21.5}` {
		t.Fatalf("get object through the proxy: %v, got %q\nstderr: %s", err, got, errOut)
	}
	recs = timeE2ERequestLogs(t, p, 4)
	if n := timeE2ERetried(recs); len(recs) < 4 || n != 1 {
		t.Errorf("%d request log records, %d retried; want >= 4 with only the first retried", len(recs), n)
	}
}

// TestTimeE2ENoRetryForStreamedBody: a skew failure is retried only when
// the body can be sent again. With no NTP and the host 20 minutes behind,
// the proxy's first request is a 2 MiB PutObject, which it streams (over
// its 1 MiB replay buffer): MinIO's RequestTimeTooSkewed reaches the client
// after exactly one attempt, yet the clock learns from it and the same
// upload then succeeds without a retry.
func TestTimeE2ENoRetryForStreamedBody(t *testing.T) {
	if _, err := os.Stat("/usr/bin/aws"); err != nil {
		t.Skip("AWS CLI v2 not at /usr/bin/aws")
	}
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Skip("faketime not installed")
	}
	minio := proxytest.StartMinIO(t)
	direct := []string{
		"AWS_ACCESS_KEY_ID=" + minio.Credentials.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + minio.Credentials.SecretAccessKey,
	}
	// The bucket is made straight at MinIO, so the proxy's first request is the upload.
	if out, errOut, err := timeE2EAWSCLI(t, "", direct, "--endpoint-url", minio.Endpoint(), "s3api", "create-bucket", "--bucket", "streamed"); err != nil {
		t.Fatalf("create bucket at MinIO: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	p := startProxy(t, proxyOptions{
		Args: []string{
			"--resolve", "s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--resolve", "*.s3.us-east-1.amazonaws.com:443=" + minio.Endpoint(),
			"--time-source", timeE2ENoNTP,
			"--clock-offset", "-20m",
		},
		Env: proxyCredsEnv(minio.Credentials),
	})
	viaProxy := []string{
		"HTTPS_PROXY=" + p.ProxyURL.String(),
		"AWS_CA_BUNDLE=" + p.CAFile,
		"AWS_ACCESS_KEY_ID=AKIDPLACEHOLDER",
		"AWS_SECRET_ACCESS_KEY=placeholder-secret",
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	local := filepath.Join(t.TempDir(), "two-mib.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	upload := []string{"s3api", "put-object", "--bucket", "streamed", "--key", "two-mib.bin", "--body", local}

	_, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, upload...)
	t.Logf("first upload: err %v, stderr %s", err, strings.TrimSpace(errOut))
	if err == nil || !strings.Contains(errOut, "RequestTimeTooSkewed") {
		t.Errorf("first upload: err %v, stderr %q; want RequestTimeTooSkewed passed through (no retry of a streamed body)", err, errOut)
	}
	recs := timeE2ERequestLogs(t, p, 1)
	if len(recs) != 1 || recs[0]["retried"] == true || recs[0]["failure"] != "request_time_too_skewed" {
		t.Errorf("request log records %v, want one, not retried, failure request_time_too_skewed", recs)
	}
	if s := timeE2EStatus(t, p, 3); !s.Clock.Synced || s.err() > time.Second {
		t.Errorf("after the refusal: clock synced=%v, %v off the true time; want synced within 1s", s.Clock.Synced, s.err())
	}

	if out, errOut, err := timeE2EAWSCLI(t, "-20m", viaProxy, upload...); err != nil {
		t.Fatalf("second upload: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	recs = timeE2ERequestLogs(t, p, 2)
	if len(recs) != 2 || timeE2ERetried(recs) != 0 {
		t.Errorf("request log records %v, want two, none retried", recs)
	}
	got, errOut, err := timeE2EAWSCLI(t, "", direct, "--endpoint-url", minio.Endpoint(), "s3", "cp", "s3://streamed/two-mib.bin", "-")
	if err != nil || !bytes.Equal([]byte(got), data) {
		t.Errorf("read back from MinIO: err %v, %d bytes (want %d)\nstderr: %s", err, len(got), len(data), errOut)
	}
}
