// Package redistest runs a real redis-server on loopback for the tests of
// code that talks to Redis (the Redis session store). A fake would only
// encode our own idea of Redis; the real one shows what a lost connection,
// a restart or a server that is gone does to a client.
//
// Each [Start] runs its own redis-server on a free 127.0.0.1 port with a
// data directory of its own, so tests may run in parallel, and stops it
// when the test ends. Tests need the Debian package redis-server
// (./scripts/deps installs it). Without it they skip, unless
// IOPROXY_REQUIRE_REDIS=1, which ./scripts/test sets so that CI cannot pass
// by skipping.
//
// The handling of the process (its own process group, the wait until it
// is ready, stop then kill, skip or fail when redis-server is missing) is
// internal/proc's, shared with the nginx and Caddy harnesses; what is
// Redis's own is here: the command line, and the readiness probe (PING,
// then INFO's process_id) in probe.go.
package redistest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/ioproxy/ioproxy/internal/tail"
)

const (
	// readyTimeout bounds the wait for a started redis-server to answer
	// PING. It answers in a few milliseconds, after loading its AOF.
	readyTimeout = 10 * time.Second
	// stopGrace is how long a graceful stop (SIGTERM) may take before the
	// process group is killed. Redis shuts down at once unless it must
	// write a snapshot, which the harness never asks it to.
	stopGrace = 10 * time.Second
	// requireEnv turns a missing redis-server from a skip into a failure.
	requireEnv = "IOPROXY_REQUIRE_REDIS"
	// binaryName is looked up on PATH; debianBinary is where the Debian
	// package puts it.
	binaryName   = "redis-server"
	debianBinary = "/usr/bin/redis-server"
	// bindAttempts is how many free ports Start tries: a port free a
	// moment ago may be taken (by another test's server, or as the local
	// port of an outgoing connection) before redis-server binds it.
	bindAttempts = 3
	// logsMax is how much of redis-server's output is kept.
	logsMax = 256 << 10
)

// Options configure a Server. The zero value is an in-memory Redis: no
// snapshots, no AOF, so that nothing a test writes survives a restart.
type Options struct {
	// AOF turns on append-only persistence with appendfsync always, in the
	// server's own directory: every write acknowledged to a client is on
	// disk, so it survives [Server.Restart], even after [Server.Kill].
	AOF bool
	// Args are further redis-server arguments, after the harness's own,
	// such as "--maxmemory", "1mb", "--maxmemory-policy", "noeviction".
	// They may not set what the harness relies on (port, bind, dir,
	// logging, passwords, other listeners); Start fails the test if they
	// do.
	Args []string

	// binary and fallback replace redis-server and /usr/bin/redis-server,
	// so that a test can see what a missing binary does.
	binary, fallback string
	// pickAddr replaces freeAddr, so that a test can hand Start a port
	// that is taken.
	pickAddr func(testing.TB) string
}

// Server is a redis-server started by [Start]. It stops when the test
// ends, and if the test failed its output is added to the test's.
type Server struct {
	addr string
	dir  string
	bin  string
	args []string
	logs *tail.Buffer

	mu   sync.Mutex
	proc *proc.Process // nil once stopped by Stop, Kill or a failed start
	// shown is set once a failure's message has carried the logs, so that
	// the cleanup does not add them a second time.
	shown bool
}

// Start runs redis-server and returns once it answers PING on a free
// 127.0.0.1 port. It reads no config file: everything is on its command
// line (see [Server.CommandLine]), with a temp directory as --dir. Start
// fails the test with redis-server's output if it does not come up within
// 10 s, and skips it if redis-server is not installed (fails, with
// IOPROXY_REQUIRE_REDIS set).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	name, fallback := opts.binary, opts.fallback
	if name == "" {
		name, fallback = binaryName, debianBinary
	}
	bin := proc.Binary(t, name, fallback, requireEnv)
	if err := checkArgs(opts.Args); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	pick := opts.pickAddr
	if pick == nil {
		pick = freeAddr
	}

	// Before the cleanup below, which then runs first: the server stops
	// before its directory goes.
	s := &Server{dir: t.TempDir(), bin: bin, logs: tail.New(logsMax)}
	s.args = append(baseArgs(s.dir, opts.AOF), opts.Args...)
	t.Cleanup(func() { s.cleanup(t) })

	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		s.addr = pick(t)
		err := s.startLocked(t)
		if err == nil {
			return s
		}
		if errors.Is(err, errAddrInUse) && attempt < bindAttempts {
			t.Logf("redis-server: %s was taken, trying another port", s.addr)
			continue
		}
		s.shown = true
		t.Fatalf("redis-server: %v\ncommand: %s\noutput:\n%s", err, s.commandLine(), s.Logs())
	}
}

// baseArgs is the harness's part of the command line. It must not read
// /etc/redis/redis.conf (no file argument), nor listen anywhere but
// loopback. --port, from the address, goes before it (commandArgs).
func baseArgs(dir string, aof bool) []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--daemonize", "no",
		"--supervised", "no",
		"--logfile", "",
		"--loglevel", "notice",
		"--always-show-logo", "no",
		"--dir", dir,
		"--save", "",
	}
	if aof {
		return append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	return append(args, "--appendonly", "no")
}

