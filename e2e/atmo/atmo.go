// Package atmo runs a local AT Protocol atmosphere (a PLC directory and the
// real @atproto/pds, from e2e/atmosphere) for end-to-end tests and for the
// one-command local run.
//
// Tests call [Start]; programs call [Run] and [Atmosphere.Stop]. Both need
// Node 20 on PATH and the npm packages installed once with
//
//	npm ci --prefix e2e/atmosphere
package atmo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/tail"
)

// DefaultReadyTimeout bounds the wait for the ready line. A first start
// creates SQLite databases and accounts, which takes a few seconds on a busy
// CI machine; ninety seconds leaves room without hanging a run for ever.
const DefaultReadyTimeout = 90 * time.Second

// stopGrace is how long Stop waits after SIGTERM before it kills node. The
// script itself gives up on a clean shutdown after five seconds.
const stopGrace = 10 * time.Second

// Account is a PDS account. Handle must end in ".test", the only handle
// domain the local PDS serves. DID is filled in by Run.
type Account struct {
	Handle   string `json:"handle"`
	Password string `json:"password"`
	// Email is optional; the script derives one from the handle.
	Email string `json:"email,omitempty"`
	DID   string `json:"did,omitempty"`
}

// Options configures an atmosphere. The zero value starts an empty one in a
// fresh directory.
type Options struct {
	// Accounts are created if they do not exist yet. On a reused DataDir an
	// existing account must still take the given password.
	Accounts []Account
	// DataDir keeps the PDS databases, the PLC log and the secrets. Reusing
	// it keeps the accounts and their DIDs. Start defaults it to
	// t.TempDir(); Run requires it.
	DataDir string
	// HostAliases are host names that resolve to 127.0.0.1 inside the node
	// process only, e.g. "statusphere.ioproxy.dev", so that the PDS can
	// fetch OAuth client metadata from a local test server under a name it
	// accepts.
	HostAliases []string
	// ExtraCAFile is a PEM file of extra root certificates that the PDS
	// trusts (NODE_EXTRA_CA_CERTS), e.g. the test CA of the proxy. Node reads
	// it once at start, so it must exist before Start.
	ExtraCAFile string
	// PLCPort and PDSPort are the ports to listen on; 0 picks free ports.
	PLCPort, PDSPort int
	// ReadyTimeout defaults to DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Stderr, if set, receives node's stderr as it comes (Run only; Start
	// logs it through the test when ATMO_LOG is set). The tail is always
	// kept for error messages.
	Stderr io.Writer
	// Log turns the PDS's own logs on (LOG_ENABLED); they go to stderr.
	Log bool
	// Dir is the e2e/atmosphere directory. By default it is found by
	// walking up from the working directory, then next to this source file.
	Dir string
	// Node is the node binary; by default "node" from PATH.
	Node string
}

// Atmosphere is a running PLC directory and PDS.
type Atmosphere struct {
	// PLCURL and PDSURL are http://localhost:<port>. PDSURL is also the
	// PDS's OAuth issuer.
	PLCURL string
	PDSURL string
	// AdminPassword is the PDS admin password (HTTP basic "admin").
	AdminPassword string
	// Accounts are the requested accounts, in order, with DIDs.
	Accounts []Account
	// DataDir is the absolute data directory.
	DataDir string

	cmd      *exec.Cmd
	stdin    io.WriteCloser
	tail     *tail.Buffer
	exited   chan struct{} // closed when node has exited
	waitErr  error         // set before exited is closed
	stopOnce sync.Once
	stopErr  error
	ctxStop  func() bool // unregisters the context watcher
}

// readyLine is the one JSON line that atmosphere.js prints on stdout.
type readyLine struct {
	Ready         *bool     `json:"ready"`
	Error         string    `json:"error"`
	PLC           string    `json:"plc"`
	PDS           string    `json:"pds"`
	Accounts      []Account `json:"accounts"`
	AdminPassword string    `json:"adminPassword"`
	DataDir       string    `json:"dataDir"`
}

// ErrNoNodeModules is returned when the npm packages are not installed.
var ErrNoNodeModules = errors.New("e2e/atmosphere/node_modules is missing: run `npm ci --prefix e2e/atmosphere` from the repository root")

