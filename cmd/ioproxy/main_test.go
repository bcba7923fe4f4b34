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
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestValidate(t *testing.T) {
	root := repoRoot(t)
	for _, name := range []string{"io.hcl", "local.hcl", "internal-tool.hcl", "serve.hcl"} {
		var out, errb bytes.Buffer
		if code := run([]string{"validate", "-config", filepath.Join(root, "examples", name)}, &out, &errb); code != 0 {
			t.Errorf("validate examples/%s: exit %d\n%s", name, code, errb.String())
		}
		if !strings.Contains(out.String(), "ok") {
			t.Errorf("validate examples/%s printed %q", name, out.String())
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("host \"a.example.com\" {\n  backend = \"nowhere\"\n}\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"validate", "-config", bad}, &out, &errb); code != 1 {
		t.Errorf("bad config: exit %d, want 1", code)
	}
	if want := bad + ":2:13: error: Invalid backend"; !strings.Contains(errb.String(), want) {
		t.Errorf("diagnostics %q lack %q", errb.String(), want)
	}
	// A {SHA} API key works but is weak: validate passes and says so.
	weak := filepath.Join(t.TempDir(), "weak.hcl")
	os.WriteFile(weak, []byte("host \"a.example.com\" {\n  backend = \"localhost:3000\"\n  apikey_auth {\n    users = <<EOT\nci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nEOT\n  }\n}\n"), 0o600)
	errb.Reset()
	if code := run([]string{"validate", "-config", weak}, &out, &errb); code != 0 {
		t.Errorf("config with a {SHA} key: exit %d\n%s", code, errb.String())
	}
	if want := weak + ":5:1: warning: Weak API key hash"; !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), "htpasswd -nbB ci") {
		t.Errorf("diagnostics %q lack %q and the command to fix it", errb.String(), want)
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "ioproxy ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// ioproxy cert prints (or writes) the local CA, creating it on first use,
// and the same CA the next time.
func TestCert(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "io.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\nhost \"localhost\" { backend = \"localhost:3000\" }\n", filepath.Join(dir, "data"))), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"cert", "-config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("cert: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("cert printed %q", out.String())
	}
	first := out.String()
	caFile := filepath.Join(dir, "ca.pem")
	out.Reset()
	if code := run([]string{"cert", "-config", cfg, "-out", caFile}, &out, &errb); code != 0 {
		t.Fatalf("cert -out: exit %d: %s", code, errb.String())
	}
	written, err := os.ReadFile(caFile)
	if err != nil || string(written) != first {
		t.Fatalf("cert -out wrote a different CA (%v)", err)
	}
}

// TestServeProcess builds the binary, runs `ioproxy serve` as its own
// process in front of a real backend, routes by Host, strips forged
// identity headers, and shuts down gracefully on SIGTERM: a request in
// flight finishes.
func TestServeProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ioproxy")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "host=%s did=%q handle=%q session=%q", r.Host, r.Header.Get("User-Did"), r.Header.Get("User-Handle"), r.Header.Get("Proxy-Session"))
	}))
	defer backend.Close()
	ps := freePorts(t, 2)
	httpPort, adminPort := ps[0], ps[1]
	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "127.0.0.1:%d" }
host "app.example.com" {
  backend = %q
  tls { mode = "off" }
}
`, filepath.Join(t.TempDir(), "data"), httpPort, adminPort, backend.URL)), 0o600)
	var logs lockedBuffer
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	waitReady(t, adminPort, &logs)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	get := func(host, path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("APP.example.com", "/", map[string]string{"User-Did": "did:plc:evil", "User_Handle": "evil", "Proxy-Session": "x"})
	if code != 200 || body != `host=APP.example.com did="" handle="" session=""` {
		t.Fatalf("proxied: %d %q", code, body)
	}
	if code, _ := get("other.example.com", "/", nil); code != 404 {
		t.Fatalf("unknown host: %d", code)
	}

	slow := make(chan string, 1)
	go func() {
		_, body := get("app.example.com", "/slow", nil)
		slow <- body
	}()
	select {
	case <-arrived: // the slow request is in flight
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the backend")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	select {
	case body := <-slow:
		if !strings.HasPrefix(body, "host=app.example.com") {
			t.Errorf("in-flight request during shutdown got %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("ioproxy exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("ioproxy did not exit after SIGTERM:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "finishing in-flight requests") {
		t.Errorf("logs lack the shutdown line:\n%s", logs.String())
	}
}
