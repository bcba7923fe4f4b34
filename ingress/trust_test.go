package ingress

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/sessions"
)

// TestStaleHandleNotShownToBackends: a session whose handle was last
// verified a month ago (its server keeps failing: a self-run did:web whose
// document answers 500 keeps the session alive, since only a definite "not
// found" ends it) reaches the backend as User-Handle: handle.invalid, on
// an open host and on a host whose rules admit it by DID: that handle may
// belong to someone else by now.
func TestStaleHandleNotShownToBackends(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	const did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
host "open.example.com" {
  backend = %q
  tls { mode = "off" }
}
host "bydid.example.com" {
  backend = %q
  tls { mode = "off" }
  require_atproto { dids = [%q] }
}`, a.URL, a.URL, did)), store)
	for _, host := range []string{"open.example.com", "bydid.example.com"} {
		sess := newGateSession(t, store, host, did, "bob.example.com")
		if _, err := store.Update(context.Background(), sess.ID, func(s *sessions.Session) error {
			s.HandleCheckedAt = time.Now().Add(-29 * 24 * time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rec, seen := gateReq{host: host, path: "/", session: &sess}.serve(t, rt)
		if got := seen.Headers.Get(contract.UserHandle); rec.Code != 200 || got != "handle.invalid" || seen.Headers.Get(contract.UserDID) != did {
			t.Errorf("%s: %d, the backend is told User-Handle %q for a handle last verified 29 days ago, want handle.invalid with the DID", host, rec.Code, got)
		}
	}
}

// TestTrustedProxyStillStripsOverrides: behind a proxy listed in
// trusted_proxies (a load balancer, nginx), a client's X-Original-URL,
// X-Rewrite-URL and method overrides never reach the backend: a front
// proxy forwards a client's headers as they are unless told otherwise, so
// they are the client speaking. Else an unauthenticated request for a
// public /public/x would carry "X-Original-URL: /admin" to a backend that
// routes by it (IIS URL Rewrite, Laminas/Zend, old Symfony), past
// require_atproto.
func TestTrustedProxyStillStripsOverrides(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
ingress { trusted_proxies = ["192.0.2.0/24"] }
host "tool.example.com" {
  backend = %q
  tls { mode = "off" }
  require_atproto {
    dids         = ["did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"]
    public_paths = ["/public/*"]
  }
}`, a.URL)), store)
	hdr := map[string][]string{"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "X-Http-Method-Override": {"DELETE"}}
	rec, seen := gateReq{host: "tool.example.com", path: "/public/x", remote: "192.0.2.7:5555", header: hdr}.serve(t, rt)
	if rec.Code != 200 {
		t.Fatalf("public path: %d", rec.Code)
	}
	for name := range hdr {
		if v := seen.Headers.Get(name); v != "" {
			t.Errorf("unauthenticated, via a trusted proxy, the backend got %s: %s", name, v)
		}
	}
}
