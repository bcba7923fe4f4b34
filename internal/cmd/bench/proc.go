package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds the wait for each subject to answer: every one
	// of them is up in well under a second.
	readyTimeout = 10 * time.Second
	// stopGrace is how long a process may take to stop on SIGTERM before
	// its process group is killed: a run must not hang on its way out.
	stopGrace = 5 * time.Second
	// killWait bounds the wait for a process once its group got SIGKILL.
	killWait = 5 * time.Second
	// logTailLines is how much of a process's log an error shows.
	logTailLines = 20
)

// process is a server this run started, in a process group of its own.
type process struct {
	name    string
	log     string // the file its output goes to
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// processes are every server of a run, stopped together at its end.
type processes struct {
	progress io.Writer
	mu       sync.Mutex
	list     []*process
}

// start starts cmd with its output (stdout too, unless the caller set it)
// appended to logPath. The process gets a group of its own, so that a
// stop reaches the workers it forks (nginx's), and so that a Ctrl-C in
// the terminal reaches only this program, which stops everything in
// order. If this program dies without stopping it, the kernel sends it
// SIGTERM (Pdeathsig), so that no server is left holding a port.
func (ps *processes) start(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: open its log: %w", name, err)
	}
	// The child has its own descriptor once started; ours can go.
	defer f.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll stops every process, the last started first (the proxies before
// the backend they hold connections to), and says what went wrong.
func (ps *processes) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].stop(); err != nil {
			fmt.Fprintf(ps.progress, "bench: stop %s: %v\n", list[i].name, err)
		}
	}
}

// stop sends SIGTERM (a fast or graceful stop for each of these servers),
// and kills the process group if the process is still there after
// stopGrace. The group is only killed while its leader runs: once the
// leader is gone, its id, and so the group's, may be another process's.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopGrace):
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill its process group after %s: %w", stopGrace, err)
	}
	select {
	case <-p.exited:
		return fmt.Errorf("not stopped %s after SIGTERM, killed", stopGrace)
	case <-time.After(killWait):
		return fmt.Errorf("process %d still there %s after SIGKILL", p.cmd.Process.Pid, killWait)
	}
}

// waitUntil waits for probe to return nil, for at most readyTimeout. It
// fails at once if p exits or ctx ends, and otherwise after the timeout
// with probe's last word; both with the end of p's log, which says why.
func (p *process) waitUntil(ctx context.Context, probe func(context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%s)%s", p.name, p.exitStatus(), p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", p.name, ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v%s", p.name, readyTimeout, err, p.logTail())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// exitStatus is how p exited, once it has: "exit status 1", "signal:
// killed", or "exit status 0", which an error from Wait leaves unsaid.
func (p *process) exitStatus() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// logTail is the end of p's log, indented, for an error message.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("\n  (read its log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return fmt.Sprintf("\n  (its log %s is empty)", p.log)
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("\n  its log %s ends:\n    %s", p.log, strings.Join(lines, "\n    "))
}

// freeAddr returns a loopback address whose port was free a moment ago.
// Another process may take it before the server binds it; the check of
// each subject's answer (verify) then fails rather than measure the wrong
// server.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}
