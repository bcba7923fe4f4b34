package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ioproxy/ioproxy/provider"
	"github.com/ioproxy/ioproxy/sessions"
)

// fakeProviderClient is a provider's client that vouches for whom the
// test says, for the codes it issued.
type fakeProviderClient struct {
	mu    sync.Mutex
	codes map[string]provider.Identity // code → who signed in
	asked []provider.AuthRequest
	nonce map[string]string // code → the nonce its ID token carries
	// fail, when set, is every exchange's error.
	fail error
}

func newFakeProviderClient() *fakeProviderClient {
	return &fakeProviderClient{codes: map[string]provider.Identity{}, nonce: map[string]string{}}
}

func (f *fakeProviderClient) OpenID() bool { return true }

func (f *fakeProviderClient) AuthCodeURL(ctx context.Context, a provider.AuthRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, a)
	return "https://accounts.example.net/auth?state=" + url.QueryEscape(a.State), nil
}

// issue makes the provider answer the last sign-in with a code for who.
func (f *fakeProviderClient) issue(who provider.Identity) (state, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.asked[len(f.asked)-1]
	code = sessions.NewToken()
	f.codes[code] = who
	f.nonce[code] = a.Nonce
	return a.State, code
}

func (f *fakeProviderClient) Exchange(ctx context.Context, code, verifier, nonce string) (*provider.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	who, ok := f.codes[code]
	if !ok {
		return nil, fmt.Errorf("google: %w", provider.ErrInvalidGrant)
	}
	delete(f.codes, code)
	if f.nonce[code] != nonce || nonce == "" || verifier == "" {
		return nil, fmt.Errorf("google: the ID token's nonce is not the sign-in's")
	}
	return &provider.Grant{AccessToken: "at-" + code[:8], RefreshToken: "rt", TokenType: "Bearer", Identity: who}, nil
}

func providerHostConfig(backend string) string {
	return fmt.Sprintf(`
host "tools.localhost" {
  backend = %q
  oauth "google" {
    client_id     = "client"
    client_secret = env("SECRET")
    issuer        = "https://accounts.example.net"
  }
  require_oauth "google" { domains = ["example.com"] }
  tls { mode = "off" }
}
host "open.localhost" {
  backend = %q
  oauth "google" {
    client_id     = "client"
    client_secret = env("SECRET")
    issuer        = "https://accounts.example.net"
  }
  tls { mode = "off" }
}
`, backend, backend)
}

// browserJar is the cookies of one browser, as the router set them.
type browserJar map[string]string

func (j browserJar) request(method, target string, hdr http.Header) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	for name, value := range j {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	return req
}

func (j browserJar) keep(rec *httptest.ResponseRecorder) {
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(j, c.Name)
		} else {
			j[c.Name] = c.Value
		}
	}
}

