package ingress

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ioproxy/ioproxy/contract"
)

// spoofed are headers no client may get to a backend, in several
// spellings: identity, address and override headers.
var reviewSpoofed = http.Header{
	"User-Did": {"did:plc:forged"}, "User_did": {"did:plc:forged"}, "User-Handle": {"evil"},
	"Proxy_session": {"forged"}, "Apikey-User": {"root"}, "User-Email": {"ceo@example.com"},
	"Forwarded": {"for=1.2.3.4"}, "X_forwarded_for": {"1.2.3.4"}, "True-Client-Ip": {"1.2.3.4"},
	"X-Forwarded-Host": {"evil.example"}, "X-Real-Ip": {"1.2.3.4"}, "X-Http-Method-Override": {"DELETE"},
	"X-Original-Url": {"/admin"}, "Http2-Settings": {"AAAA"},
}

// TestWebSocketPathStrips: the upgrade path (ReverseProxy, rewrite
// then decorate) takes off what no client may say, in every spelling, and
// sets the signed-in user's own identity, for untrusted and trusted peers.
func TestWebSocketPathStrips(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.WriteHeader(http.StatusForbidden) // no tunnel: the header is all we want
	}))
	defer backend.Close()
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
ingress { trusted_proxies = ["10.0.0.0/8"] }
host "a.example.com" {
  backend = %q
  atproto { name = "A" }
}`, backend.URL)), store)
	sess := newGateSession(t, store, "a.example.com", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "alice.test")
	for _, remote := range []string{"192.0.2.1:1234", "10.1.2.3:1234"} {
		req := httptest.NewRequest(http.MethodGet, "http://a.example.com/ws", nil)
		req.RemoteAddr = remote
		for k, v := range reviewSpoofed {
			req.Header[k] = v
		}
		req.Header.Set("Connection", "Upgrade, User-Did, X-Real-Ip")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-Websocket-Version", "13")
		req.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.AddCookie(&http.Cookie{Name: CookieName, Value: sess.ID})
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		mu.Lock()
		h := got
		got = nil
		mu.Unlock()
		if h == nil {
			t.Fatalf("%s: the backend saw nothing (%d %s)", remote, rec.Code, rec.Body)
		}
		forged := map[string]bool{}
		for _, vv := range reviewSpoofed {
			forged[vv[0]] = true
		}
		for k, vv := range h {
			for _, v := range vv {
				// A trusted proxy's own X-Forwarded-Host and X-Real-Ip are believed.
				if forged[v] && (remote == "192.0.2.1:1234" || k != "X-Forwarded-Host" && k != "X-Real-Ip") {
					t.Errorf("%s: backend saw %s: %q (spoofed)", remote, k, v)
				}
			}
		}
		if h.Get(contract.UserDID) != "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" || len(h[contract.UserDID]) != 1 {
			t.Errorf("%s: User-Did = %q, want ours only", remote, h[contract.UserDID])
		}
		if h.Get(contract.ProxySession) != sess.ProxyKey {
			t.Errorf("%s: Proxy-Session = %q", remote, h.Get(contract.ProxySession))
		}
		if remote == "192.0.2.1:1234" {
			if h.Get("X-Real-Ip") != "192.0.2.1" || h.Get("X-Forwarded-For") != "192.0.2.1" || h.Get("X-Forwarded-Host") != "a.example.com" {
				t.Errorf("untrusted peer's address headers believed: %v", h)
			}
		}
	}
}

// TestForwardAuthProxySessionOnlyToTrusted: forward-auth tells Proxy-Session
// only to a trusted proxy, never to a browser that asks /@/auth itself.
func TestForwardAuthProxySessionOnlyToTrusted(t *testing.T) {
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, `
ingress { trusted_proxies = ["10.0.0.0/8"] }
host "fa.example.com" {
  atproto { name = "FA" }
  require_atproto { dids = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"] }
}`), store)
	sess := newGateSession(t, store, "fa.example.com", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "alice.test")
	for remote, want := range map[string]string{"192.0.2.1:1234": "", "10.1.2.3:1234": sess.ProxyKey} {
		req := httptest.NewRequest(http.MethodGet, "http://fa.example.com/@/auth", nil)
		req.RemoteAddr = remote
		req.AddCookie(&http.Cookie{Name: CookieName, Value: sess.ID})
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", remote, rec.Code, rec.Body)
		}
		if got := rec.Header().Get(contract.ProxySession); got != want {
			t.Errorf("%s: Proxy-Session %q, want %q", remote, got, want)
		}
		if rec.Header().Get(contract.UserDID) != "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" {
			t.Errorf("%s: User-Did %q", remote, rec.Header().Get(contract.UserDID))
		}
	}
}
