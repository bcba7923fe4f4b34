package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/proc"
)

// freePort and freePorts are proc's: a test that needs two or more ports
// takes them from one freePorts, as two freePort calls may name the same.
func freePort(t *testing.T) int { t.Helper(); return proc.FreePort(t) }

func freePorts(t *testing.T, n int) []int { t.Helper(); return proc.FreePorts(t, n) }

func start(t *testing.T, src string) *Server {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "test.hcl", config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags.Errs())
	}
	s, err := Start(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Plain HTTP redirects hosts that have TLS to HTTPS (keeping the path and
// query, naming the HTTPS port when it is not 443), and serves local hosts
// and hosts with TLS off.
func TestHTTPListener(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s tls=%v", r.Host, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()
	ps := freePorts(t, 2)
	httpPort, httpsPort := ps[0], ps[1]
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
admin { listen = "" }
host "secure.example.com" {
  backend = %q
  tls { mode = "self_signed" }
}
host "plain.example.com" {
  backend = %q
  tls { mode = "off" }
}
host "localhost" { backend = %q }
`, filepath.Join(t.TempDir(), "data"), httpPort, httpsPort, backend.URL, backend.URL, backend.URL))

	get := func(host, path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), nil)
		req.Host = host
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("secure.example.com", "/a/b?c=d")
	if want := fmt.Sprintf("https://secure.example.com:%d/a/b?c=d", httpsPort); resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("secure host over HTTP: %d %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	for _, host := range []string{"plain.example.com", "localhost"} {
		resp := get(host, "/")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "backend "+host) {
			t.Errorf("%s over HTTP: %d %q", host, resp.StatusCode, body)
		}
	}

	// The self-signed host is served on HTTPS with a certificate from the
	// local CA, which a client that trusts the CA verifies.
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.LocalCAPEM()) {
		t.Fatal("no local CA")
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "secure.example.com"},
	}}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), nil)
	req.Host = "secure.example.com"
	resp2, err := client.Do(req)
	if err != nil {
		t.Fatalf("HTTPS with the local CA: %v", err)
	}
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(body), "tls=https") {
		t.Errorf("HTTPS answer %q", body)
	}

	// A Host other than the name the TLS connection was made for is
	// refused: a connection for one host cannot be used for another.
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), nil)
	req.Host = "plain.example.com"
	resp3, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host differing from SNI: status %d, want 421", resp3.StatusCode)
	}
}

// A data dir that other users can read is refused at start, with the
// command that fixes it: it holds every session's tokens and the keys.
func TestStartRefusesOpenDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Parse([]byte(fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "localhost" {
  backend = "localhost:1"
  tls { mode = "off" }
}`, dir, freePort(t))), "t.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, err := Start(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		s.Close()
		t.Fatal("started with a data dir others can read")
	}
	if !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Errorf("error %q does not say what to do", err)
	}
}

// A taken port fails the start with a message naming the listener.
func TestStartFailsOnTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg, diags := config.Parse([]byte(fmt.Sprintf(`
data_dir = %q
ingress { http = %q }
admin { listen = "" }
host "localhost" {
  backend = "localhost:1"
  tls { mode = "off" }
}`, filepath.Join(t.TempDir(), "data"), l.Addr().String())), "t.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	_, err = Start(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "http listener on "+l.Addr().String()) {
		t.Fatalf("err = %v", err)
	}
}

// The client key is made once and kept: a restart publishes the same key.
func TestClientKeySurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	src := fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
admin { listen = "" }
host "app.example.com" {
  backend = "localhost:1"
  atproto {}
  tls { mode = "self_signed" }
}`, dir, ps[0], ps[1])
	jwks := func() string {
		s := start(t, src)
		req, _ := http.NewRequest(http.MethodGet, "https://"+s.Addrs()["https"]+"/@/jwks.json", nil)
		req.Host = "app.example.com"
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(s.LocalCAPEM())
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example.com"}}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		s.Close()
		return string(b)
	}
	first, second := jwks(), jwks()
	if !strings.Contains(first, `"kid"`) || first != second {
		t.Fatalf("JWKS changed across restart:\n%s\n%s", first, second)
	}
}
