package redistest

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// client returns a go-redis client of s that does not retry: a test of a
// server that is gone must see the failure at once. Its timeouts are for
// a loaded machine; a server that is gone refuses connections at once.
func client(t *testing.T, s *Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	opts.DialTimeout = 5 * time.Second
	opts.ReadTimeout = 5 * time.Second
	opts.WriteTimeout = 5 * time.Second
	opts.MaxRetries = -1
	// Redis 7.0 knows neither CLIENT SETINFO nor maintenance
	// notifications; go-redis would try both.
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func configGet(t *testing.T, c *redis.Client, key string) string {
	t.Helper()
	m, err := c.ConfigGet(timeout(t), key).Result()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", key, err)
	}
	v, ok := m[key]
	if !ok {
		t.Fatalf("CONFIG GET %s: not in %v", key, m)
	}
	return v
}

func TestStart(t *testing.T) {
	s := Start(t, Options{})
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}

	// As readiness asks, by hand: it is our process that answers. Again,
	// since one probe may time out on a loaded machine.
	if err := s.proc.WaitProbe(readiness(s.Addr(), s.proc), nil, readyTimeout); err != nil {
		t.Errorf("readiness once ready: %v", err)
	}

	c := client(t, s)
	ctx := timeout(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET = %q, %v, want v", got, err)
	}

	dir, err := filepath.EvalSymlinks(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"bind":           "127.0.0.1",
		"protected-mode": "yes",
		"save":           "",
		"appendonly":     "no",
		"dir":            dir,
		"unixsocket":     "",
	} {
		if got := configGet(t, c, key); got != want {
			t.Errorf("CONFIG GET %s = %q, want %q", key, got, want)
		}
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("INFO server: %v", err)
	}
	if !strings.Contains(info, "config_file:\r\n") {
		t.Errorf("INFO server names a config file:\n%s", info)
	}
	if !strings.Contains(s.Logs(), "Ready to accept connections") {
		t.Errorf("Logs() lacks the start:\n%s", s.Logs())
	}
	if cl := s.CommandLine(); !strings.Contains(cl, `--save ""`) || !strings.Contains(cl, "--bind 127.0.0.1") {
		t.Errorf("CommandLine() = %s", cl)
	}
}

func TestTwoServers(t *testing.T) {
	a, b := Start(t, Options{}), Start(t, Options{})
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("both on %s in %s", a.Addr(), a.Dir())
	}
	ca, cb := client(t, a), client(t, b)
	ctx := timeout(t)
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := cb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET on b = %v, want redis.Nil", err)
	}
	if got, err := ca.Get(ctx, "k").Result(); err != nil || got != "a" {
		t.Errorf("GET on a = %q, %v", got, err)
	}
}

func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		aof  bool
		// before brings the server down before Restart, if not nil.
		before func(*Server, testing.TB)
		kept   bool
	}{
		{"AOF, running", true, nil, true},
		{"AOF, after Stop", true, (*Server).Stop, true},
		{"AOF, after Kill", true, (*Server).Kill, true},
		{"in memory, running", false, nil, false},
		{"in memory, after Kill", false, (*Server).Kill, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{AOF: tc.aof})
			addr := s.Addr()
			c := client(t, s)
			ctx := timeout(t)
			if tc.aof {
				if got := configGet(t, c, "appendfsync"); got != "always" {
					t.Errorf("appendfsync = %q", got)
				}
				if got := configGet(t, c, "appendonly"); got != "yes" {
					t.Errorf("appendonly = %q", got)
				}
			}
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if tc.before != nil {
				tc.before(s, t)
			}
			s.Restart(t)
			if s.Addr() != addr {
				t.Errorf("Addr() = %s after Restart, was %s", s.Addr(), addr)
			}
			if !strings.Contains(s.Logs(), "--- redistest: restarting on "+addr) {
				t.Errorf("Logs() lacks the restart:\n%s", s.Logs())
			}
			got, err := client(t, s).Get(ctx, "k").Result()
			switch {
			case tc.kept && (err != nil || got != "v"):
				t.Errorf("GET after Restart = %q, %v, want v", got, err)
			case !tc.kept && !errors.Is(err, redis.Nil):
				t.Errorf("GET after Restart = %q, %v, want redis.Nil", got, err)
			}
		})
	}
}

func TestStopAndKill(t *testing.T) {
	for _, tc := range []struct {
		name string
		down func(*Server, testing.TB)
	}{
		{"Stop", (*Server).Stop},
		{"Kill", (*Server).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{})
			c := client(t, s)
			if err := c.Ping(timeout(t)).Err(); err != nil {
				t.Fatalf("PING: %v", err)
			}
			pid := s.proc.Pid()
			tc.down(s, t)
			if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				if conn != nil {
					conn.Close()
				}
				t.Errorf("dial %s after %s: %v, want connection refused", s.Addr(), tc.name, err)
			}
			if err := c.Ping(timeout(t)).Err(); err == nil {
				t.Errorf("PING after %s succeeded", tc.name)
			}
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d after %s: %v, want gone", pid, tc.name, err)
			}
			// A second time, and the other one, do nothing.
			s.Stop(t)
			s.Kill(t)

			s.Restart(t)
			if err := client(t, s).Ping(timeout(t)).Err(); err != nil {
				t.Errorf("PING after Restart: %v", err)
			}
		})
	}
}

