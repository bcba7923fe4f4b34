package ingress

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/internal/httpguard/guardtest"
)

// TestUpgradeOtherThanWebSocketRefused is the h2c smuggling attack: a
// client asks for an h2c upgrade, a lenient backend agrees, and every
// later stream on the tunnel would reach the app past ioproxy, forged
// identity headers included. Ingress must refuse the upgrade (400) before
// the backend sees a byte.
func TestUpgradeOtherThanWebSocketRefused(t *testing.T) {
	backend := guardtest.NewLenientUpgradeBackend(t)
	cfg := mustConfig(t, fmt.Sprintf(`
host "open.example.com" { backend = %q }
host "closed.example.com" {
  backend = %q
  atproto { name = "Closed" }
  require_atproto { public_paths = ["/public/*"] }
}`, backend.Addr(), backend.Addr()))
	srv := httptest.NewServer(newRouter(t, cfg, openStore(t)))
	defer srv.Close()
	for _, where := range []struct{ host, path string }{{"open.example.com", "/"}, {"closed.example.com", "/public/x"}} {
		for _, tc := range guardtest.SmuggleAttempts {
			t.Run(where.host+"/"+tc.Name, func(t *testing.T) {
				resp, body := guardtest.Send(t, srv.Listener.Addr().String(), where.host, where.path, tc.Headers)
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("status %d, want 400; body %s", resp.StatusCode, body)
				}
				if !strings.Contains(body, "WebSocket") {
					t.Errorf("the refusal does not say what is allowed: %s", body)
				}
				if !resp.Close {
					t.Error("the connection stays open after the refusal; the rest of what was sent would be read as requests")
				}
			})
		}
	}
	if got := backend.Received(); got != "" {
		t.Errorf("the backend received %d bytes, want none:\n%s", len(got), got)
	}
}

// TestHTTP2SettingsNeverForwarded: without an upgrade the header means
// nothing, and a backend that sees it might still try one.
func TestHTTP2SettingsNeverForwarded(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL)), nil)
	_, s := get(t, rt, "a.example.com", "/", http.Header{"Http2-Settings": {"AAMAAABkAAQCAAAAAAIAAAAA"}, "Http2_settings": {"x"}})
	if s.Headers == nil {
		t.Fatal("the request did not reach the backend")
	}
	if hasFolded(s.Headers, "http2-settings") {
		t.Errorf("backend saw HTTP2-Settings: %v", s.Headers)
	}
}

// TestMethodOverridesStrippedFromClients: frameworks that honour these
// would let a client change a request's method or URL behind ioproxy's
// back. A trusted proxy in front passes its clients' headers on as they
// came, so they are stripped from it too.
func TestMethodOverridesStrippedFromClients(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
ingress { trusted_proxies = ["10.0.0.0/8"] }
host "a.example.com" { backend = %q }`, a.URL)), nil)
	hdr := http.Header{
		"X-Http-Method-Override": {"DELETE"}, "X-Http-Method": {"DELETE"}, "X_Method_Override": {"DELETE"},
		"X-Original-Method": {"DELETE"}, "X-Override-Url": {"/admin"}, "X-Scheme": {"https"},
		"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"},
	}
	for _, remote := range []string{"192.0.2.1:1234", "10.1.2.3:1234"} {
		req := httptest.NewRequest(http.MethodPost, "http://a.example.com/", nil)
		req.RemoteAddr = remote
		for k, v := range hdr {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		var s seen
		if err := jsonDecode(rec.Body, &s); err != nil {
			t.Fatalf("%s: %v (%d %s)", remote, err, rec.Code, rec.Body)
		}
		for name := range hdr {
			if hasFolded(s.Headers, name) {
				t.Errorf("from %s: backend saw %s", remote, name)
			}
		}
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// hasFolded reports whether h holds name in any spelling (case, "_").
func hasFolded(h http.Header, name string) bool {
	fold := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }
	for k := range h {
		if fold(k) == fold(name) {
			return true
		}
	}
	return false
}