// Start runs an atmosphere for the test and stops it when the test ends. It
// fails the test (never skips it) when the atmosphere cannot start, so that
// a missing setup step shows up in CI.
func Start(t testing.TB, opts Options) *Atmosphere {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	logs := os.Getenv("ATMO_LOG") != ""
	if logs {
		opts.Log = true
		opts.Stderr = &testLogWriter{t: t}
	}
	begin := time.Now()
	a, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the local atmosphere: %v", err)
	}
	t.Logf("atmosphere up in %s: PLC %s, PDS %s", time.Since(begin).Round(time.Millisecond), a.PLCURL, a.PDSURL)
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stop the local atmosphere: %v", err)
		}
		if t.Failed() && !logs {
			t.Logf("atmosphere stderr (tail):\n%s", a.StderrTail())
		}
	})
	return a
}

// Run starts node with atmosphere.js and returns once the PLC directory and
// the PDS answer and the accounts exist. Canceling ctx stops the atmosphere,
// as Stop does; call Stop (or cancel ctx) to release it.
func Run(ctx context.Context, opts Options) (*Atmosphere, error) {
	if opts.DataDir == "" {
		return nil, errors.New("atmo: Options.DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("atmo: data dir %q: %w", opts.DataDir, err)
	}
	opts.DataDir = dataDir
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("atmo: create data dir: %w", err)
	}
	if opts.ExtraCAFile != "" {
		// Node only prints a warning for an unreadable NODE_EXTRA_CA_CERTS,
		// and the failure would show up much later as a TLS error.
		if _, err := os.Stat(opts.ExtraCAFile); err != nil {
			return nil, fmt.Errorf("atmo: extra CA file: %w", err)
		}
	}
	for _, acc := range opts.Accounts {
		if !strings.HasSuffix(acc.Handle, ".test") || acc.Password == "" {
			return nil, fmt.Errorf("atmo: account %q: the handle must end in .test and the password must not be empty", acc.Handle)
		}
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = FindDir(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		return nil, ErrNoNodeModules
	}
	node := opts.Node
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			return nil, fmt.Errorf("atmo: node (Node 20) is not on PATH: %w", err)
		}
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}

	// Free ports are picked here and then bound by node, so another process
	// can take one in between. That shows up as EADDRINUSE, and a fresh
	// pair of ports almost always works.
	const attempts = 3
	for i := 1; ; i++ {
		a, err := start(ctx, node, dir, opts)
		if err == nil || i == attempts || (opts.PLCPort != 0 && opts.PDSPort != 0) ||
			!strings.Contains(err.Error(), "EADDRINUSE") {
			return a, err
		}
	}
}