// signInWith runs a browser through /@google/signin and back with a code
// for who, and returns the callback's answer.
func signInWith(t *testing.T, rt *Router, f *fakeProviderClient, jar browserJar, host string, who provider.Identity) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://"+host+"/@google/signin?redirect=%2Freport", nil))
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "https://accounts.example.net/auth?") {
		t.Fatalf("sign-in start: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	jar.keep(rec)
	state, code := f.issue(who)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://"+host+"/@google/callback?state="+url.QueryEscape(state)+"&code="+url.QueryEscape(code), nil))
	jar.keep(rec)
	return rec
}

func providerRouter(t *testing.T) (*Router, *fakeProviderClient, sessions.Store) {
	t.Helper()
	backend := echoBackend(t, "tool")
	cfg := mustConfig(t, providerHostConfig(backend.URL))
	store := openStore(t)
	f := newFakeProviderClient()
	life := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store})
	rt, err := New(Config{Config: cfg, Sessions: life, Providers: map[string]map[string]ProviderClient{
		"tools.localhost": {"google": f}, "open.localhost": {"google": f},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rt, f, store
}

// A browser signs in with the provider and the backend learns who it is,
// through headers no client can set, and never sees the session cookie.
func TestProviderSignIn(t *testing.T) {
	rt, f, _ := providerRouter(t)
	jar := browserJar{}
	rec := signInWith(t, rt, f, jar, "tools.localhost", provider.Identity{Subject: "123", Email: "alice@example.com", EmailVerified: true})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/report" {
		t.Fatalf("callback: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if jar["ioproxy-oauth-google"] == "" {
		t.Fatalf("no provider session cookie: %v", jar)
	}
	forged := http.Header{"User-Email": {"boss@example.com"}, "Proxy_Provider": {"x"}, "User-Subject": {"google:1"}, "Cookie": {"app=1"}}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/report", forged))
	var s seen
	if err := decodeSeen(rec, &s); err != nil || rec.Code != 200 {
		t.Fatalf("signed in: %d %s", rec.Code, rec.Body)
	}
	h := s.Headers
	if h.Get("Proxy-Provider") != "google" || h.Get("User-Email") != "alice@example.com" || h.Get("User-Subject") != "google:123" || len(h["Proxy_provider"]) != 0 {
		t.Fatalf("backend saw %v", h)
	}
	if !sessions.WellFormedToken(h.Get("Proxy-Session")) || strings.Contains(h.Get("Cookie"), "ioproxy-oauth") || !strings.Contains(h.Get("Cookie"), "app=1") {
		t.Fatalf("backend saw Proxy-Session %q, Cookie %q", h.Get("Proxy-Session"), h.Get("Cookie"))
	}
}

// decodeSeen reads what echoBackend saw.
func decodeSeen(rec *httptest.ResponseRecorder, s *seen) error {
	return json.Unmarshal(rec.Body.Bytes(), s)
}

// The host's require_oauth refuses accounts it does not name, and an
// address the provider has not verified; they get no session.
func TestProviderSignInRefusals(t *testing.T) {
	rt, f, store := providerRouter(t)
	for _, tc := range []struct {
		name string
		who  provider.Identity
	}{
		{"another domain", provider.Identity{Subject: "1", Email: "mallory@evil.example", EmailVerified: true}},
		{"unverified email", provider.Identity{Subject: "2", Email: "alice@example.com"}},
		{"a subdomain", provider.Identity{Subject: "3", Email: "alice@corp.example.com", EmailVerified: true}},
	} {
		jar := browserJar{}
		rec := signInWith(t, rt, f, jar, "tools.localhost", tc.who)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "may not use this site") {
			t.Errorf("%s: callback %d %s", tc.name, rec.Code, rec.Body)
		}
		if jar["ioproxy-oauth-google"] != "" {
			t.Errorf("%s: got a session cookie", tc.name)
		}
	}
	if n, _ := store.Count(t.Context()); n != 0 {
		t.Fatalf("%d sessions stored for refused accounts", n)
	}
	// Not signed in: a browser is sent to the provider's sign-in.
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, browserJar{}.request(http.MethodGet, "http://tools.localhost/report", http.Header{"Accept": {"text/html"}}))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/@google/signin?redirect=%2Freport" {
		t.Fatalf("signed out: %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

// A callback from another browser, a replayed code, a state of another
// provider's or host's sign-in, and the provider's refusal each get a
// readable page and no session.
func TestProviderCallbackAttacks(t *testing.T) {
	rt, f, store := providerRouter(t)
	alice := provider.Identity{Subject: "123", Email: "alice@example.com", EmailVerified: true}

	// The attacker starts a sign-in, and sends the victim the callback.
	attacker := browserJar{}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, attacker.request(http.MethodGet, "http://tools.localhost/@google/signin", nil))
	attacker.keep(rec)
	state, code := f.issue(alice)
	victim := browserJar{}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, victim.request(http.MethodGet, "http://tools.localhost/@google/callback?state="+state+"&code="+code, nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "did not start in this browser") {
		t.Fatalf("login CSRF: %d %s", rec.Code, rec.Body)
	}

	// A code used twice.
	jar := browserJar{}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/@google/signin", nil))
	jar.keep(rec)
	state, code = f.issue(alice)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/@google/callback?state="+state+"&code="+code, nil))
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/@google/signin", nil))
	jar.keep(rec)
	state, _ = f.issue(alice)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/@google/callback?state="+state+"&code="+code, nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "used already") {
		t.Fatalf("replayed code: %d %s", rec.Code, rec.Body)
	}

	// A sign-in started on one host finished on another.
	other := browserJar{}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, other.request(http.MethodGet, "http://open.localhost/@google/signin", nil))
	other.keep(rec)
	state, code = f.issue(alice)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, other.request(http.MethodGet, "http://tools.localhost/@google/callback?state="+state+"&code="+code, nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("another host's sign-in: %d %s", rec.Code, rec.Body)
	}

	// The provider says no.
	denied := browserJar{}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, denied.request(http.MethodGet, "http://tools.localhost/@google/signin", nil))
	denied.keep(rec)
	state, _ = f.issue(alice)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, denied.request(http.MethodGet, "http://tools.localhost/@google/callback?state="+state+"&error=access_denied", nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "cancelled") {
		t.Fatalf("access_denied: %d %s", rec.Code, rec.Body)
	}
	if n, _ := store.Count(t.Context()); n != 1 {
		t.Fatalf("%d sessions, want the one good sign-in's", n)
	}
}

