// Package nginx runs a real nginx on loopback for end-to-end tests of
// ioproxy behind a reverse proxy, such as its forward-auth endpoint used by
// nginx's auth_request. A hand-written fake would only encode our own idea
// of what nginx does; the real one shows which status codes, headers and
// bodies survive the trip.
//
// Tests need the Debian package nginx (./scripts/deps installs it). Without
// it they skip, unless IOPROXY_REQUIRE_NGINX=1, which ./scripts/test sets so
// that CI cannot pass by skipping.
package nginx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/ioproxy/ioproxy/internal/tail"
)

const (
	// readyTimeout bounds the wait for the listeners. nginx binds in well
	// under a second; when a port is taken it retries for about 2.5 s before
	// it gives up, which this leaves room to report.
	readyTimeout = 10 * time.Second
	// stopGrace is how long a graceful stop (SIGQUIT) may take before the
	// process group is killed: a graceful stop waits for open requests, and
	// a test that leaves a long-poll hanging must not hang the run.
	stopGrace = 5 * time.Second
	// requireEnv turns a missing nginx from a skip into a failure.
	requireEnv = "IOPROXY_REQUIRE_NGINX"
)

// loopbackRe matches the listen addresses Start can wait for.
var loopbackRe = regexp.MustCompile(`^(127\.0\.0\.1|\[::1\]):\d+$`)

// Server is an nginx started by [Start]. It stops when the test ends.
type Server struct {
	// Dir is nginx's prefix: the config, the logs, the pid file and the
	// temp directories are here. Files a config refers to (a root, a TLS
	// key) can be put here too; it is removed when the test ends.
	Dir string
	// Addrs are the loopback listen addresses found in the http block, in
	// the order they appear, each accepting connections when Start returns.
	Addrs []string

	proc   *proc.Process
	output *tail.Buffer
}

// Start runs nginx with httpBlock inside its http block and returns once
// every "listen 127.0.0.1:PORT" (or "[::1]:PORT") address of httpBlock
// accepts connections. The rest of the configuration is generated so that
// everything nginx writes stays in a temp directory: the packaged config
// and /var/lib/nginx are neither used nor needed.
//
// httpBlock usually holds one or more "server { listen 127.0.0.1:PORT; ... }"
// blocks; [FreeAddr] picks a port. Start fails the test if httpBlock has no
// such address, if nginx rejects the config (with the output of nginx -t),
// or if nginx does not come up (with its error log). When the test ends
// nginx is stopped, and if the test failed its logs are added to the
// test's output.
func Start(t testing.TB, httpBlock string) *Server {
	t.Helper()
	// /usr/sbin, where Debian puts it, is not on every PATH.
	bin := proc.Binary(t, "nginx", "/usr/sbin/nginx", requireEnv)
	addrs := listenAddrs(httpBlock)
	if len(addrs) == 0 {
		t.Fatal("nginx: the http block has no \"listen 127.0.0.1:PORT\" to wait for")
	}

	dir := t.TempDir()
	s := &Server{Dir: dir, Addrs: addrs, output: tail.New(64 << 10)}
	conf := filepath.Join(dir, "nginx.conf")
	config := mainConfig(dir, httpBlock, os.Geteuid() == 0)
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatalf("nginx: write config: %v", err)
	}
	// -p keeps relative paths (and nginx's own defaults) inside dir; -e
	// sends the messages from before the config is read to our error log
	// instead of the packaged /var/log/nginx/error.log, which a non-root
	// user cannot open.
	args := []string{"-p", dir + "/", "-e", s.errorLogPath(), "-c", conf}

	// nginx -t names the file and line of a config mistake; without it a
	// bad config shows only as "nginx exited".
	if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx: config rejected (%v):\n%s\nconfig:\n%s", err, out, proc.Numbered(config))
	}

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = s.output, s.output
	// In a process group of its own (see proc.Start): the workers outlive
	// a killed master.
	s.proc = proc.Start(t, "nginx", cmd)
	// Registered after t.TempDir, so that it runs before the directory
	// goes.
	s.proc.StopOnCleanup(t, syscall.SIGQUIT, stopGrace, func() {
		t.Logf("nginx error.log:\n%s", s.ErrorLog())
		t.Logf("nginx access.log:\n%s", s.AccessLog())
	})

	if err := s.waitReady(); err != nil {
		t.Fatalf("nginx: %v\noutput:\n%s\nerror.log:\n%s", err, s.output, s.ErrorLog())
	}
	return s
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a listen directive. Another process may take the port before
// nginx binds it; Start then fails rather than talking to the wrong server.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return proc.FreeAddr(t, "nginx")
}

