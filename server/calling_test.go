package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// TestOperationsOnlyHostEndpointStripsOverrides: a calling port whose
// endpoint names an ingress host applies operations_only, then hands the
// call to the host's ingress handler. The app calls from 127.0.0.1, which
// examples/internal-tool.hcl lists in trusted_proxies; still, an allowed
// "GET /allowed" must not reach the backend with X-Original-URL: /admin or
// X-HTTP-Method-Override: DELETE (which Symfony-, IIS- and Express-style
// backends obey), nor with an X-Forwarded-For of the app's choosing: a
// call through a calling port never counts as coming from a trusted
// proxy, or operations_only would restrict nothing.
func TestOperationsOnlyHostEndpointStripsOverrides(t *testing.T) {
	got := make(chan http.Header, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		_ = json.NewEncoder(w).Encode("ok")
	}))
	defer backend.Close()
	ps := freePorts(t, 2)
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http            = "127.0.0.1:%d"
  trusted_proxies = ["127.0.0.1"]
}
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}
call "app" {
  port            = %d
  endpoint        = "app.localhost"
  operations_only = true
  operation "Allowed" {
    method = "GET"
    path   = "/allowed"
  }
}`, filepath.Join(t.TempDir(), "data"), ps[0], backend.URL, ps[1]))
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addrs()["call:app"]+"/allowed", nil)
	req.Header.Set("X-Original-URL", "/admin/delete-everything")
	req.Header.Set("X-HTTP-Method-Override", "DELETE")
	req.Header.Set("X-Rewrite-URL", "/admin")
	req.Header.Set("X-Forwarded-For", "203.0.113.99")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	for _, name := range []string{"X-Original-Url", "X-Http-Method-Override", "X-Rewrite-Url"} {
		if v := h.Get(name); v != "" {
			t.Errorf("through operations_only, the backend got %s: %s", name, v)
		}
	}
	if xff := h.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q: the app's own value was believed", xff)
	}
}