// start runs node once with the given ports (0: free ones) and waits for
// atmosphere.js to say it is ready.
func start(ctx context.Context, node, dir string, opts Options) (*Atmosphere, error) {
	cmd, err := command(node, dir, opts)
	if err != nil {
		return nil, err
	}
	a, ready, err := launch(cmd, opts.Stderr)
	if err != nil {
		return nil, err
	}
	if err := a.awaitReady(ctx, ready, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	a.ctxStop = context.AfterFunc(ctx, func() { _ = a.Stop() })
	return a, nil
}

// command is the node command line and environment of atmosphere.js.
func command(node, dir string, opts Options) (*exec.Cmd, error) {
	plcPort, err := portOrFree(opts.PLCPort)
	if err != nil {
		return nil, err
	}
	pdsPort, err := portOrFree(opts.PDSPort)
	if err != nil {
		return nil, err
	}
	env, err := environment(opts)
	if err != nil {
		return nil, err
	}
	// Not exec.CommandContext: the context only bounds the start, and a
	// plain kill would skip the clean shutdown of the SQLite databases.
	cmd := exec.Command(node,
		"-r", filepath.Join(dir, "hosts-preload.js"),
		filepath.Join(dir, "atmosphere.js"),
		"--plc-port", strconv.Itoa(plcPort),
		"--pds-port", strconv.Itoa(pdsPort),
		"--data-dir", opts.DataDir,
	)
	cmd.Dir = dir
	cmd.Env = env
	// Its own process group, so that a Ctrl-C in a terminal running
	// ./scripts/local reaches only the Go program, which then stops node in
	// order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// portOrFree is port, or a free port when it is 0.
func portOrFree(port int) (int, error) {
	if port != 0 {
		return port, nil
	}
	return freePort()
}

// environment is this process's environment plus what atmosphere.js and
// node read: the accounts, the host aliases, the extra CA and the PDS's
// logging switch.
func environment(opts Options) ([]string, error) {
	accounts, err := json.Marshal(append([]Account{}, opts.Accounts...))
	if err != nil {
		return nil, fmt.Errorf("atmo: encode accounts: %w", err)
	}
	env := append(os.Environ(),
		"ATMO_ACCOUNTS="+string(accounts),
		"ATMO_HOST_ALIASES="+strings.Join(opts.HostAliases, ","),
	)
	if opts.ExtraCAFile != "" {
		ca, err := filepath.Abs(opts.ExtraCAFile)
		if err != nil {
			return nil, fmt.Errorf("atmo: extra CA file: %w", err)
		}
		env = append(env, "NODE_EXTRA_CA_CERTS="+ca)
	}
	if opts.Log {
		env = append(env, "LOG_ENABLED=true")
	}
	return env, nil
}

// launch starts cmd with its stderr kept in the tail (and copied to
// stderr, if set) and its stdout read for the ready line, which the
// returned channel delivers.
func launch(cmd *exec.Cmd, stderr io.Writer) (*Atmosphere, <-chan readyLine, error) {
	a := &Atmosphere{
		cmd:    cmd,
		tail:   tail.New(64 << 10),
		exited: make(chan struct{}),
	}
	cmd.Stderr = a.tail
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(a.tail, stderr)
	}
	// node stops when stdin ends. The write end stays open in this process
	// until Stop, so if the test binary dies, the kernel closes it and node
	// goes away too.
	var err error
	if a.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, fmt.Errorf("atmo: stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("atmo: stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("atmo: start node: %w", err)
	}
	return a, a.watch(stdout), nil
}

// watch reads node's stdout until it ends, then waits for node and closes
// a.exited. The returned channel gets the ready line, if node prints one.
func (a *Atmosphere) watch(stdout io.Reader) <-chan readyLine {
	ready := make(chan readyLine, 1)
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		a.readStdout(stdout, ready)
	}()
	go func() {
		// Wait closes the stdout pipe, so it must not run before everything
		// node wrote (such as a last {"ready":false} line) has been read.
		<-stdoutDone
		err := a.cmd.Wait()
		a.waitErr = err
		close(a.exited)
	}()
	return ready
}

// awaitReady waits for the ready line and takes the URLs, the admin
// password and the accounts from it. On any failure (atmosphere.js says it
// failed, node exits, the timeout passes, ctx ends) it stops node and
// returns an error with the tail of node's stderr.
func (a *Atmosphere) awaitReady(ctx context.Context, ready <-chan readyLine, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	fail := func(format string, args ...any) error {
		_ = a.Stop()
		msg := fmt.Sprintf(format, args...)
		return fmt.Errorf("atmo: %s\nnode stderr (tail):\n%s", msg, a.StderrTail())
	}
	select {
	case line := <-ready:
		if !*line.Ready {
			return fail("atmosphere.js failed: %s", line.Error)
		}
		a.PLCURL, a.PDSURL = line.PLC, line.PDS
		a.AdminPassword, a.DataDir = line.AdminPassword, line.DataDir
		a.Accounts = line.Accounts
		return nil
	case <-a.exited:
		select {
		case line := <-ready: // sent before exited was closed
			return fail("atmosphere.js failed: %s", line.Error)
		default:
		}
		return fail("node exited before it was ready: %v", a.waitErr)
	case <-timer.C:
		return fail("not ready after %s", timeout)
	case <-ctx.Done():
		return fail("canceled while starting: %v", ctx.Err())
	}
}