// startFailure runs Start with opts on a proc.FakeTB, runs its cleanups as
// a test would, and returns what it failed or skipped with ("" if it
// started).
func startFailure(t *testing.T, opts Options) string {
	t.Helper()
	f, _ := proc.OnFake(t, func(tb testing.TB) *Server { return Start(tb, opts) })
	f.RunCleanups()
	return f.Message()
}

func TestCleanup(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failed   bool
		shutdown bool // the test shuts Redis down itself
		want     string
	}{
		{"passed", false, false, ""},
		{"failed: the logs", true, false, "redis-server output:\n"},
		{"exited by itself", false, true, "redis-server had exited by itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, s := proc.OnFake(t, func(tb testing.TB) *Server { return Start(tb, Options{}) })
			if s == nil {
				if strings.HasPrefix(f.Message(), "skipped: ") {
					t.Skip(f.Message())
				}
				t.Fatalf("Start: %s", f.Message())
			}
			p := s.proc
			if tc.shutdown {
				// SHUTDOWN closes the connection instead of answering.
				_ = client(t, s).ShutdownNoSave(timeout(t)).Err()
				select {
				case <-p.Exited():
				case <-time.After(5 * time.Second):
					t.Fatal("SHUTDOWN NOSAVE: still running")
				}
			}
			if tc.failed {
				f.Fail()
			}
			f.RunCleanups()
			select {
			case <-p.Exited():
			default:
				t.Error("still running after the cleanup")
			}
			var found bool
			for _, l := range f.Logged() {
				found = found || tc.want != "" && strings.Contains(l, tc.want)
				if tc.want == "" || !strings.Contains(l, tc.want) {
					t.Errorf("logged %q", l)
				}
			}
			if tc.want != "" && !found {
				t.Errorf("%q not logged", tc.want)
			}
		})
	}
}

func TestMissingBinary(t *testing.T) {
	missing := Options{binary: "no-such-redis-server", fallback: "/nonexistent/redis-server"}

	t.Setenv(requireEnv, "")
	msg := startFailure(t, missing)
	if !strings.HasPrefix(msg, "skipped: no-such-redis-server: not on PATH and not at /nonexistent/redis-server") ||
		!strings.Contains(msg, "install no-such-redis-server: ./scripts/deps") || !strings.Contains(msg, "set "+requireEnv+"=1") {
		t.Errorf("without %s: %q, want a skip", requireEnv, msg)
	}

	t.Setenv(requireEnv, "1")
	msg = startFailure(t, missing)
	if msg == "" || strings.HasPrefix(msg, "skipped") || !strings.Contains(msg, "install no-such-redis-server: ./scripts/deps") {
		t.Errorf("with %s=1: %q, want a failure", requireEnv, msg)
	}
}

func TestStartFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) Options
		want []string
	}{
		{
			"an argument the harness owns",
			func(*testing.T) Options { return Options{Args: []string{"--port", "6379"}} },
			[]string{"redistest: Options.Args sets --port, which the harness sets itself"},
		},
		{
			"a directive redis-server does not know: its output",
			func(*testing.T) Options { return Options{Args: []string{"--no-such-directive", "1"}} },
			[]string{"exited before it was ready", "output:\n", "no-such-directive", "command: "},
		},
		{
			"every port taken",
			func(t *testing.T) Options {
				taken := proc.TakenAddr(t)
				return Options{pickAddr: func(testing.TB) string { return taken }}
			},
			[]string{"address already in use", "Address already in use"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := startFailure(t, tc.opts(t))
			if strings.HasPrefix(msg, "skipped: ") {
				t.Skip(msg)
			}
			if msg == "" {
				t.Fatal("Start did not fail")
			}
			t.Logf("message:\n%s", msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestStartRetriesATakenPort(t *testing.T) {
	taken := proc.TakenAddr(t)
	var picked []string
	s := Start(t, Options{pickAddr: func(tb testing.TB) string {
		a := taken
		if len(picked) > 0 {
			a = freeAddr(tb)
		}
		picked = append(picked, a)
		return a
	}})
	if len(picked) != 2 || s.Addr() != picked[1] {
		t.Fatalf("picked %v, serving on %s", picked, s.Addr())
	}
	if !strings.Contains(s.Logs(), "Address already in use") {
		t.Errorf("Logs() lacks the failed bind:\n%s", s.Logs())
	}
	if err := client(t, s).Ping(timeout(t)).Err(); err != nil {
		t.Errorf("PING: %v", err)
	}
}