// ErrorLog returns the error log so far. It is written at level info, so
// it also holds why nginx turned a request into an error (such as "auth
// request unexpected status").
func (s *Server) ErrorLog() string { return readLog(s.errorLogPath()) }

// AccessLog returns the access log so far, one line per request in nginx's
// "combined" format. nginx writes a line after the response has gone out,
// so a client that has just read a response may not find its line yet.
func (s *Server) AccessLog() string { return readLog(filepath.Join(s.Dir, "access.log")) }

func (s *Server) errorLogPath() string { return filepath.Join(s.Dir, "error.log") }

// mainConfig wraps httpBlock in a complete config. Every path nginx writes
// is under dir, so parallel tests do not share files and none needs root.
// As root, the workers would run as "nobody" and could not enter dir (0700,
// owned by root) to buffer a large request body or response, which nginx
// turns into a 500; "user root" keeps them able to.
func mainConfig(dir, httpBlock string, root bool) string {
	var b strings.Builder
	if root {
		b.WriteString("user root;\n")
	}
	p := func(name string) string { return strconv.Quote(filepath.Join(dir, name)) }
	fmt.Fprintf(&b, `daemon off;
worker_processes 1;
error_log %s info;
pid %s;
events {}
http {
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    access_log %s;

%s
}
`, p("error.log"), p("nginx.pid"),
		p("client_body_temp"), p("proxy_temp"), p("fastcgi_temp"), p("uwsgi_temp"), p("scgi_temp"),
		p("access.log"), httpBlock)
	return b.String()
}

// listenAddrs returns the distinct loopback addresses of the listen
// directives in httpBlock, in order. It splits statements the way nginx
// does, closely enough for test configs: "#" starts a comment at the start
// of a token, and ";", "{" and "}" end a statement.
func listenAddrs(httpBlock string) []string {
	var code strings.Builder
	for line := range strings.Lines(httpBlock) {
		for i, r := range line {
			if r == '#' && (i == 0 || strings.ContainsRune(" \t{};", rune(line[i-1]))) {
				line = line[:i] + "\n"
				break
			}
		}
		code.WriteString(line)
	}
	var addrs []string
	seen := map[string]bool{}
	for _, stmt := range strings.FieldsFunc(code.String(), func(r rune) bool { return strings.ContainsRune(";{}", r) }) {
		f := strings.Fields(stmt)
		if len(f) < 2 || f[0] != "listen" || !loopbackRe.MatchString(f[1]) || seen[f[1]] {
			continue
		}
		seen[f[1]] = true
		addrs = append(addrs, f[1])
	}
	return addrs
}

// waitReady waits for the pid file and then for the listeners. A port that
// accepts is not enough on its own: if another process holds it, nginx is
// still retrying its bind. nginx writes the pid file only after it has bound
// every listener, so the pid file comes first.
func (s *Server) waitReady() error {
	pidFile := filepath.Join(s.Dir, "nginx.pid")
	want := strconv.Itoa(s.proc.Pid())
	pidWritten := func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && strings.TrimSpace(string(b)) == want
	}
	unready := fmt.Sprintf("no pid file %s after %s: the listeners are not bound", pidFile, readyTimeout)
	return s.proc.WaitReady(pidWritten, unready, s.Addrs, readyTimeout)
}

// readLog returns a log's contents, or why it cannot. nginx creates its
// logs when it starts, so a missing one is not an error but an empty log.
func readLog(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("(nginx: read %s: %v)", filepath.Base(path), err)
	}
	return string(b)
}
