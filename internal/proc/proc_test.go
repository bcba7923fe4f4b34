package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// start runs script with sh as a Process that is stopped at the end.
func start(t *testing.T, script string) *Process {
	t.Helper()
	p := Start(t, "sh", exec.Command("sh", "-c", script))
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, time.Second) })
	return p
}

// fatalOf runs fn on a FakeTB and returns what it failed or skipped with.
func fatalOf(t *testing.T, fn func(testing.TB)) string {
	f, _ := OnFake(t, func(tb testing.TB) struct{} { fn(tb); return struct{}{} })
	return f.Message()
}

func fileExists(name string) func() bool {
	return func() bool { _, err := os.Stat(name); return err == nil }
}

func TestStartFails(t *testing.T) {
	msg := fatalOf(t, func(tb testing.TB) { Start(tb, "srv", exec.Command("/nonexistent/srv")) })
	if !strings.HasPrefix(msg, "srv: start /nonexistent/srv: ") {
		t.Errorf("message: %q", msg)
	}
}

func TestWaitReady(t *testing.T) {
	t.Run("ready, then the addresses", func(t *testing.T) {
		flag := filepath.Join(t.TempDir(), "ready")
		p := start(t, "sleep 0.2; touch "+flag+"; exec sleep 60")
		if err := p.WaitReady(fileExists(flag), "no flag", []string{TakenAddr(t), TakenAddr(t)}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(flag); err != nil {
			t.Errorf("WaitReady returned before ready: %v", err)
		}
	})
	t.Run("never ready: the caller's words", func(t *testing.T) {
		p := start(t, "exec sleep 60")
		err := p.WaitReady(func() bool { return false }, "no flag after 200ms", []string{TakenAddr(t)}, 200*time.Millisecond)
		if err == nil || err.Error() != "no flag after 200ms" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("never ready: the probe's last error", func(t *testing.T) {
		p := start(t, "exec sleep 60")
		n := 0
		err := p.WaitProbe(func() error { n++; return fmt.Errorf("probe %d saw nothing", n) }, nil, 200*time.Millisecond)
		if n < 2 || err == nil || err.Error() != fmt.Sprintf("probe %d saw nothing", n) {
			t.Errorf("after %d probes: err = %v", n, err)
		}
	})
	t.Run("a probe, then the addresses", func(t *testing.T) {
		p := start(t, "exec sleep 60")
		n := 0
		probe := func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		}
		if err := p.WaitProbe(probe, []string{TakenAddr(t)}, 10*time.Second); err != nil || n != 3 {
			t.Errorf("after %d probes: err = %v", n, err)
		}
	})
	t.Run("ready, but an address refuses", func(t *testing.T) {
		p := start(t, "exec sleep 60")
		closed := FreeAddr(t, "test")
		err := p.WaitReady(func() bool { return true }, "no flag", []string{TakenAddr(t), closed}, 300*time.Millisecond)
		if err == nil || err.Error() != closed+" not accepting connections after 300ms" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("exits before it is ready", func(t *testing.T) {
		p := start(t, "exit 3")
		err := p.WaitReady(func() bool { return false }, "no flag", nil, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready: exit status 3") {
			t.Errorf("err = %v", err)
		}
		select {
		case <-p.Exited():
		default:
			t.Error("Exited not closed")
		}
		if p.Err() == nil {
			t.Error("Err() = nil after exit status 3")
		}
	})
}

func TestStop(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		p := start(t, "exec sleep 60")
		if p.Err() != nil {
			t.Errorf("Err() = %v before exit", p.Err())
		}
		killed, err := p.Stop(syscall.SIGTERM, 10*time.Second)
		if killed || err != nil {
			t.Fatalf("Stop = %v, %v", killed, err)
		}
		if p.Err() == nil || !strings.Contains(p.Err().Error(), "terminated") {
			t.Errorf("Err() = %v, want terminated", p.Err())
		}
	})
	t.Run("killed after grace, with its children", func(t *testing.T) {
		// The shell ignores SIGTERM, and so does the child it starts,
		// which only the kill of the group reaches.
		pidFile := filepath.Join(t.TempDir(), "child")
		p := start(t, `trap "" TERM; sleep 60 & echo $! > `+pidFile+`; wait`)
		if err := p.WaitReady(fileExists(pidFile), "no child", nil, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		killed, err := p.Stop(syscall.SIGTERM, 300*time.Millisecond)
		if !killed || err != nil {
			t.Fatalf("Stop = %v, %v, want killed", killed, err)
		}
		if d := time.Since(begin); d < 300*time.Millisecond {
			t.Errorf("killed after %s, before the grace period", d)
		}
		waitGone(t, readPid(t, pidFile))
	})
	t.Run("SIGKILL: the group at once", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "child")
		p := start(t, `sleep 60 & echo $! > `+pidFile+`; wait`)
		if err := p.WaitReady(fileExists(pidFile), "no child", nil, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		child := readPid(t, pidFile)
		begin := time.Now()
		killed, err := p.Stop(syscall.SIGKILL, time.Hour)
		if killed || err != nil {
			t.Fatalf("Stop = %v, %v, want not killed: the kill was asked for", killed, err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("stopped after %s: waited for the grace period", d)
		}
		if p.Err() == nil || !strings.Contains(p.Err().Error(), "killed") {
			t.Errorf("Err() = %v, want killed", p.Err())
		}
		waitGone(t, child)
	})
	t.Run("already exited", func(t *testing.T) {
		p := start(t, "exit 0")
		<-p.Exited()
		if killed, err := p.Stop(syscall.SIGTERM, time.Second); killed || err != nil {
			t.Errorf("Stop = %v, %v", killed, err)
		}
	})
	t.Run("on cleanup, then the logs of a failed test", func(t *testing.T) {
		for _, tc := range []struct {
			name             string
			failed, notReady bool
			wantLogs         bool
		}{
			{"passed", false, false, false},
			{"failed", true, false, true},
			{"failed in WaitReady, which showed them", true, true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := start(t, "exec sleep 60")
				if tc.notReady {
					p.WaitReady(func() bool { return false }, "no flag", nil, 0)
				}
				f := &FakeTB{TB: t}
				if tc.failed {
					f.Fail()
				}
				var stopped, logged bool
				p.StopOnCleanup(f, syscall.SIGTERM, 10*time.Second, func() {
					logged = true
					select {
					case <-p.Exited():
						stopped = true
					default:
					}
				})
				if len(f.cleanups) != 1 {
					t.Fatalf("%d cleanups", len(f.cleanups))
				}
				f.cleanups[0]()
				select {
				case <-p.Exited():
				default:
					t.Error("not stopped")
				}
				if logged != tc.wantLogs || logged && !stopped {
					t.Errorf("logs called: %v, after the stop: %v; want called: %v", logged, stopped, tc.wantLogs)
				}
			})
		}
	})
}

// readPid reads the process id a test's shell wrote to name.
func readPid(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone waits for pid to be gone or a zombie: the child a killed shell
// leaves is reaped by whoever adopts it, if anyone does.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		// The state follows the command, which is in parentheses.
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still running: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBinary(t *testing.T) {
	if got, err := LookPath("sh", "/nonexistent/sh"); err != nil || !filepath.IsAbs(got) {
		t.Errorf("LookPath(sh) = %q, %v", got, err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LookPath("no-such-server", sh); err != nil || got != sh {
		t.Errorf("LookPath with a fallback = %q, %v, want %s", got, err, sh)
	}

	const env = "IOPROXY_PROC_TEST_REQUIRE"
	run := func() string {
		return fatalOf(t, func(tb testing.TB) { Binary(tb, "no-such-server", "/nonexistent/no-such-server", env) })
	}
	t.Setenv(env, "")
	if msg := run(); !strings.HasPrefix(msg, "skipped: no-such-server: not on PATH and not at /nonexistent/no-such-server") ||
		!strings.Contains(msg, "set "+env+"=1") {
		t.Errorf("without %s: %q, want a skip", env, msg)
	}
	t.Setenv(env, "1")
	if msg := run(); strings.HasPrefix(msg, "skipped") || !strings.Contains(msg, "install no-such-server: ./scripts/deps") {
		t.Errorf("with %s=1: %q, want a failure", env, msg)
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t, "test")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("FreeAddr = %q", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr's port is not free: %v", err)
	}
	ln.Close()
}

func TestSignalName(t *testing.T) {
	if got := SignalName(syscall.SIGQUIT); got != "SIGQUIT" {
		t.Errorf("SignalName(SIGQUIT) = %q", got)
	}
	if got := SignalName(syscall.SIGUSR1); !strings.HasPrefix(got, "signal ") {
		t.Errorf("SignalName(SIGUSR1) = %q", got)
	}
}
