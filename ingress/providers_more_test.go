package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/provider"
	"github.com/ioproxy/ioproxy/sessions"
)

// pmGoogle is an oauth "google" block as the hosts of these tests write it.
const pmGoogle = `
  oauth "google" {
    client_id     = "client"
    client_secret = env("SECRET")
    issuer        = "https://accounts.example.net"
  }`

// pmEnv is a router over a store, with one fake provider client for
// every oauth block of every host, and the AT Protocol sign-in form on
// every host with an atproto block (its routes that need an OAuth client
// are not used here).
type pmEnv struct {
	rt      *Router
	f       *fakeProviderClient
	store   sessions.Store
	life    *sessions.Lifecycle
	backend string
}

// pmConfig is src with BACKEND replaced by the backend's URL and GOOGLE
// by pmGoogle.
func pmConfig(t *testing.T, src, backend string) *config.Config {
	t.Helper()
	return mustConfig(t, strings.NewReplacer("BACKEND", backend, "GOOGLE", pmGoogle).Replace(src))
}

func newPMEnv(t *testing.T, src string, store sessions.Store) *pmEnv {
	t.Helper()
	if store == nil {
		store = openStore(t)
	}
	e := &pmEnv{f: newFakeProviderClient(), store: store, backend: echoBackend(t, "app").URL}
	e.life = sessions.NewLifecycle(sessions.LifecycleConfig{Store: store})
	cfg := pmConfig(t, src, e.backend)
	rc := e.routesConfig(cfg)
	rt, err := New(Config{Config: cfg, Sessions: e.life, SignIns: rc.SignIns, Providers: rc.Providers})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt
	return e
}

func (e *pmEnv) routesConfig(cfg *config.Config) RoutesConfig {
	rc := RoutesConfig{Config: cfg, SignIns: map[string]http.Handler{}, Providers: map[string]map[string]ProviderClient{}}
	for _, h := range cfg.Hosts {
		if h.ATProto != nil {
			rc.SignIns[h.Hostname] = NewSignIn(SignInConfig{Host: h, Sessions: e.life})
		}
		for _, p := range h.OAuth {
			if rc.Providers[h.Hostname] == nil {
				rc.Providers[h.Hostname] = map[string]ProviderClient{}
			}
			rc.Providers[h.Hostname][p.Name] = e.f
		}
	}
	return rc
}

// reload replaces the routes with those of another configuration, as
// ioproxy reload does: the store and its sessions stay.
func (e *pmEnv) reload(t *testing.T, src string) {
	t.Helper()
	routes, err := e.rt.NewRoutes(e.routesConfig(pmConfig(t, src, e.backend)))
	if err != nil {
		t.Fatal(err)
	}
	e.rt.SetRoutes(routes)
}

// signIn signs jar in with google on host as who, and returns the
// provider session.
func (e *pmEnv) signIn(t *testing.T, jar browserJar, host string, who provider.Identity) sessions.Session {
	t.Helper()
	rec := signInWith(t, e.rt, e.f, jar, host, who)
	if rec.Code != http.StatusSeeOther || jar["ioproxy-oauth-google"] == "" {
		t.Fatalf("sign-in of %s on %s: %d %s", who.Email, host, rec.Code, rec.Body)
	}
	sess, err := e.store.Get(t.Context(), jar["ioproxy-oauth-google"])
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// serve sends one request, from remote when it is set, and decodes what
// the backend saw when the backend answered.
func (e *pmEnv) serve(t *testing.T, jar browserJar, method, target, remote string, hdr http.Header) (*httptest.ResponseRecorder, *seen) {
	t.Helper()
	req := jar.request(method, target, hdr)
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	e.rt.ServeHTTP(rec, req)
	if rec.Header().Get("X-Backend") == "" {
		return rec, nil
	}
	var s seen
	if err := decodeSeen(rec, &s); err != nil {
		t.Fatalf("backend answer: %v", err)
	}
	return rec, &s
}

// pmJar is a browser holding the cookies given, as name, value pairs.
func pmJar(kv ...string) browserJar {
	j := browserJar{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			j[kv[i]] = kv[i+1]
		}
	}
	return j
}

// pmIdentity is what the backend was told of a request, as the contract
// names it: "" for a header it did not get.
type pmIdentity struct {
	did, handle, provider, email, subject, proxySession string
}

func pmIdentityOf(h http.Header) pmIdentity {
	return pmIdentity{
		did: h.Get(contract.UserDID), handle: h.Get(contract.UserHandle), provider: h.Get(contract.ProxyProvider),
		email: h.Get(contract.UserEmail), subject: h.Get(contract.UserSubject), proxySession: h.Get(contract.ProxySession),
	}
}

