// Package caddy runs a real Caddy on loopback for end-to-end tests of
// ioproxy behind a reverse proxy, such as its forward-auth endpoint used by
// Caddy's forward_auth. A hand-written fake would only encode our own idea
// of what Caddy does; the real one shows which headers survive the trip
// (Caddy's copy_headers has changed behaviour across releases).
//
// Tests need the Debian package caddy (./scripts/deps installs it). Without
// it they skip, unless IOPROXY_REQUIRE_CADDY=1, which ./scripts/test sets so
// that CI cannot pass by skipping.
package caddy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/ioproxy/ioproxy/internal/tail"
)

const (
	// readyTimeout bounds the wait for the listeners. Caddy serves its
	// config well under a second after it starts.
	readyTimeout = 15 * time.Second
	// stopGrace is how long a graceful stop (SIGTERM) may take before the
	// process group is killed: without a grace_period Caddy waits for open
	// requests forever, and a test that leaves a long poll hanging must
	// not hang the run.
	stopGrace = 5 * time.Second
	// requireEnv turns a missing caddy from a skip into a failure.
	requireEnv = "IOPROXY_REQUIRE_CADDY"
	// readyLog is what Caddy logs once every listener of its first config
	// is bound.
	readyLog = `"msg":"serving initial configuration"`
	// outputMax is how much of Caddy's log is kept: it logs at debug
	// level, one JSON line per proxied round trip with its headers.
	outputMax = 512 << 10
	// debianBinary is where the Debian package puts caddy.
	debianBinary = "/usr/bin/caddy"
)

// Server is a Caddy started by [Start]. It stops when the test ends.
type Server struct {
	// Dir holds the Caddyfile as run (Caddyfile, with the global options
	// of Start) and Caddy's home, config and data directories. Files a
	// config refers to can be put here too; it is removed when the test
	// ends.
	Dir string
	// Addrs are the listen addresses of the adapted config, sorted, each
	// accepting connections when Start returns.
	Addrs []string

	proc   *proc.Process
	env    []string
	output *tail.Buffer
}

// Start runs "caddy run" with caddyfile and returns once Caddy serves it on
// every listen address. Start adds global options that keep the test's
// Caddy to itself: no admin API, no automatic HTTPS (so no ACME and no
// listener on 80 or 443), http_port and https_port on free loopback
// ports, every listener bound to 127.0.0.1 unless a site says otherwise,
// and debug logging. If caddyfile opens with a global options block, they
// are added to it (so it must not set these itself); otherwise they come
// first. Caddy's home, config and data directories are in a temp
// directory: the packaged /etc/caddy and /var/lib/caddy are neither used
// nor needed.
//
// Site addresses usually name a port, "http://127.0.0.1:PORT" or
// "http://:PORT" (any Host); [FreeAddr] picks one. Start fails the test if
// Caddy rejects the config (with its message and the numbered config), or
// if it does not come up (with its output). When the test ends Caddy is
// stopped, and if the test failed its output is added to the test's.
func Start(t testing.TB, caddyfile string) *Server {
	t.Helper()
	bin := proc.Binary(t, "caddy", debianBinary, requireEnv)

	dir := t.TempDir()
	s := &Server{Dir: dir, output: tail.New(outputMax)}
	// Caddy keeps its data (certificates, locks) under XDG_DATA_HOME and
	// an autosave of its config under XDG_CONFIG_HOME, falling back to
	// HOME: all three point into dir, so parallel tests share nothing and
	// no one's ~/.local/share/caddy is touched.
	s.env = append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	ports := otherFreePorts(t, caddyfile, 2)
	config := withGlobalOptions(caddyfile, globalOptions(ports[0], ports[1]))
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatalf("caddy: write config: %v", err)
	}
	args := []string{"--config", file, "--adapter", "caddyfile"}

	// "caddy adapt" names the line of a Caddyfile mistake, and its JSON
	// holds the listen addresses to wait for; --validate also provisions
	// the modules, which catches bad values (a regexp, an upstream).
	adapted, err := s.caddy(bin, append([]string{"adapt", "--validate"}, args...)...)
	if err != nil {
		t.Fatalf("caddy: config rejected: %v\nconfig:\n%s", err, proc.Numbered(config))
	}
	s.Addrs, err = listenAddrs(adapted)
	if err != nil {
		t.Fatalf("caddy: %v\nconfig:\n%s", err, proc.Numbered(config))
	}
	if len(s.Addrs) == 0 {
		t.Fatalf("caddy: the config has no HTTP listener to wait for\nconfig:\n%s", proc.Numbered(config))
	}

	cmd := exec.Command(bin, append([]string{"run"}, args...)...)
	cmd.Dir = dir
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.output, s.output
	// In a process group of its own (see proc.Start), so that the kill
	// after stopGrace reaches anything it started.
	s.proc = proc.Start(t, "caddy", cmd)
	// Registered after t.TempDir, so that it runs before the directory
	// goes.
	s.proc.StopOnCleanup(t, syscall.SIGTERM, stopGrace, func() {
		t.Logf("caddy output (JSON log, debug level):\n%s", s.Output())
	})

	if err := s.waitReady(); err != nil {
		t.Fatalf("caddy: %v\noutput:\n%s\nconfig:\n%s", err, s.Output(), proc.Numbered(config))
	}
	return s
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a site address. Another process may take the port before Caddy
// binds it; Start then fails rather than talking to the wrong server.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return proc.FreeAddr(t, "caddy")
}

