// Package ntptest starts chrony as a real NTP server on loopback for tests.
//
// It is not a fake: chrony serves this machine's clock (local stratum 8),
// so its time equals time.Now() here; StartShifted runs it under
// libfaketime to serve a world whose true time is the machine clock plus a
// shift. It never touches the machine's clock (chronyd -x) and it is not
// meant for anything but tests.
package ntptest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// startTimeout bounds how long chrony may take to answer valid queries.
const startTimeout = 15 * time.Second

// Start runs chronyd on 127.0.0.1 and a free unprivileged UDP port, waits
// until it gives valid answers, and returns its "127.0.0.1:PORT" address.
// The server is killed when the test ends. Without chronyd the test fails
// (it is skipped under -short).
func Start(t testing.TB) string {
	t.Helper()
	return StartShifted(t, 0)
}

// StartShifted is Start with chronyd under faketime: it serves the machine
// clock plus shift (+2h, -10 years), so that tests can move the world's
// true time while the program under test reads the real machine clock.
// Without faketime the test fails (skipped under -short).
func StartShifted(t testing.TB, shift time.Duration) string {
	t.Helper()
	var prefix []string
	if shift != 0 {
		ft, err := exec.LookPath("faketime")
		if err != nil {
			if testing.Short() {
				t.Skip("faketime not found (skipped in -short mode)")
			}
			t.Fatalf("faketime not found: run `make deps`")
		}
		// libfaketime's relative offset, in whole seconds.
		prefix = []string{ft, "-f", fmt.Sprintf("%+ds", int64(shift/time.Second))}
	}
	bin, err := exec.LookPath("chronyd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/chronyd", "/sbin/chronyd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if testing.Short() {
			t.Skip("chronyd not found (skipped in -short mode)")
		}
		t.Fatalf("chronyd not found: run `make deps`")
	}
	var lastErr error
	for range 3 { // a free port may be taken between probing and binding
		addr, err := start(t, prefix, bin)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("start chronyd: %v", lastErr)
	return ""
}

// start makes one attempt at running chronyd.
func start(t testing.TB, prefix []string, bin string) (string, error) {
	port, err := freeUDPPort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	text := fmt.Sprintf(`port %d
bindaddress 127.0.0.1
local stratum 8
allow 127.0.0.1
cmdport 0
bindcmdaddress /
pidfile %s
driftfile %s
`, port, filepath.Join(dir, "chronyd.pid"), filepath.Join(dir, "chrony.drift"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("write chrony.conf: %w", err)
	}
	args := []string{"-x", "-d", "-f", conf}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // keep access to the temp dir
	} else {
		args = append(args, "-U")
	}
	argv := append(append(prefix, bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// faketime runs chronyd as its child: kill the whole process group, or
	// chronyd outlives the test and holds the log pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("run %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return "", fmt.Errorf("chronyd exited: %s", logs.String())
		default:
		}
		resp, err := ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: 200 * time.Millisecond})
		if err == nil {
			err = resp.Validate()
		}
		if err == nil {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("chronyd log:\n%s", logs.String())
				}
			})
			return addr, nil
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", fmt.Errorf("chronyd on %s gave no valid answer within %v: %v; log:\n%s", addr, startTimeout, lastErr, logs.String())
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("probe free UDP port: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for chronyd's output and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