// checkArgs refuses the directives the harness sets or relies on: where
// Redis listens and keeps its files, where it logs (the harness reads its
// stdout), and a password, since readiness is an unauthenticated PING.
func checkArgs(args []string) error {
	for _, a := range args {
		d, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		switch strings.ToLower(d) {
		case "port", "bind", "unixsocket", "tls-port", "dir", "daemonize", "logfile",
			"include", "requirepass", "aclfile", "user":
			return fmt.Errorf("Options.Args sets %s, which the harness sets itself", a)
		}
	}
	return nil
}

// Addr is the server's address, 127.0.0.1:PORT. It stays the same across
// [Server.Restart].
func (s *Server) Addr() string { return s.addr }

// URL is the server's database 0 as go-redis's ParseURL reads it:
// redis://127.0.0.1:PORT/0.
func (s *Server) URL() string { return "redis://" + s.addr + "/0" }

// Dir is the server's data directory (its --dir, which holds the AOF). It
// is removed when the test ends.
func (s *Server) Dir() string { return s.dir }

// CommandLine is how redis-server is run, for messages.
func (s *Server) CommandLine() string { return s.commandLine() }

// Logs returns what redis-server has written so far, across restarts (the
// end of it, if it is long).
func (s *Server) Logs() string { return s.logs.String() }

// Restart stops the server (gracefully, if it is running) and starts it
// again on the same port and directory, returning once it answers PING,
// which it does only once it has loaded its data. With [Options.AOF] every
// acknowledged write is still there. It works as well after [Server.Stop]
// or [Server.Kill], to bring a server back that a test took away.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(t, syscall.SIGTERM); err != nil {
		t.Fatalf("redis-server: restart: %v", err)
	}
	fmt.Fprintf(s.logs, "--- redistest: restarting on %s ---\n", s.addr)
	if err := s.startLocked(t); err != nil {
		s.shown = true
		t.Fatalf("redis-server: restart on %s: %v\ncommand: %s\noutput:\n%s", s.addr, err, s.commandLine(), s.Logs())
	}
}

// Stop shuts the server down as an operator would (SIGTERM), and returns
// once it has exited: clients see their connections closed and new ones
// refused. [Server.Restart] brings it back. Stopping a stopped server does
// nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(t, syscall.SIGTERM); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
}

// Kill kills the server (SIGKILL, to its process group) and returns once
// it is gone: a crash, with no chance to flush anything that is not
// already on disk. Killing a stopped server does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(t, syscall.SIGKILL); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
}

// startLocked starts redis-server on s.addr and waits until it is ready.
// On failure nothing is left running. A failure to start the binary at all
// fails t.
func (s *Server) startLocked(t testing.TB) error {
	attempt := tail.New(64 << 10)
	cmd := exec.Command(s.bin, s.commandArgs()...)
	cmd.Dir = s.dir
	out := io.MultiWriter(s.logs, attempt)
	cmd.Stdout, cmd.Stderr = out, out
	// A child Redis forked (an AOF rewrite) holds the output pipe too;
	// once the server has exited, Wait must not wait for it.
	cmd.WaitDelay = time.Second
	// In a process group of its own (see proc.Start), so that a kill
	// reaches the children Redis forks (an AOF rewrite, a snapshot).
	p := proc.Start(t, binaryName, cmd)
	if err := p.WaitProbe(readiness(s.addr, p), nil, readyTimeout); err != nil {
		// Not ready yet, or never: either way it must not linger.
		_, _ = p.Stop(syscall.SIGKILL, 0)
		if strings.Contains(attempt.String(), "Address already in use") {
			return fmt.Errorf("%s: %w: %v", s.addr, errAddrInUse, err)
		}
		return err
	}
	s.proc = p
	return nil
}

// stopLocked stops the running server, if any, with sig, killing its
// process group if it has not exited after stopGrace.
func (s *Server) stopLocked(t testing.TB, sig syscall.Signal) error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	select {
	case <-p.Exited():
		how := "status 0"
		if err := p.Err(); err != nil {
			how = err.Error()
		}
		t.Logf("redis-server had exited by itself (%s): a crash, or a SHUTDOWN the test sent", how)
		return nil
	default:
	}
	killed, err := p.Stop(sig, stopGrace)
	if err != nil {
		return err
	}
	if killed {
		t.Logf("redis-server: not stopped %s after %s, killed", stopGrace, proc.SignalName(sig))
	}
	return nil
}

// cleanup stops the server at the end of the test. Not with
// proc.StopOnCleanup: the process changes with each Restart, and the logs
// of a failed test span them all.
func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(t, syscall.SIGTERM); err != nil {
		t.Errorf("redis-server: %v", err)
	}
	if t.Failed() && !s.shown {
		t.Logf("redis-server output:\n%s", s.Logs())
	}
}

func (s *Server) commandArgs() []string {
	_, port, _ := net.SplitHostPort(s.addr)
	return append([]string{"--port", port}, s.args...)
}

func (s *Server) commandLine() string {
	words := []string{s.bin}
	for _, a := range s.commandArgs() {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = fmt.Sprintf("%q", a)
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process may take it before redis-server binds it; Start
// then tries another.
func freeAddr(t testing.TB) string { return proc.FreeAddr(t, binaryName) }