// A backend cannot set ioproxy's cookies, a provider's included.
func TestBackendCannotSetProviderCookie(t *testing.T) {
	h := http.Header{"Set-Cookie": {"ioproxy-oauth-google=stolen; Path=/", "__Host-ioproxy-oauth-github=x", "app=1"}}
	dropOwnCookies(h)
	if len(h["Set-Cookie"]) != 1 || h.Get("Set-Cookie") != "app=1" {
		t.Fatalf("after dropOwnCookies: %q", h["Set-Cookie"])
	}
}

// Signing out of the provider needs the page's token or this site's own
// page, and ends only that provider's session.
func TestProviderSignOut(t *testing.T) {
	rt, f, store := providerRouter(t)
	jar := browserJar{}
	signInWith(t, rt, f, jar, "open.localhost", provider.Identity{Subject: "9", Email: "bob@else.example", EmailVerified: true})
	if n, _ := store.Count(t.Context()); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodPost, "http://open.localhost/@google/signout", http.Header{"Origin": {"https://evil.example"}}))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://open.localhost/@google/signout", nil))
	if !strings.Contains(rec.Body.String(), "bob@else.example") || !strings.Contains(rec.Body.String(), `action="/@google/signout"`) {
		t.Fatalf("sign-out page: %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodPost, "http://open.localhost/@google/signout", http.Header{"Origin": {"http://open.localhost"}}))
	jar.keep(rec)
	if rec.Code != http.StatusSeeOther || jar["ioproxy-oauth-google"] != "" {
		t.Fatalf("sign-out: %d, cookie %q", rec.Code, jar["ioproxy-oauth-google"])
	}
	if n, _ := store.Count(t.Context()); n != 0 {
		t.Fatalf("%d sessions after sign-out", n)
	}
}

// Found in review: an <img> or a fetch on another site does not start a
// sign-in (each start writes a sign-in in progress); a session of the
// provider's name from before the operator pointed it at another issuer
// or client is not honoured; the state cookie never reaches the backend;
// and the identity the backend is told of is one account, the one a
// rule admitted.
func TestProviderReviewFindings(t *testing.T) {
	rt, f, store := providerRouter(t)
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, browserJar{}.request(http.MethodGet, "http://tools.localhost/@google/signin", http.Header{"Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}}))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a sign-in started by an image: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, browserJar{}.request(http.MethodGet, "http://tools.localhost/@google/signin", http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"iframe"}}))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a sign-in started by an iframe: %d", rec.Code)
	}
	if n, _ := store.Count(t.Context()); n != 0 {
		t.Fatalf("%d sessions", n)
	}

	jar := browserJar{}
	signInWith(t, rt, f, jar, "tools.localhost", provider.Identity{Subject: "123", Email: "alice@example.com", EmailVerified: true})
	id := jar["ioproxy-oauth-google"]
	if _, err := store.Update(t.Context(), id, func(s *sessions.Session) error { s.Issuer = "https://old-idp.example"; return nil }); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/report", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("a session of another issuer under the provider's name: %d", rec.Code)
	}
	if _, err := store.Update(t.Context(), id, func(s *sessions.Session) error { s.Issuer = "https://accounts.example.net"; return nil }); err != nil {
		t.Fatal(err)
	}

	jar["ioproxy-signin-google"] = "binding"
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://tools.localhost/report", nil))
	var s seen
	if err := decodeSeen(rec, &s); err != nil || rec.Code != 200 {
		t.Fatalf("signed in: %d %s", rec.Code, rec.Body)
	}
	if c := s.Headers.Get("Cookie"); strings.Contains(c, "ioproxy") {
		t.Fatalf("the backend got ioproxy's cookies: %q", c)
	}
}

// With a provider the host has no rules for beside one it has rules
// for, the backend is told of the admitted account, its subject and its
// email together.
func TestProviderHeadersOfOneAccount(t *testing.T) {
	a := &sessions.Session{Provider: "github", Subject: "777"}
	b := &sessions.Session{Provider: "google", Subject: "42", Email: "alice@example.com"}
	names, email, subject := providerHeaders([]*sessions.Session{b, a})
	if names != "google, github" || email != "alice@example.com" || subject != "google:42" {
		t.Fatalf("providerHeaders = %q %q %q", names, email, subject)
	}
	names, email, subject = providerHeaders([]*sessions.Session{a, b})
	if names != "github, google" || email != "" || subject != "github:777" {
		t.Fatalf("providerHeaders = %q %q %q: the email must be the first account's", names, email, subject)
	}
}

// Signing in again with the provider ends the browser's session it
// replaces (of the same account, without revoking: that would end the
// new grant too at Google).
func TestProviderSignInAgainEndsTheOldSession(t *testing.T) {
	rt, f, store := providerRouter(t)
	jar := browserJar{}
	alice := provider.Identity{Subject: "123", Email: "alice@example.com", EmailVerified: true}
	signInWith(t, rt, f, jar, "tools.localhost", alice)
	first := jar["ioproxy-oauth-google"]
	signInWith(t, rt, f, jar, "tools.localhost", alice)
	if jar["ioproxy-oauth-google"] == first {
		t.Fatal("the second sign-in kept the first session's cookie")
	}
	rt.store.Wait() // the replaced session is forgotten in the background
	if _, err := store.Get(t.Context(), first); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("the replaced session: %v, want it ended", err)
	}
	if n, _ := store.Count(t.Context()); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

// An ID token that does not verify (a bad signature, another audience:
// the provider package's checks) gets a readable page, and no session.
func TestProviderBadIDToken(t *testing.T) {
	rt, f, store := providerRouter(t)
	for _, why := range []error{
		fmt.Errorf("google: exchange: %w: signature does not verify with the issuer's keys", provider.ErrIDToken),
		fmt.Errorf("google: exchange: %w: aud does not contain the client id", provider.ErrIDToken),
	} {
		f.fail = why
		jar := browserJar{}
		rec := signInWith(t, rt, f, jar, "tools.localhost", provider.Identity{Subject: "1", Email: "alice@example.com", EmailVerified: true})
		if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "answer could not be verified") || strings.Contains(rec.Body.String(), "signature") {
			t.Errorf("%v: %d %s", why, rec.Code, rec.Body)
		}
	}
	if n, _ := store.Count(t.Context()); n != 0 {
		t.Fatalf("%d sessions", n)
	}
}