// A browser signed in with AT Protocol and with a provider on one host at
// once is both to the backend: User-Did and the provider's headers, and
// one Proxy-Session key of each, the AT Protocol one first, from which a
// call picks the session it needs. Signing out of the provider leaves the
// AT Protocol session.
func TestATProtoAndProviderAtOnce(t *testing.T) {
	e := newPMEnv(t, `
host "both.localhost" {
  backend = "BACKEND"
  atproto {}
  GOOGLE
  tls { mode = "off" }
}
host "ruled.localhost" {
  backend = "BACKEND"
  require_atproto { handles = ["alice.example.com"] }
  GOOGLE
  require_oauth "google" { emails = ["alice@example.com"] }
  tls { mode = "off" }
}`, nil)
	for _, tt := range []struct {
		name, host string
	}{
		{"open host", "both.localhost"},
		{"host whose rules admit both", "ruled.localhost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at := newGateSession(t, e.store, tt.host, gateAlice, "alice.example.com")
			jar := pmJar(CookieName, at.ID)
			g := e.signIn(t, jar, tt.host, provider.Identity{Subject: "sub-" + tt.host, Email: "alice@example.com", EmailVerified: true})
			if jar[CookieName] != at.ID {
				t.Fatalf("the provider's sign-in changed the AT Protocol cookie: %v", jar)
			}
			rec, s := e.serve(t, jar, http.MethodGet, "http://"+tt.host+"/report", "", nil)
			if rec.Code != http.StatusOK || s == nil {
				t.Fatalf("signed in twice: %d %s", rec.Code, rec.Body)
			}
			want := pmIdentity{did: gateAlice, handle: "alice.example.com", provider: "google", email: "alice@example.com",
				subject: "google:sub-" + tt.host, proxySession: at.ProxyKey + "," + g.ProxyKey}
			if got := pmIdentityOf(s.Headers); got != want {
				t.Fatalf("backend was told\n%+v\nwant\n%+v", got, want)
			}
			if n := len(s.Headers.Values(contract.ProxySession)); n != 1 {
				t.Errorf("%d Proxy-Session headers, want one list", n)
			}
			for _, pick := range []struct {
				provider string
				want     string
				err      error
			}{
				{"", at.ID, nil},
				{"google", g.ID, nil},
				{"github", "", sessions.ErrNotFound},
			} {
				sess, err := e.life.ByProxyKeys(t.Context(), want.proxySession, pick.provider)
				if !errors.Is(err, pick.err) || sess.ID != pick.want {
					t.Errorf("ByProxyKeys(%q): session %q, %v; want %q, %v", pick.provider, sess.ID, err, pick.want, pick.err)
				}
			}
			// Signing out of the provider ends that session alone.
			rec, _ = e.serve(t, jar, http.MethodPost, "http://"+tt.host+"/@google/signout", "", http.Header{"Origin": {"http://" + tt.host}})
			jar.keep(rec)
			if rec.Code != http.StatusSeeOther || jar[CookieName] != at.ID || jar["ioproxy-oauth-google"] != "" {
				t.Fatalf("provider sign-out: %d, cookies %v", rec.Code, jar)
			}
			rec, s = e.serve(t, jar, http.MethodGet, "http://"+tt.host+"/report", "", nil)
			if rec.Code != http.StatusOK || s == nil {
				t.Fatalf("after the provider's sign-out: %d %s", rec.Code, rec.Body)
			}
			want = pmIdentity{did: gateAlice, handle: "alice.example.com", proxySession: at.ProxyKey}
			if got := pmIdentityOf(s.Headers); got != want {
				t.Errorf("after the provider's sign-out the backend was told\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// pmMixed is a host that admits AT Protocol accounts by handle and
// Google accounts by email, with a public path; EMAILS is the emails
// list.
const pmMixed = `
host "mixed.localhost" {
  backend = "BACKEND"
  require_atproto {
    handles      = ["bob.example.com"]
    public_paths = ["/healthz"]
  }
  GOOGLE
  require_oauth "google" { emails = EMAILS }
  tls { mode = "off" }
}`

// Any rule admits: require_atproto for the AT Protocol session,
// require_oauth for the provider's. An account one rule refuses is not
// passed on when another admits the request; a provider session whose
// rules refuse it (the rules changed by a reload after it signed in) gets
// the 403 page naming its email, with a sign-out from that provider; and
// public paths pass as nobody whoever is refused.
func TestAdmissionWithSeveralRuleKinds(t *testing.T) {
	e := newPMEnv(t, strings.Replace(pmMixed, "EMAILS", `["alice@example.com", "carol@example.com"]`, 1), nil)
	const host = "mixed.localhost"
	bob := newGateSession(t, e.store, host, gateBob, "bob.example.com")
	mallory := newGateSession(t, e.store, host, gateCarol, "mallory.example.net")
	alice := e.signIn(t, browserJar{}, host, provider.Identity{Subject: "a1", Email: "alice@example.com", EmailVerified: true})
	carol := e.signIn(t, browserJar{}, host, provider.Identity{Subject: "c1", Email: "carol@example.com", EmailVerified: true})
	// Carol signed in under the old rules; the new ones refuse her.
	e.reload(t, strings.Replace(pmMixed, "EMAILS", `["alice@example.com"]`, 1))

	type cookies struct{ at, google string }
	for _, tt := range []struct {
		name   string
		path   string
		c      cookies
		header http.Header
		status int
		want   pmIdentity // on 200
		page   []string   // on 403, in the body
	}{
		{"AT Protocol alone", "/report", cookies{at: bob.ID}, nil, 200,
			pmIdentity{did: gateBob, handle: "bob.example.com", proxySession: bob.ProxyKey}, nil},
		{"google alone", "/report", cookies{google: alice.ID}, nil, 200,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: alice.ProxyKey}, nil},
		{"both admitted", "/report", cookies{bob.ID, alice.ID}, nil, 200,
			pmIdentity{did: gateBob, handle: "bob.example.com", provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: bob.ProxyKey + "," + alice.ProxyKey}, nil},
		{"denied AT Protocol account, admitted google", "/report", cookies{mallory.ID, alice.ID}, nil, 200,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: alice.ProxyKey}, nil},
		{"admitted AT Protocol account, refused google", "/report", cookies{bob.ID, carol.ID}, nil, 200,
			pmIdentity{did: gateBob, handle: "bob.example.com", proxySession: bob.ProxyKey}, nil},
		{"refused google alone", "/report", cookies{google: carol.ID}, htmlAccept(), 403, pmIdentity{},
			[]string{"carol@example.com", "google:c1", `action="/@google/signout"`, fmt.Sprintf(deniedCSRF, csrfToken(carol.ID)), `name="redirect" value="/report"`}},
		{"refused google alone, JSON", "/report", cookies{google: carol.ID}, jsonClient, 403, pmIdentity{},
			[]string{`"Forbidden"`, "carol@example.com"}},
		{"denied AT Protocol account alone", "/report", cookies{at: mallory.ID}, htmlAccept(), 403, pmIdentity{},
			[]string{gateCarol, `action="/@/signout"`}},
		{"denied AT Protocol account, refused google", "/report", cookies{mallory.ID, carol.ID}, htmlAccept(), 403, pmIdentity{}, nil},
		{"nobody, JSON", "/report", cookies{}, jsonClient, 401, pmIdentity{}, nil},
		{"public path, nobody", "/healthz", cookies{}, nil, 200, pmIdentity{}, nil},
		{"public path, refused google", "/healthz", cookies{google: carol.ID}, nil, 200, pmIdentity{}, nil},
		{"public path, denied AT Protocol account", "/healthz", cookies{at: mallory.ID}, nil, 200, pmIdentity{}, nil},
		{"public path, both refused", "/healthz", cookies{mallory.ID, carol.ID}, nil, 200, pmIdentity{}, nil},
		{"public path, admitted google", "/healthz", cookies{google: alice.ID}, nil, 200,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: alice.ProxyKey}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jar := pmJar(CookieName, tt.c.at, "ioproxy-oauth-google", tt.c.google)
			rec, s := e.serve(t, jar, http.MethodGet, "http://"+host+tt.path, "", tt.header)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status != 200 {
				if s != nil {
					t.Fatalf("a refused request reached the backend")
				}
				for _, want := range tt.page {
					if !strings.Contains(rec.Body.String(), want) {
						t.Errorf("answer lacks %s:\n%s", want, rec.Body)
					}
				}
				return
			}
			if s == nil {
				t.Fatalf("not the backend's answer: %s", rec.Body)
			}
			if got := pmIdentityOf(s.Headers); got != tt.want {
				t.Errorf("backend was told\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, k := range []string{mallory.ProxyKey, carol.ProxyKey} {
				if strings.Contains(s.Headers.Get(contract.ProxySession), k) {
					t.Errorf("the key of a refused session reached the backend")
				}
			}
		})
	}
	// The sign-out form of the 403 page works: its token signs carol out
	// of google, without an Origin.
	form := url.Values{"csrf": {csrfToken(carol.ID)}, "redirect": {"/report"}}
	req := httptest.NewRequest(http.MethodPost, "http://"+host+"/@google/signout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "ioproxy-oauth-google", Value: carol.ID})
	rec := httptest.NewRecorder()
	e.rt.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/report" {
		t.Fatalf("sign-out from the 403 page: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if _, ok := getSession(e.store, carol.ID); ok {
		t.Error("carol's session outlived her sign-out")
	}
}

// pmForwardAuth has two forward-auth hosts (no backend): one admitting
// Google accounts of example.com only, one admitting AT Protocol
// accounts by handle as well. 192.0.2.1 (httptest's address) is the
// trusted proxy in front. DOMAINS is google's domains list.
const pmForwardAuth = `
ingress { trusted_proxies = ["192.0.2.1"] }
host "fa.localhost" {
  GOOGLE
  require_oauth "google" { domains = DOMAINS }
  tls { mode = "off" }
}
host "fa-mixed.localhost" {
  require_atproto { handles = ["bob.example.com"] }
  GOOGLE
  require_oauth "google" { domains = DOMAINS }
  tls { mode = "off" }
}`

// /@/auth of a forward-auth host with require_oauth answers 200 with the
// provider's identity headers for an admitted provider session
// (Proxy-Session only to the trusted proxy), 401 with a sign-in link (and
// Refresh for a browser loading a page) without one, and 403 naming the
// account the rules refuse; never any other status (nginx would make it
// a 500).
func TestForwardAuthWithProviders(t *testing.T) {
	e := newPMEnv(t, strings.ReplaceAll(pmForwardAuth, "DOMAINS", `["example.com"]`), nil)
	alice := e.signIn(t, browserJar{}, "fa.localhost", provider.Identity{Subject: "a1", Email: "alice@example.com", EmailVerified: true})
	aliceMixed := e.signIn(t, browserJar{}, "fa-mixed.localhost", provider.Identity{Subject: "a1", Email: "alice@example.com", EmailVerified: true})
	bob := newGateSession(t, e.store, "fa-mixed.localhost", gateBob, "bob.example.com")
	const trusted, untrusted = "192.0.2.1:1234", "203.0.113.5:1234"
	back := http.Header{"X-Forwarded-Uri": {"/report?id=1"}}
	nav := http.Header{"X-Forwarded-Uri": {"/report?id=1"}, "Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}
	type cookies struct{ at, google string }
	for _, tt := range []struct {
		name    string
		host    string
		c       cookies
		remote  string
		header  http.Header
		status  int
		want    pmIdentity // headers on 200
		signin  string     // the 401's sign-in link
		refresh bool       // the 401 carries Refresh
	}{
		{"admitted, trusted proxy", "fa.localhost", cookies{google: alice.ID}, trusted, nil, 200,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: alice.ProxyKey}, "", false},
		{"admitted, browser asking itself", "fa.localhost", cookies{google: alice.ID}, untrusted, nil, 200,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1"}, "", false},
		{"admitted with AT Protocol too, trusted proxy", "fa-mixed.localhost", cookies{bob.ID, aliceMixed.ID}, trusted, nil, 200,
			pmIdentity{did: gateBob, handle: "bob.example.com", provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: bob.ProxyKey + "," + aliceMixed.ProxyKey}, "", false},
		{"admitted with AT Protocol too, untrusted", "fa-mixed.localhost", cookies{bob.ID, aliceMixed.ID}, untrusted, nil, 200,
			pmIdentity{did: gateBob, handle: "bob.example.com", provider: "google", email: "alice@example.com", subject: "google:a1"}, "", false},
		{"another host's provider session", "fa-mixed.localhost", cookies{google: alice.ID}, trusted, back, 401, pmIdentity{},
			"/@/signin?redirect=%2Freport%3Fid%3D1", false},
		{"signed out, providers only", "fa.localhost", cookies{}, trusted, back, 401, pmIdentity{},
			"/@google/signin?redirect=%2Freport%3Fid%3D1", false},
		{"signed out browser, providers only", "fa.localhost", cookies{}, trusted, nav, 401, pmIdentity{},
			"/@google/signin?redirect=%2Freport%3Fid%3D1", true},
		{"signed out, with AT Protocol", "fa-mixed.localhost", cookies{}, trusted, back, 401, pmIdentity{},
			"/@/signin?redirect=%2Freport%3Fid%3D1", false},
		{"signed out browser, with AT Protocol", "fa-mixed.localhost", cookies{}, trusted, nav, 401, pmIdentity{},
			"/@/signin?redirect=%2Freport%3Fid%3D1", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jar := pmJar(CookieName, tt.c.at, "ioproxy-oauth-google", tt.c.google)
			rec, s := e.serve(t, jar, http.MethodGet, "http://"+tt.host+"/@/auth", tt.remote, tt.header)
			if s != nil {
				t.Fatal("a forward-auth host reached a backend")
			}
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			got := pmIdentityOf(rec.Header())
			if got != tt.want {
				t.Errorf("answered with\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, k := range []string{alice.ProxyKey, aliceMixed.ProxyKey, bob.ProxyKey} {
				if strings.Contains(rec.Body.String(), k) {
					t.Error("the body carries a Proxy-Session key")
				}
			}
			switch tt.status {
			case 200:
				var body map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["email"] != tt.want.email || body["subject"] != tt.want.subject {
					t.Errorf("body %s (%v)", rec.Body, err)
				}
			case 401:
				if !strings.Contains(rec.Body.String(), `href="`+template.HTMLEscapeString(tt.signin)+`"`) {
					t.Errorf("the 401 page does not link to %s:\n%s", tt.signin, rec.Body)
				}
				wantRefresh := ""
				if tt.refresh {
					wantRefresh = "0; url=" + tt.signin
				}
				if r := rec.Header().Get("Refresh"); r != wantRefresh {
					t.Errorf("Refresh %q, want %q", r, wantRefresh)
				}
			}
		})
	}
	// The rules change: alice's example.com is no longer admitted.
	e.reload(t, strings.ReplaceAll(pmForwardAuth, "DOMAINS", `["example.org"]`))
	rec, _ := e.serve(t, pmJar("ioproxy-oauth-google", alice.ID), http.MethodGet, "http://fa.localhost/@/auth", trusted, http.Header{"Accept": {"text/html"}, "X-Forwarded-Uri": {"/report"}})
	if rec.Code != http.StatusForbidden || pmIdentityOf(rec.Header()) != (pmIdentity{}) {
		t.Fatalf("refused provider session: %d %+v", rec.Code, pmIdentityOf(rec.Header()))
	}
	for _, want := range []string{"alice@example.com", `action="/@google/signout"`, `name="redirect" value="/report"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("the 403 page lacks %s:\n%s", want, rec.Body)
		}
	}
}

// The sign-in form of a host with atproto and oauth blocks offers each
// provider, linking to its sign-in with the redirect the form itself
// keeps; a host with providers only sends a signed-out browser straight
// to the first provider's sign-in, and tells other clients where it is.
func TestSignInPageOffersProviders(t *testing.T) {
	e := newPMEnv(t, `
host "app.localhost" {
  backend = "BACKEND"
  require_atproto { handles = ["bob.example.com"] }
  GOOGLE
  oauth "corp" {
    client_id     = "client"
    client_secret = env("SECRET")
    issuer        = "https://login.corp.example.net"
  }
  tls { mode = "off" }
}
host "tools.localhost" {
  backend = "BACKEND"
  GOOGLE
  require_oauth "google" { domains = ["example.com"] }
  tls { mode = "off" }
}`, nil)
	for _, tt := range []struct {
		name, redirect, want string
	}{
		{"a path", "/report", "/report"},
		{"a path and query", "/report?id=1&week=48", "/report?id=1&week=48"},
		{"none", "", "/"},
		{"another site", "//evil.example.net/", "/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec, _ := e.serve(t, browserJar{}, http.MethodGet, "http://app.localhost/@/signin?redirect="+url.QueryEscape(tt.redirect), "", nil)
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("sign-in form: %d %s", rec.Code, body)
			}
			for _, want := range []string{
				`name="redirect" value="` + template.HTMLEscapeString(tt.want) + `"`,
				`href="` + template.HTMLEscapeString("/@google/signin?redirect="+url.QueryEscape(tt.want)) + `"`,
				"Sign in with Google",
				`href="` + template.HTMLEscapeString("/@corp/signin?redirect="+url.QueryEscape(tt.want)) + `"`,
				"Sign in with Corp",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("form lacks %s:\n%s", want, body)
				}
			}
			if strings.Index(body, "Sign in with Google") > strings.Index(body, "Sign in with Corp") {
				t.Error("the providers are not in the host's order")
			}
		})
	}
	// A signed-out browser on a page of the host with atproto is sent to
	// that form, which offers Google with the same redirect.
	rec, _ := e.serve(t, browserJar{}, http.MethodGet, "http://app.localhost/report?id=1", "", navigation)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/@/signin?redirect=%2Freport%3Fid%3D1" {
		t.Fatalf("signed-out browser on the atproto host: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec, _ = e.serve(t, browserJar{}, http.MethodGet, "http://app.localhost"+rec.Header().Get("Location"), "", navigation)
	if want := `href="` + template.HTMLEscapeString("/@google/signin?redirect=%2Freport%3Fid%3D1") + `"`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("the form it was sent to lacks %s:\n%s", want, rec.Body)
	}

	// The host with providers only.
	for _, tt := range []struct {
		name     string
		method   string
		header   http.Header
		status   int
		location string
	}{
		{"browser loading a page", http.MethodGet, navigation, http.StatusSeeOther, "/@google/signin?redirect=%2Freport%3Fid%3D1"},
		{"browser without Sec-Fetch-Mode", http.MethodGet, htmlAccept(), http.StatusSeeOther, "/@google/signin?redirect=%2Freport%3Fid%3D1"},
		{"HEAD", http.MethodHead, navigation, http.StatusSeeOther, "/@google/signin?redirect=%2Freport%3Fid%3D1"},
		{"script's fetch", http.MethodGet, http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}}, http.StatusUnauthorized, ""},
		{"JSON client", http.MethodGet, jsonClient, http.StatusUnauthorized, ""},
		{"form POST", http.MethodPost, navigation, http.StatusUnauthorized, ""},
	} {
		t.Run("providers only, "+tt.name, func(t *testing.T) {
			rec, s := e.serve(t, browserJar{}, tt.method, "http://tools.localhost/report?id=1", "", tt.header)
			if s != nil || rec.Code != tt.status || rec.Header().Get("Location") != tt.location {
				t.Fatalf("%d Location %q, want %d %q", rec.Code, rec.Header().Get("Location"), tt.status, tt.location)
			}
			if tt.status == http.StatusUnauthorized && tt.header.Get("Accept") == "text/html" && !strings.Contains(rec.Body.String(), `href="/@google/signin"`) {
				t.Errorf("the 401 page does not link to the provider's sign-in:\n%s", rec.Body)
			}
		})
	}
}

// The provider's routes are ioproxy's on the hosts that have the
// provider, and every path under them answers something sensible (a
// redirect to the clean spelling, a readable 400 or 404, never the
// backend); on a host without the provider the same paths are the app's
// own.
func TestProviderPaths(t *testing.T) {
	e := newPMEnv(t, `
host "tools.localhost" {
  backend = "BACKEND"
  GOOGLE
  require_oauth "google" { domains = ["example.com"] }
  tls { mode = "off" }
}
host "open.localhost" {
  backend = "BACKEND"
  GOOGLE
  tls { mode = "off" }
}
host "plain.localhost" {
  backend = "BACKEND"
  tls { mode = "off" }
}
host "at.localhost" {
  backend = "BACKEND"
  atproto {}
  tls { mode = "off" }
}`, nil)
	// A browser with a sign-in under way, for the callbacks.
	started := browserJar{}
	rec, _ := e.serve(t, started, http.MethodGet, "http://tools.localhost/@google/signin", "", nil)
	started.keep(rec)
	if rec.Code != http.StatusSeeOther || len(started) != 1 {
		t.Fatalf("sign-in start: %d %v", rec.Code, started)
	}
	for _, tt := range []struct {
		name    string
		jar     browserJar
		method  string
		target  string
		header  http.Header
		status  []int
		backend string // the path the backend saw, when it must answer
		body    string // in the answer, when ioproxy answers
	}{
		{"no slash", nil, http.MethodGet, "http://tools.localhost/@google", nil, []int{404}, "", "no such sign-in page"},
		{"just the prefix", nil, http.MethodGet, "http://tools.localhost/@google/", nil, []int{404}, "", "no such sign-in page"},
		{"unknown route", nil, http.MethodGet, "http://tools.localhost/@google/unknown", nil, []int{404}, "", "no such sign-in page"},
		{"route with a trailing slash", nil, http.MethodGet, "http://tools.localhost/@google/signin/", nil, []int{404}, "", "no such sign-in page"},
		{"callback without state or cookie", nil, http.MethodGet, "http://tools.localhost/@google/callback", nil, []int{400}, "", "did not start in this browser"},
		{"callback without state", started, http.MethodGet, "http://tools.localhost/@google/callback?code=x", nil, []int{400}, "", "did not start in this browser"},
		{"callback of an unknown state", started, http.MethodGet, "http://tools.localhost/@google/callback?state=" + sessions.NewToken() + "&code=x", nil, []int{400}, "", "Please sign in again"},
		{"callback without state, JSON", nil, http.MethodGet, "http://tools.localhost/@google/callback", jsonClient, []int{400}, "", `"InvalidRequest"`},
		{"POST to the callback", started, http.MethodPost, "http://tools.localhost/@google/callback?state=x&code=y", nil, []int{404, 405}, "", ""},
		{"PUT to the sign-in", nil, http.MethodPut, "http://tools.localhost/@google/signin", nil, []int{404, 405}, "", ""},
		{"signed-out sign-out page", nil, http.MethodGet, "http://tools.localhost/@google/signout", nil, []int{200}, "", "not signed in with Google"},
		{"dot segments", nil, http.MethodGet, "http://tools.localhost/x/../@google/signin?redirect=%2Fa", nil, []int{308}, "", ""},
		{"doubled slash", nil, http.MethodGet, "http://tools.localhost//@google/callback?state=x", nil, []int{308}, "", ""},
		{"open host, no slash", nil, http.MethodGet, "http://open.localhost/@google", nil, []int{404}, "", "no such sign-in page"},
		{"open host, a longer name is the app's", nil, http.MethodGet, "http://open.localhost/@googlex/signin", nil, []int{200}, "/@googlex/signin", ""},
		{"host without the provider, sign-in", nil, http.MethodGet, "http://plain.localhost/@google/signin?redirect=%2Freport", nil, []int{200}, "/@google/signin", ""},
		{"host without the provider, callback", nil, http.MethodGet, "http://plain.localhost/@google/callback?state=x&code=y", nil, []int{200}, "/@google/callback", ""},
		{"host without the provider, no slash", nil, http.MethodPost, "http://plain.localhost/@google", nil, []int{200}, "/@google", ""},
		{"atproto host without the provider", nil, http.MethodGet, "http://at.localhost/@google/signin", nil, []int{200}, "/@google/signin", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec, s := e.serve(t, tt.jar, tt.method, tt.target, "", tt.header)
			ok := false
			for _, st := range tt.status {
				ok = ok || rec.Code == st
			}
			if !ok {
				t.Fatalf("status %d, want one of %v: %s", rec.Code, tt.status, rec.Body)
			}
			switch {
			case tt.backend != "" && s == nil:
				t.Fatalf("the backend did not answer: %s", rec.Body)
			case tt.backend != "" && s.Path != tt.backend:
				t.Fatalf("the backend saw %q, want %q", s.Path, tt.backend)
			case tt.backend == "" && s != nil:
				t.Fatalf("the backend answered %s", s.Path)
			}
			if tt.body != "" && !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("answer lacks %q: %s", tt.body, rec.Body)
			}
			if rec.Code == 308 {
				u, err := url.Parse(tt.target)
				if err != nil {
					t.Fatal(err)
				}
				want := normalizePath(u.Path)
				if u.RawQuery != "" {
					want += "?" + u.RawQuery
				}
				if rec.Header().Get("Location") != want {
					t.Errorf("Location %q, want %q", rec.Header().Get("Location"), want)
				}
			}
		})
	}
}

// pmCountingStore counts the session lookups that reach the store.
type pmCountingStore struct {
	sessions.Store
	lookups atomic.Int64
}

func (c *pmCountingStore) Get(ctx context.Context, id string) (sessions.Session, error) {
	c.lookups.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *pmCountingStore) Latest(ctx context.Context, id string) (sessions.Session, error) {
	c.lookups.Add(1)
	return c.Store.Latest(ctx, id)
}

func (c *pmCountingStore) ByProxyKey(ctx context.Context, key string) (sessions.Session, error) {
	c.lookups.Add(1)
	return c.Store.ByProxyKey(ctx, key)
}

// A provider's session cookie is honoured only by the host it was set
// for, for the provider it was set for, under the cookie name of the
// scheme in use; a value that is not a well-formed token is ignored
// without a store lookup.
func TestProviderCookieOnlyForItsHost(t *testing.T) {
	store := &pmCountingStore{Store: openStore(t)}
	e := newPMEnv(t, `
host "tools.localhost" {
  backend = "BACKEND"
  GOOGLE
  require_oauth "google" { domains = ["example.com"] }
  tls { mode = "off" }
}
host "open.localhost" {
  backend = "BACKEND"
  GOOGLE
  tls { mode = "off" }
}`, store)
	onTools := e.signIn(t, browserJar{}, "tools.localhost", provider.Identity{Subject: "a1", Email: "alice@example.com", EmailVerified: true})
	onOpen := e.signIn(t, browserJar{}, "open.localhost", provider.Identity{Subject: "b1", Email: "bob@else.example", EmailVerified: true})
	atOpen := newGateSession(t, store, "open.localhost", gateBob, "bob.example.com")
	for _, tt := range []struct {
		name    string
		host    string
		jar     browserJar
		status  int
		lookups int64 // store lookups the request costs
	}{
		{"own host (control)", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID), 200, 1},
		{"host A's cookie on host B with rules", "tools.localhost", pmJar("ioproxy-oauth-google", onOpen.ID), 401, 1},
		{"host B's cookie on open host A", "open.localhost", pmJar("ioproxy-oauth-google", onTools.ID), 200, 1},
		{"another provider's cookie name", "open.localhost", pmJar("ioproxy-oauth-github", onOpen.ID), 200, 0},
		{"the HTTPS cookie name over HTTP", "open.localhost", pmJar("__Host-ioproxy-oauth-google", onOpen.ID), 200, 0},
		{"an AT Protocol session in the provider cookie", "open.localhost", pmJar("ioproxy-oauth-google", atOpen.ID), 200, 1},
		{"well-formed unknown token (control)", "open.localhost", pmJar("ioproxy-oauth-google", sessions.NewToken()), 200, 1},
		{"short", "open.localhost", pmJar("ioproxy-oauth-google", "x"), 200, 0},
		{"one too long", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID+"A"), 200, 0},
		{"one too short", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID[:42]), 200, 0},
		{"padding", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID[:42]+"="), 200, 0},
		{"a dot", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID[:42]+"."), 200, 0},
		{"standard base64", "open.localhost", pmJar("ioproxy-oauth-google", onOpen.ID[:41]+"+/"), 200, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := store.lookups.Load()
			rec, s := e.serve(t, tt.jar, http.MethodGet, "http://"+tt.host+"/report", "", jsonClient)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := store.lookups.Load() - before; got != tt.lookups {
				t.Errorf("%d store lookups, want %d", got, tt.lookups)
			}
			if tt.status != 200 {
				return
			}
			if s == nil {
				t.Fatalf("not the backend's answer: %s", rec.Body)
			}
			want := pmIdentity{}
			if strings.HasPrefix(tt.name, "own host") {
				want = pmIdentity{provider: "google", email: "bob@else.example", subject: "google:b1", proxySession: onOpen.ProxyKey}
			}
			if got := pmIdentityOf(s.Headers); got != want {
				t.Errorf("backend was told\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// A provider session is no AT Protocol session: its id in the AT
// Protocol cookie neither passes as an AT Protocol account (on a host
// whose require_atproto {} admits any) nor makes the backend think one
// signed in.
func TestProviderSessionIsNoATProtoSession(t *testing.T) {
	e := newPMEnv(t, `
host "atany.localhost" {
  backend = "BACKEND"
  require_atproto {}
  GOOGLE
  tls { mode = "off" }
}
host "open.localhost" {
  backend = "BACKEND"
  GOOGLE
  tls { mode = "off" }
}`, nil)
	for _, tt := range []struct {
		host   string
		status int
	}{
		{"atany.localhost", http.StatusUnauthorized},
		{"open.localhost", http.StatusOK},
	} {
		t.Run(tt.host, func(t *testing.T) {
			g := e.signIn(t, browserJar{}, tt.host, provider.Identity{Subject: "m1", Email: "mallory@evil.example", EmailVerified: true})
			rec, s := e.serve(t, pmJar(CookieName, g.ID), http.MethodGet, "http://"+tt.host+"/report", "", jsonClient)
			if rec.Code != tt.status {
				t.Fatalf("a provider session in the AT Protocol cookie: %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if s == nil {
				return
			}
			for _, name := range []string{contract.UserDID, contract.UserHandle, contract.UserScope, contract.ProxySession} {
				if v, ok := s.Headers[name]; ok {
					t.Errorf("the backend got %s %q for a provider session passed as an AT Protocol one", name, v)
				}
			}
		})
	}
}

// The identity headers, in any spelling a backend might fold to theirs
// (any case, "_" for "-"), never come from a client: a signed-out request
// reaches the backend with none of them, a signed-in one with ioproxy's
// values alone, and one that lists them in Connection still gets them.
func TestProviderIdentityHeadersStrippedInEverySpelling(t *testing.T) {
	e := newPMEnv(t, `
host "open.localhost" {
  backend = "BACKEND"
  atproto {}
  GOOGLE
  tls { mode = "off" }
}
host "mixed.localhost" {
  backend = "BACKEND"
  require_atproto {
    handles      = ["bob.example.com"]
    public_paths = ["/healthz"]
  }
  GOOGLE
  require_oauth "google" { emails = ["alice@example.com"] }
  tls { mode = "off" }
}`, nil)
	google := e.signIn(t, browserJar{}, "open.localhost", provider.Identity{Subject: "a1", Email: "alice@example.com", EmailVerified: true})
	at := newGateSession(t, e.store, "open.localhost", gateBob, "bob.example.com")
	denied := newGateSession(t, e.store, "mixed.localhost", gateCarol, "carol.example.net")
	forged := map[string]string{
		"User_Email":     "boss@example.com",
		"user-subject":   "google:0",
		"PROXY_PROVIDER": "admin",
		"User-Email":     "boss2@example.com",
		"USER_SUBJECT":   "google:00",
		"proxy-provider": "root",
		"Proxy_Session":  "forged-session-key",
		"user_did":       "did:plc:forgedforgedforgedforged",
		"User-Handle":    "forged.example.com",
		"APIKEY-USER":    "ci",
	}
	type cookies struct{ at, google string }
	for _, tt := range []struct {
		name       string
		host, path string
		c          cookies
		connection bool
		want       pmIdentity
	}{
		{"signed out", "open.localhost", "/", cookies{}, false, pmIdentity{}},
		{"signed out, listed in Connection", "open.localhost", "/", cookies{}, true, pmIdentity{}},
		{"signed in with google", "open.localhost", "/", cookies{google: google.ID}, false,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: google.ProxyKey}},
		{"signed in with google, listed in Connection", "open.localhost", "/", cookies{google: google.ID}, true,
			pmIdentity{provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: google.ProxyKey}},
		{"signed in with both", "open.localhost", "/", cookies{at.ID, google.ID}, false,
			pmIdentity{did: gateBob, handle: "bob.example.com", provider: "google", email: "alice@example.com", subject: "google:a1", proxySession: at.ProxyKey + "," + google.ProxyKey}},
		{"public path, signed out", "mixed.localhost", "/healthz", cookies{}, false, pmIdentity{}},
		{"public path, denied account", "mixed.localhost", "/healthz", cookies{at: denied.ID}, true, pmIdentity{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := pmJar(CookieName, tt.c.at, "ioproxy-oauth-google", tt.c.google).request(http.MethodGet, "http://"+tt.host+tt.path, nil)
			var names []string
			for k, v := range forged {
				req.Header[k] = []string{v}
				names = append(names, k)
			}
			if tt.connection {
				req.Header["Connection"] = []string{strings.Join(names, ", ")}
			}
			rec := httptest.NewRecorder()
			e.rt.ServeHTTP(rec, req)
			var s seen
			if rec.Code != 200 || rec.Header().Get("X-Backend") == "" || decodeSeen(rec, &s) != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			for k, vs := range s.Headers {
				for _, v := range vs {
					for _, f := range forged {
						if v == f {
							t.Errorf("the backend got the client's %s: %q", k, v)
						}
					}
				}
				if canonical := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-")); contract.IsIdentity(k) && k != canonical {
					t.Errorf("the backend got %s, another spelling of %s", k, canonical)
				}
			}
			if got := pmIdentityOf(s.Headers); got != tt.want {
				t.Errorf("backend was told\n%+v\nwant\n%+v", got, tt.want)
			}
			if s.Headers.Get(contract.APIKeyUser) != "" {
				t.Errorf("the backend got Apikey-User %q", s.Headers.Get(contract.APIKeyUser))
			}
		})
	}
}
