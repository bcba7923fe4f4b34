package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// serveConfig guards a backend with a serve block: a CI key on its own
// port, and accounts that sign in on nomad.localhost, which routes to it.
func serveConfig(dataDir string, httpPort, httpsPort, servePort int, backend string, withServe bool) string {
	serve := ""
	if withServe {
		serve = fmt.Sprintf(`
serve "nomad" {
  port    = %d
  backend = %q
  require_atproto {
    handles      = ["alice.test"]
    public_paths = ["/v1/status/*"]
  }
  apikey_auth { users = ["ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="] }
}
host "nomad.localhost" {
  backend = "serving:nomad"
  atproto { name = "Nomad" }
}`, servePort, backend)
	}
	return fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
  trusted_proxies = ["127.0.0.0/8"]
}
admin { listen = "" }
host "app.localhost" { backend = %q }
%s
`, dataDir, httpPort, httpsPort, backend, serve)
}

// A serve block's port admits its API keys and public paths, never a
// client's identity headers; a host routed to it signs browsers in under
// the block's rules; a reload closes and opens the port.
func TestServeBlock(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s key=%q did=%q xff=%q", r.URL.Path, r.Header.Get("Apikey-User"), r.Header.Get("User-Did"), r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 3)
	httpPort, httpsPort, servePort := ps[0], ps[1], ps[2]
	rl := startReloadable(t, serveConfig(dataDir, httpPort, httpsPort, servePort, backend.URL, true))
	serveAddr := rl.srv.Addrs()["serve:nomad"]
	if serveAddr != fmt.Sprintf("127.0.0.1:%d", servePort) {
		t.Fatalf("serve port at %q", serveAddr)
	}
	do := func(addr, host, path string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusSeeOther {
			return resp.StatusCode, resp.Header.Get("Location")
		}
		return resp.StatusCode, string(b)
	}
	key := map[string]string{"Authorization": "Basic Y2k6c2VjcmV0", "User-Did": "did:plc:forged", "Apikey-User": "admin"}
	cases := []struct {
		name, addr, host, path string
		hdr                    map[string]string
		status                 int
		body                   string
	}{
		{"serve port, no key", serveAddr, serveAddr, "/v1/jobs", nil, 401, "sign in at https://nomad.localhost/"},
		{"serve port, a browser is not sent to a sign-in that is not here", serveAddr, serveAddr, "/ui/", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, 401, "sign in at https://nomad.localhost/"},
		{"serve port, key", serveAddr, serveAddr, "/v1/jobs", key, 200, `path=/v1/jobs key="ci" did=""`},
		{"serve port, no proxy is trusted there", serveAddr, serveAddr, "/v1/status/x", map[string]string{"X-Forwarded-For": "203.0.113.9"}, 200, `xff="127.0.0.1"`},
		{"serve port, wrong key", serveAddr, serveAddr, "/v1/jobs", map[string]string{"Authorization": "Basic Y2k6d3Jvbmc="}, 401, "Wrong API key"},
		{"serve port, public path", serveAddr, "localhost", "/v1/status/leader", map[string]string{"User-Did": "did:plc:forged"}, 200, `path=/v1/status/leader key="" did=""`},
		{"serve port, a rebinding name", serveAddr, "evil.example.com", "/v1/status/leader", nil, 421, "Wrong address"},
		{"serve port, no sign-in routes", serveAddr, serveAddr, "/@/signin", nil, 404, "does not offer sign-in"},
		{"front host, browser", rl.srv.Addrs()["http"], "nomad.localhost", "/ui/", map[string]string{"Accept": "text/html"}, 303, "/@/signin?redirect=%2Fui%2F"},
		{"front host, key", rl.srv.Addrs()["http"], "nomad.localhost", "/v1/jobs", key, 200, `path=/v1/jobs key="ci" did=""`},
		{"front host, public path", rl.srv.Addrs()["http"], "nomad.localhost", "/v1/status/x", nil, 200, `path=/v1/status/x`},
	}
	for _, tc := range cases {
		code, body := do(tc.addr, tc.host, tc.path, tc.hdr)
		if code != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, code, body, tc.status, tc.body)
		}
	}

	rl.reload(serveConfig(dataDir, httpPort, httpsPort, servePort, backend.URL, false))
	if _, ok := rl.srv.Addrs()["serve:nomad"]; ok {
		t.Fatal("a removed serve block's port is still listed")
	}
	if resp, err := http.Get("http://" + serveAddr + "/v1/status/leader"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a removed serve block's port still answers: %d", resp.StatusCode)
		}
	}
	rep := rl.reload(serveConfig(dataDir, httpPort, httpsPort, servePort, backend.URL, true))
	if rep.Hosts != 2 {
		t.Fatalf("report %+v", rep)
	}
	if code, body := do(serveAddr, serveAddr, "/v1/jobs", key); code != 200 {
		t.Fatalf("the serve port after it came back: %d %q", code, body)
	}
	if _, err := rl.srv.Reload(context.Background()); err != nil {
		t.Fatalf("a reload that changes nothing: %v", err)
	}
}