// Calls ask the routes whether a provider session may still be used:
// its host, its provider with the same issuer and client, and the
// provider's require_oauth as it stands.
func TestProviderSessionAdmitted(t *testing.T) {
	rt, _, _ := providerRouter(t)
	routes := rt.Routes()
	ok := sessions.Session{Host: "tools.localhost", Provider: "google", Issuer: "https://accounts.example.net", ClientID: "client", Subject: "1", Email: "alice@example.com"}
	for _, tc := range []struct {
		name string
		edit func(*sessions.Session)
		want bool
	}{
		{"admitted", func(*sessions.Session) {}, true},
		{"another domain", func(s *sessions.Session) { s.Email = "mallory@evil.example" }, false},
		{"no verified email", func(s *sessions.Session) { s.Email = "" }, false},
		{"another issuer", func(s *sessions.Session) { s.Issuer = "https://old-idp.example" }, false},
		{"another client", func(s *sessions.Session) { s.ClientID = "old" }, false},
		{"a provider the host lacks", func(s *sessions.Session) { s.Provider = "github" }, false},
		{"a host that is gone", func(s *sessions.Session) { s.Host = "gone.localhost" }, false},
		{"an AT Protocol session", func(s *sessions.Session) { s.Provider = "" }, false},
		{"a host without rules for it", func(s *sessions.Session) { s.Host, s.Email = "open.localhost", "" }, true},
	} {
		s := ok
		tc.edit(&s)
		if got := routes.ProviderSessionAdmitted(s); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