// readStdout hands the first JSON line with a "ready" key to ready and keeps
// everything else for error messages. It drains stdout until node exits, so
// that node never blocks on a full pipe.
func (a *Atmosphere) readStdout(stdout io.Reader, ready chan<- readyLine) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	sent := false
	for sc.Scan() {
		b := sc.Bytes()
		if !sent {
			var line readyLine
			if json.Unmarshal(b, &line) == nil && line.Ready != nil {
				ready <- line
				sent = true
				continue
			}
		}
		fmt.Fprintf(a.tail, "stdout: %s\n", b)
	}
	// After an over-long line the scanner stops; keep draining.
	_, _ = io.Copy(io.Discard, stdout)
}

// Stop stops node: SIGTERM (the script closes the PDS and PLC servers), then
// SIGKILL after a grace period. It waits for the process and is safe to call
// more than once.
func (a *Atmosphere) Stop() error {
	a.stopOnce.Do(func() {
		if a.ctxStop != nil {
			a.ctxStop()
		}
		select {
		case <-a.exited:
			// It died on its own, which is an error the caller should see.
			a.stopErr = fmt.Errorf("atmo: node exited unexpectedly: %v", a.waitErr)
			return
		default:
		}
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		_ = a.stdin.Close()
		select {
		case <-a.exited:
		case <-time.After(stopGrace):
			_ = a.cmd.Process.Kill()
			<-a.exited
			a.stopErr = fmt.Errorf("atmo: node did not stop within %s after SIGTERM; killed it", stopGrace)
			return
		}
		var exit *exec.ExitError
		if a.waitErr != nil && !(errors.As(a.waitErr, &exit) && exit.Exited() && exit.ExitCode() == 0) {
			a.stopErr = fmt.Errorf("atmo: node stopped with %v", a.waitErr)
		}
	})
	return a.stopErr
}

// Done is closed when node has exited, whatever the reason.
func (a *Atmosphere) Done() <-chan struct{} { return a.exited }

// StderrTail returns the last part of node's stderr (and of any stray
// stdout), for error messages.
func (a *Atmosphere) StderrTail() string {
	if s := a.tail.String(); s != "" {
		return s
	}
	return "(empty)"
}

// Account returns the account with this handle.
func (a *Atmosphere) Account(handle string) (Account, bool) {
	for _, acc := range a.Accounts {
		if strings.EqualFold(acc.Handle, handle) {
			return acc, true
		}
	}
	return Account{}, false
}

// FindDir returns the e2e/atmosphere directory: ATMO_DIR if set, else the
// first e2e/atmosphere found walking up from the working directory (go test
// runs in the package directory), else the one next to this source file.
func FindDir() (string, error) {
	if d := os.Getenv("ATMO_DIR"); d != "" {
		return filepath.Abs(d)
	}
	isDir := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "atmosphere.js"))
		return err == nil
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if c := filepath.Join(d, "e2e", "atmosphere"); isDir(c) {
				return c, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if c := filepath.Join(filepath.Dir(file), "..", "atmosphere"); isDir(c) {
			return filepath.Clean(c), nil
		}
	}
	return "", errors.New("atmo: cannot find e2e/atmosphere (run from inside the repository or set ATMO_DIR)")
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("atmo: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// testLogWriter forwards whole lines to t.Log.
type testLogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	part []byte
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := strings.IndexByte(string(w.part), '\n')
		if i < 0 {
			break
		}
		w.t.Log("atmosphere: " + string(w.part[:i]))
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

// Post calls an XRPC procedure on the PDS as a plain client of it would,
// with an account's own access token when token is not empty (see
// Login): for tests that act on the PDS beside ioproxy.
func (a *Atmosphere) Post(ctx context.Context, token, nsid string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("atmo: %s: %w", nsid, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.PDSURL+"/xrpc/"+nsid, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("atmo: %s: %w", nsid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("atmo: %s: %w", nsid, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("atmo: %s: %s: %s", nsid, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("atmo: %s: %w", nsid, err)
	}
	return nil
}

// Login opens a session for an account with its password
// (com.atproto.server.createSession) and returns its access token.
func (a *Atmosphere) Login(ctx context.Context, acct Account) (string, error) {
	var s struct{ AccessJwt string }
	if err := a.Post(ctx, "", "com.atproto.server.createSession", map[string]string{"identifier": acct.Handle, "password": acct.Password}, &s); err != nil {
		return "", err
	}
	return s.AccessJwt, nil
}
