package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// `ioproxy reload` checks the configuration, signals the running serve
// through its data dir, and prints how the reload went; a configuration
// with errors is not sent, and a stopped serve is not mistaken for a
// running one.
func TestReloadProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ioproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	backendA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "A") }))
	defer backendA.Close()
	backendB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "B") }))
	defer backendB.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, adminPort := ps[0], ps[1]
	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	write := func(extra, backend string) {
		src := fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin {
  listen = "127.0.0.1:%d"
  %s
}
host "app.localhost" {
  backend = %q
  tls { mode = "off" } # no https listener: tests bind 127.0.0.1 only
}
`, dataDir, httpPort, adminPort, extra, backend)
		if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("", backendA.URL)
	var logs lockedBuffer
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	waitReady(t, adminPort, &logs)
	app := func() string {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", httpPort), nil)
		req.Host = "app.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := app(); got != "A" {
		t.Fatalf("before the reload: %q", got)
	}
	reload := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := run([]string{"reload", "-config", cfgPath, "-wait", "20s"}, &out, &errb)
		return code, out.String(), errb.String()
	}

	write("", backendB.URL)
	code, out, errs := reload()
	if code != 0 || !strings.Contains(out, fmt.Sprintf("process %d applied: 1 hosts, 0 calling ports, 0 serve ports", cmd.Process.Pid)) {
		t.Fatalf("reload: exit %d\n%s%s\nlogs:\n%s", code, out, errs, logs.String())
	}
	if got := app(); got != "B" {
		t.Fatalf("after the reload: %q", got)
	}

	// A setting that needs a restart is named.
	write("pprof = true", backendB.URL)
	if code, out, errs := reload(); code != 0 || !strings.Contains(out, "take effect at the next restart: admin") {
		t.Fatalf("reload with an admin change: exit %d\n%s%s", code, out, errs)
	}

	// Errors are shown here, and the running process is not asked.
	if err := os.WriteFile(cfgPath, []byte("host \"app.localhost\" {\n  backend = \"nowhere\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := logs.Len()
	if code, _, errs := reload(); code != 1 || !strings.Contains(errs, cfgPath+":2:13: error: Invalid backend") || !strings.Contains(errs, "was not asked to reload") {
		t.Fatalf("reload of a bad configuration: exit %d\n%s", code, errs)
	}
	// The log writer batches lines: the last reload's may still come in,
	// but nothing may say this configuration was read.
	time.Sleep(100 * time.Millisecond)
	if after := logs.String()[before:]; strings.Contains(after, "configuration error") || strings.Contains(after, "reload refused") {
		t.Fatalf("the running process reloaded a configuration that reload refused:\n%s", logs.String()[before:])
	}
	if got := app(); got != "B" {
		t.Fatalf("after a refused reload: %q", got)
	}

	// Once the process has stopped, its socket is gone and reload says
	// nobody runs; a socket left by a killed process is not mistaken for
	// a running one, and the next serve takes its place.
	write("", backendB.URL)
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("ioproxy did not stop")
	}
	if code, _, errs := reload(); code != 1 || !strings.Contains(errs, "no ioproxy serve runs with data_dir") {
		t.Fatalf("reload with no process: exit %d\n%s", code, errs)
	}
}

// A SIGHUP while ioproxy starts waits for the start; it does not end
// the process (SIGHUP's default action).
func TestSIGHUPDuringStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ioproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, adminPort := ps[0], ps[1]
	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	src := fmt.Sprintf("data_dir = %q\ningress { http = \"127.0.0.1:%d\" }\nadmin { listen = \"127.0.0.1:%d\" }\nhost \"app.localhost\" {\n  backend = \"127.0.0.1:1\"\n  tls { mode = \"off\" }\n}\n", dataDir, httpPort, adminPort)
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	// As soon as the control socket exists the signal is caught; send
	// SIGHUPs from then until ready.
	sock := filepath.Join(dataDir, controlSocketName)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 5 {
		_ = cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(10 * time.Millisecond)
	}
	waitReady(t, adminPort, &logs)
	select {
	case err := <-exited:
		t.Fatalf("ioproxy exited on SIGHUP during its start: %v\n%s", err, logs.String())
	default:
	}
}

// lockedBuffer is a buffer that a child process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// waitReady waits for the admin listener's /readyz.
func waitReady(t *testing.T, adminPort int, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ioproxy did not become ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