// Output returns what Caddy has logged so far (the end of it, if it is
// long): JSON lines, at debug level, so each proxied round trip is there
// with the headers sent and received.
func (s *Server) Output() string { return s.output.String() }

// binary finds caddy on PATH, then where Debian puts it.
func binary() (string, error) { return proc.LookPath("caddy", debianBinary) }

// caddy runs a caddy subcommand to completion in s's environment and
// returns its standard output; an error carries its standard error.
func (s *Server) caddy(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	cmd.Env = s.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("caddy %s: %v\n%s", args[0], err, stderr.Bytes())
	}
	return out, nil
}

// globalOptions are the options Start adds. default_bind keeps listeners
// on loopback even for a site address without a host ("http://:PORT").
// Without admin off, Caddy would serve its admin API on localhost:2019,
// which parallel tests would fight over.
func globalOptions(httpPort, httpsPort string) string {
	return fmt.Sprintf(`	# Added by the test harness (e2e/caddy).
	admin off
	auto_https off
	http_port %s
	https_port %s
	default_bind 127.0.0.1
	debug
`, httpPort, httpsPort)
}

// withGlobalOptions puts opts into caddyfile's global options block, the
// block without a name that may only come first, or adds one.
func withGlobalOptions(caddyfile, opts string) string {
	offset := 0
	for line := range strings.Lines(caddyfile) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			offset += len(line)
			continue
		}
		if trimmed == "{" {
			end := offset + len(line)
			sep := ""
			if !strings.HasSuffix(line, "\n") {
				sep = "\n"
			}
			return caddyfile[:end] + sep + opts + caddyfile[end:]
		}
		break
	}
	return "{\n" + opts + "}\n\n" + caddyfile
}

// listenAddrs returns the distinct addresses the HTTP servers of an adapted
// (JSON) config listen on, as addresses to dial: a listener on every
// interface (":PORT") is dialled on 127.0.0.1.
func listenAddrs(adapted []byte) ([]string, error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		return nil, fmt.Errorf("read the adapted config: %w", err)
	}
	seen := map[string]bool{}
	var addrs []string
	for name, srv := range cfg.Apps.HTTP.Servers {
		for _, l := range srv.Listen {
			network, addr, ok := strings.Cut(l, "/")
			if !ok {
				network, addr = "tcp", l
			}
			if network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil, fmt.Errorf("server %s listens on %q: only TCP listeners can be waited for", name, l)
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("server %s listens on %q: %w", name, l, err)
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return nil, fmt.Errorf("server %s listens on %q: one port, not a range, please", name, l)
			}
			if host == "" {
				host = "127.0.0.1"
			}
			a := net.JoinHostPort(host, port)
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	sort.Strings(addrs)
	return addrs, nil
}

// waitReady waits for Caddy to say it serves its config, and then for the
// listeners. A port that accepts is not enough on its own: another process
// may hold it, in which case Caddy exits with "address already in use".
func (s *Server) waitReady() error {
	serving := func() bool { return strings.Contains(s.Output(), readyLog) }
	unready := fmt.Sprintf("no %s in its log after %s", readyLog, readyTimeout)
	return s.proc.WaitReady(serving, unready, s.Addrs, readyTimeout)
}

// otherFreePorts returns n ports, each free a moment ago, distinct from one
// another and from every port the Caddyfile names: the kernel may hand out
// a port just closed again, and Caddy refuses an http_port or https_port
// that is also a site's port.
func otherFreePorts(t testing.TB, caddyfile string, n int) []string {
	t.Helper()
	taken := map[string]bool{}
	for _, m := range sitePort.FindAllStringSubmatch(caddyfile, -1) {
		taken[m[1]] = true
	}
	var ports []string
	for len(ports) < n {
		p := portOf(t, FreeAddr(t))
		if !taken[p] {
			taken[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// sitePort finds the ports a Caddyfile names, as in "http://:8080" or
// "127.0.0.1:9000".
var sitePort = regexp.MustCompile(`:(\d{2,5})\b`)

func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("caddy: %v", err)
	}
	return port
}
