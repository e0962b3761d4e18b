// Package fleettest runs a real redis-server on loopback for tests of the
// fleet coordinator, and can stop, freeze and restart it to play the
// failures the coordinator must survive.
//
// It is test support only: nothing in the proxy imports it.
package fleettest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is one redis-server process on 127.0.0.1, started by Start. It keeps
// nothing on disk: a restart comes back empty, as a crashed cache node does.
type Redis struct {
	// Addr is HOST:PORT; it stays the same across Restart.
	Addr string

	bin, dir string
	extra    []string // more redis-server arguments

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server for the duration of the test and kills it in
// t.Cleanup. When the binary is missing the test fails (skips under
// -short): run `make deps` (Debian package redis-server).
func Start(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testing.Short() {
			t.Skipf("redis-server not found: run `make deps` (%v)", err)
		}
		t.Fatalf("redis-server not found: run `make deps` (Debian package redis-server): %v", err)
	}
	return start(t, bin, nil)
}

// start runs one server with extra arguments, killed in t.Cleanup.
func start(t testing.TB, bin string, extra []string) *Redis {
	t.Helper()
	r := &Redis{bin: bin, dir: t.TempDir(), extra: extra}
	var err error
	for range 5 { // a free port may be taken between the probe and the start
		if r.Addr, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("fleettest: start redis-server: %v\n%s", err, r.Logs())
	}
	t.Cleanup(func() { _ = r.kill() })
	return r
}

// URL is the coordinator URL of the server (database 0).
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Stop kills the server at once (SIGKILL), as a crash does.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	if err := r.kill(); err != nil {
		t.Fatalf("fleettest: stop redis-server: %v", err)
	}
}

// Restart starts the server again on the same address, empty.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	_ = r.kill()
	var err error
	for range 20 { // the old listener may linger for a moment
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fleettest: restart redis-server: %v\n%s", err, r.Logs())
}

// Freeze stops the process (SIGSTOP): connections stay open and nothing
// answers, as with an overloaded or partitioned server. Thaw resumes it.
func (r *Redis) Freeze(t testing.TB) { t.Helper(); r.signal(t, syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (r *Redis) Thaw(t testing.TB) { t.Helper(); r.signal(t, syscall.SIGCONT) }

func (r *Redis) signal(t testing.TB, sig syscall.Signal) {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		t.Fatalf("fleettest: redis-server is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("fleettest: signal redis-server: %v", err)
	}
}

// Logs returns the server's log.
func (r *Redis) Logs() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin,
		"--bind", "127.0.0.1", "--port", port, "--protected-mode", "yes",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"), "--daemonize", "no")
	cmd.Args = append(cmd.Args, r.extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for {
		if ping(r.Addr) == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("redis-server exited during start")
		case <-deadline:
			_ = r.kill()
			return fmt.Errorf("redis-server not answering PING at %s after 10s", r.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill ends the process (SIGCONT first, in case it is frozen).
func (r *Redis) kill() error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("redis-server (pid %d) did not exit", cmd.Process.Pid)
	}
}

// ping sends PING in RESP and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("fleettest: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
