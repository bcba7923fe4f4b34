// Package proc runs the server binaries that tests start: the end-to-end
// harnesses for real reverse proxies (e2e/nginx, e2e/caddy) and the Redis
// harness (internal/redistest), and holds what the proxies' own tests
// share. Each harness knows its server: how to configure it and how it
// says it is ready. What is left is the same for any server that a test
// starts and must be sure to stop, and it lives here so that a fix to it
// (a leaked process, a hung run) reaches every harness at once.
package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a server started by [Start].
type Process struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
	// notReady is set when WaitReady failed, whose caller has shown the
	// server's logs in its message.
	notReady bool
}

// Start starts cmd, whose output, environment and directory the caller has
// set, in a process group of its own: a server may start workers (nginx
// does) that outlive a killed parent, and only a kill of the group reaches
// them. If the test binary dies without cleanup (a panic, a timeout), the
// server gets SIGTERM, so that it shuts down and frees its ports rather
// than answer the next run. name (the harness's server) starts the
// messages of a failure, which fails t.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", name, cmd.Path, err)
	}
	p := &Process{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// Pid is the process's id, and its group's: a server may write it out
// once it is up (nginx's pid file), which makes a readiness sign.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and [Process.Err] is set,
// so that a wait for anything else can stop when the server is gone.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process exited (nil for status 0), once [Process.Exited]
// is closed; nil before.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// WaitReady waits until ready reports true and then until each of addrs
// accepts a connection. A port that accepts is not enough on its own:
// another process may hold it while the server still retries its bind or
// is about to give up, so the server's own sign (ready) comes first; once
// given, ready is not asked again. It fails as soon as the process exits,
// and after timeout with unready (the caller's words for what ready did
// not see) or with the addresses that still refuse.
func (p *Process) WaitReady(ready func() bool, unready string, addrs []string, timeout time.Duration) error {
	probe := func() error {
		if ready() {
			return nil
		}
		return errors.New(unready)
	}
	return p.WaitProbe(probe, addrs, timeout)
}

// WaitProbe is [Process.WaitReady] for a sign of readiness that can say
// why it is not there yet: probe returns nil once the server is ready, and
// otherwise what it saw (a server that answers, but not yet, or not this
// one). After timeout, without a nil from probe, WaitProbe fails with the
// last of these errors, unwrapped: they are the caller's words, and
// should say how long it waited.
func (p *Process) WaitProbe(probe func() error, addrs []string, timeout time.Duration) error {
	err := p.waitReady(probe, addrs, timeout)
	p.notReady = err != nil
	return err
}

func (p *Process) waitReady(probe func() error, addrs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pending := append([]string(nil), addrs...)
	isReady := false
	var unready error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		default:
		}
		if !isReady {
			unready = probe()
			isReady = unready == nil
		}
		if isReady {
			for len(pending) > 0 {
				c, err := net.DialTimeout("tcp", pending[0], 200*time.Millisecond)
				if err != nil {
					break
				}
				_ = c.Close()
				pending = pending[1:]
			}
			if len(pending) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if !isReady {
				return unready
			}
			return fmt.Errorf("%s not accepting connections after %s", strings.Join(pending, ", "), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends sig, the server's graceful stop, and kills the process group
// if the process has not exited after grace: a graceful stop waits for open
// requests, and a test that leaves a long poll hanging must not hang the
// run. killed says the kill was needed, which is not the test's failure.
// A sig of SIGKILL (a crash, which a test may want) goes to the whole
// group at once, so that no child the server forked outlives it; that
// kill was asked for, not needed. A process that has already exited is
// left as it is: whoever waited for it has reported why.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) (killed bool, err error) {
	select {
	case <-p.exited:
		return false, nil
	default:
	}
	if sig != syscall.SIGKILL {
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return false, fmt.Errorf("stop: send %s: %w", SignalName(sig), err)
		}
		select {
		case <-p.exited:
			return false, nil
		case <-time.After(grace):
		}
		killed = true
	}
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		if killed {
			return false, fmt.Errorf("stop: kill process group after %s: %w", grace, err)
		}
		return false, fmt.Errorf("stop: kill process group: %w", err)
	}
	select {
	case <-p.exited:
	case <-time.After(killWait):
		return killed, fmt.Errorf("stop: process %d still there %s after SIGKILL", p.Pid(), killWait)
	}
	return killed, nil
}

// killWait bounds the wait for a process to be gone once its group got
// SIGKILL. That takes milliseconds, unless the process is stuck in the
// kernel or something outside the group still holds its output pipe (the
// command's WaitDelay, if the caller set one, bounds that wait too).
const killWait = 10 * time.Second

// StopOnCleanup stops the process with [Process.Stop] when the test ends.
// A stop that fails is the test's error; a kill is only logged, since a
// request the test left open (a long poll) keeps a graceful stop waiting.
// Then, if the test failed, logs (if not nil) adds the server's logs to
// its output: they may say why. Not after a failed WaitReady, whose
// caller has put them in its message; once is enough.
func (p *Process) StopOnCleanup(t testing.TB, sig syscall.Signal, grace time.Duration, logs func()) {
	t.Cleanup(func() {
		if killed, err := p.Stop(sig, grace); err != nil {
			t.Errorf("%s: %v", p.name, err)
		} else if killed {
			t.Logf("%s: not stopped %s after %s, killed", p.name, grace, SignalName(sig))
		}
		if logs != nil && t.Failed() && !p.notReady {
			logs()
		}
	})
}

// SignalName is sig as the server's documentation names it ("SIGQUIT"),
// which syscall's String ("quit") is not.
func SignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return fmt.Sprintf("signal %d (%v)", int(sig), sig)
}

// TakenAddr returns a loopback address on which something other than a
// harness's server listens until the test ends: a server that cannot bind
// it must fail to start, not pass for ready.
func TakenAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a server's listener; name (the harness) starts a failure's
// message. Another process may take the port before the server binds it;
// WaitReady then fails rather than let the test talk to the wrong server.
func FreeAddr(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%s: find a free port: %v", name, err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("%s: find a free port: %v", name, err)
	}
	return addr
}

// LookPath finds the binary name on PATH, then at fallback, where the
// Debian package puts it: /usr/sbin is not on the PATH of every user or CI
// runner.
func LookPath(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err != nil {
		return "", fmt.Errorf("not on PATH and not at %s: %w", fallback, err)
	}
	return fallback, nil
}

// Binary is [LookPath] for a harness's Start. A missing server skips the
// test, so that a developer without it can still run the rest, unless the
// environment variable requireEnv is set: ./scripts/test sets it, so that
// CI cannot pass by skipping.
func Binary(t testing.TB, name, fallback, requireEnv string) string {
	t.Helper()
	bin, err := LookPath(name, fallback)
	if err != nil {
		if os.Getenv(requireEnv) != "" {
			t.Fatalf("%s: %v; install %s: ./scripts/deps", name, err, name)
		}
		t.Skipf("%s: %v (install %s: ./scripts/deps); set %s=1 to make this a failure", name, err, name, requireEnv)
	}
	return bin
}

// Numbered prefixes line numbers to a config, which the servers' errors
// refer to.
func Numbered(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("%3d  %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}
