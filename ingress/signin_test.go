package ingress

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// signinEnv is an ingress Router with sign-in wired to a fake AT Protocol
// server, as server wires it.
type signinEnv struct {
	srv     *atprototest.Server
	alice   atprototest.Account
	store   *boltstore.Store
	router  *Router
	backend *httptest.Server
	host    string
	base    string // the host's public origin
	key     *oauth.ClientKey
	ckeys   *oauth.ClientKeys // holds key; nil for the localhost client
	clock   *testClock
	logs    *syncBuffer
	// events are the sign-in stages reported for metrics.
	events *syncBuffer
}

// handlerTransport lets the fake server fetch the client metadata
// document from the router in-process, as if over the network.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.Host = r.URL.Host
	in.RemoteAddr = "192.0.2.10:4444"
	if r.URL.Scheme == "https" {
		in.TLS = &tls.ConnectionState{}
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	return rec.Result(), nil
}

type envConfig struct {
	local     bool   // the localhost client on host "localhost", plain HTTP
	hostExtra string // HCL added to the host block, e.g. a require_atproto block
	// store sets the session store's limits (Now is the env's clock).
	store sessions.Options
}

func newSigninEnv(t *testing.T, ec envConfig) *signinEnv {
	t.Helper()
	e := &signinEnv{clock: &testClock{now: time.Now()}, logs: &syncBuffer{}, events: &syncBuffer{}}
	var rt http.Handler // set below; the fake fetches client metadata through it
	e.srv = atprototest.New(t, atprototest.Options{ClientHTTP: &http.Client{Transport: handlerTransport{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.ServeHTTP(w, r) })}}})
	e.alice = e.srv.AddAccount(atprototest.Account{Handle: "alice.test"})
	e.backend = echoBackend(t, "app")
	ec.store.Now = e.clock.Now
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db"), Options: ec.store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e.store = store

	atp := `name = "Test App"
    scopes = ["atproto", "transition:generic"]`
	if ec.local {
		e.host, e.base = "localhost", "http://localhost"
		atp += "\n    local = 9000"
	} else {
		e.host, e.base = "app.example.com", "https://app.example.com"
	}
	extra := ""
	if ec.local {
		extra = `call "browser" {
  port     = 9000
  endpoint = "localhost"
}`
	}
	cfg := mustConfig(t, fmt.Sprintf(`
host %q {
  backend = %q
  atproto {
    %s
  }
  %s
}
%s`, e.host, e.backend.URL, atp, ec.hostExtra, extra))

	httpc := safehttp.NewClient(safehttp.Options{AllowInsecure: true})
	resolver := identity.New(identity.Config{PLCURL: e.srv.URL, HandleResolver: e.srv.URL, HTTPClient: httpc, AllowInsecure: true})
	nonces := &dpop.Nonces{}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := cfg.Hosts[0]
	var c *oauth.Client

	if h.ATProto.Local != 0 {
		redirect := fmt.Sprintf("http://127.0.0.1:%d/@/callback", h.ATProto.Local)
		c, err = oauth.New(oauth.Config{
			ClientID: oauth.LocalhostClientID(redirect, h.ATProto.Scope()), RedirectURI: redirect, Scope: h.ATProto.Scope(),
			HTTP: httpc, Identity: resolver, Nonces: nonces, AllowInsecure: true, Now: e.clock.Now,
		})
	} else {
		raw, _ := oauth.GenerateClientKey()
		if e.key, err = oauth.ParseClientKey(raw); err != nil {
			t.Fatal(err)
		}
		e.ckeys = oauth.NewClientKeys(oauth.NewKeyRing(e.key))
		c, err = oauth.New(oauth.Config{
			ClientID: e.base + "/@/client-metadata.json", RedirectURI: e.base + "/@/callback", Scope: h.ATProto.Scope(), Keys: e.ckeys,
			HTTP: httpc, Identity: resolver, Nonces: nonces, AllowInsecure: true, Now: e.clock.Now,
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	life := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Clients: map[string]*oauth.Client{c.ClientID(): c}, Nonces: nonces, Logger: logger, Now: e.clock.Now})
	t.Cleanup(life.Wait)
	signIn := NewSignIn(SignInConfig{Host: h, Client: c, ClientKeys: e.ckeys, BaseURL: e.base, Sessions: life, Recorder: stageLog{w: e.events}, Logger: logger, Now: e.clock.Now})
	router, err := New(Config{Config: cfg, Sessions: life, Logger: logger, SignIns: map[string]http.Handler{h.Hostname: signIn}})
	if err != nil {
		t.Fatal(err)
	}
	e.router = router
	rt = router
	return e
}

// stageLog records the sign-in stages reported, one a line.
type stageLog struct {
	observe.Discard
	w *syncBuffer
}

func (l stageLog) SignIn(stage string) { _, _ = l.w.Write([]byte(stage + "\n")) }

// browser is a cookie-keeping client of the router.
type browser struct {
	t    *testing.T
	e    *signinEnv
	jar  *cookiejar.Jar
	last []*http.Cookie // Set-Cookie of the last response
	// remote is the browser's address ("host:port"); httptest's default
	// when empty.
	remote string
}

func (e *signinEnv) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, e: e, jar: jar}
}

func (b *browser) do(method, target string, form url.Values, hdr http.Header) (*http.Response, string) {
	b.t.Helper()
	u := target
	if strings.HasPrefix(target, "/") {
		u = b.e.base + target
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, u, body)
	if b.remote != "" {
		req.RemoteAddr = b.remote
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	b.e.router.ServeHTTP(rec, req)
	resp := rec.Result()
	b.last = resp.Cookies()
	b.jar.SetCookies(req.URL, resp.Cookies())
	return resp, rec.Body.String()
}

// stateCookie returns the state cookie set by the last response, under
// either name.
func (b *browser) stateCookie() *http.Cookie {
	if c := b.cookie(secureStateCookieName); c != nil {
		return c
	}
	return b.cookie(stateCookieName)
}

func (b *browser) cookie(name string) *http.Cookie {
	for _, c := range b.last {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// start posts the sign-in form and returns the authorization URL.
func (b *browser) start(handle, redirect string) string {
	b.t.Helper()
	resp, body := b.do("POST", "/@/signin", url.Values{"handle": {handle}, "redirect": {redirect}}, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, b.e.srv.URL+"/oauth/authorize?") {
		b.t.Fatalf("POST /@/signin: %d Location %q\n%s", resp.StatusCode, loc, body)
	}
	return loc
}

// callbackPath turns the fake's callback URL into a request on this host.
func (b *browser) callbackPath(cb string) string {
	b.t.Helper()
	u, err := url.Parse(cb)
	if err != nil || u.Path != "/@/callback" {
		b.t.Fatalf("callback URL %q", cb)
	}
	return u.RequestURI()
}

// signIn runs the whole flow and returns the callback response.
func (b *browser) signIn(redirect string) (*http.Response, string) {
	b.t.Helper()
	loc := b.start("alice.test", redirect)
	cb, err := b.e.srv.ApproveURL(loc, b.e.alice.DID)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do("GET", b.callbackPath(cb), nil, nil)
}

func TestSignInForm(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	resp, body := b.do("GET", "/@/signin?redirect=//evil.example.com&handle=alice.test", nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /@/signin: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`action="/@/signin"`, `name="handle"`, `value="alice.test"`, `name="redirect" value="/"`, "Test App"} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in form lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "evil.example.com") {
		t.Error("the form carries the unsafe redirect")
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("sign-in page without %s", h)
		}
	}
}

func TestSignInStartErrors(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	resp, body := b.do("POST", "/@/signin", url.Values{"handle": {""}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Enter your handle") {
		t.Errorf("empty handle: %d\n%s", resp.StatusCode, body)
	}
	resp, body = b.do("POST", "/@/signin", url.Values{"handle": {"nobody.test"}}, nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "does not resolve") || b.stateCookie() != nil {
		t.Errorf("unknown handle: %d, state cookie %v\n%s", resp.StatusCode, b.stateCookie(), body)
	}
	if c := e.srv.Counts(); c.PAR != 0 {
		t.Errorf("%d pushed requests for failed starts", c.PAR)
	}
}

func checkCookie(t *testing.T, c *http.Cookie, name string, secure bool, path string) {
	t.Helper()
	if c == nil {
		t.Fatalf("no %s cookie set", name)
	}
	if c.Name != name || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.Domain != "" || c.Path != path {
		t.Errorf("cookie %s: HttpOnly=%t SameSite=%v Secure=%t Domain=%q Path=%q; want HttpOnly, Lax, Secure=%t, no Domain, Path %s",
			c.Name, c.HttpOnly, c.SameSite, c.Secure, c.Domain, c.Path, secure, path)
	}
}

func TestSignInConfidentialClientOverTLS(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	loc := b.start("alice.test", "/after?x=1")
	checkCookie(t, b.cookie(secureStateCookieName), secureStateCookieName, true, "/")
	cb, err := e.srv.ApproveURL(loc, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb, "https://app.example.com/@/callback?") {
		t.Fatalf("callback %s", cb)
	}
	resp, body := b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/after?x=1" {
		t.Fatalf("callback: %d Location %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	sc := b.cookie(SecureCookieName)
	checkCookie(t, sc, SecureCookieName, true, "/")
	if sc == nil || len(sc.Value) < 43 {
		t.Fatal("session id is not 256 random bits")
	}
	if st := b.stateCookie(); st == nil || st.MaxAge >= 0 {
		t.Error("the state cookie is not cleared at the callback")
	}
	sess, ok := getSession(e.store, sc.Value)
	if !ok || sess.DID != e.alice.DID || sess.Handle != "alice.test" || sess.PDS != e.srv.URL || sess.Issuer != e.srv.Issuer() ||
		sess.ClientID != "https://app.example.com/@/client-metadata.json" || sess.ProxyKey == "" || sess.ProxyKey == sess.ID {
		t.Fatalf("stored session %+v", sess)
	}
	// The fake fetched /@/client-metadata.json and /@/jwks.json from the
	// router and verified the assertions against them.
	as := e.srv.Assertions()
	if len(as) < 2 || as[0].KeyID != e.key.KeyID() {
		t.Errorf("assertions %+v, want ones signed with kid %s", as, e.key.KeyID())
	}

	// The backend now sees who is signed in, and never the cookie.
	resp, body = b.do("GET", "/whoami", nil, http.Header{"User-Did": {"did:plc:forged"}})
	var s seen
	_ = json.Unmarshal([]byte(body), &s)
	if s.Headers.Get(contract.UserDID) != e.alice.DID || s.Headers.Get(contract.UserHandle) != "alice.test" || s.Headers.Get(contract.ProxySession) != sess.ProxyKey {
		t.Errorf("backend saw %v", s.Headers)
	}
	if len(s.Headers.Values(contract.UserDID)) != 1 || strings.Contains(s.Headers.Get("Cookie"), sc.Value) {
		t.Errorf("backend saw a forged identity or the session cookie: %v", s.Headers)
	}
	_ = resp
}

func TestSignInLocalhostClient(t *testing.T) {
	e := newSigninEnv(t, envConfig{local: true})
	b := e.browser(t)
	loc := b.start("alice.test", "")
	checkCookie(t, b.cookie(stateCookieName), stateCookieName, false, "/")
	cb, err := e.srv.ApproveURL(loc, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb, "http://127.0.0.1:9000/@/callback?") {
		t.Fatalf("callback %s", cb)
	}
	resp, body := b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("callback: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	checkCookie(t, b.cookie(CookieName), CookieName, false, "/")
	_, body = b.do("GET", "/", nil, nil)
	var s seen
	_ = json.Unmarshal([]byte(body), &s)
	if s.Headers.Get(contract.UserDID) != e.alice.DID {
		t.Errorf("backend saw %v", s.Headers)
	}
	// The localhost client has no metadata document and no keys.
	if resp, _ := b.do("GET", "/@/client-metadata.json", nil, nil); resp.StatusCode != 404 {
		t.Errorf("client-metadata.json of the localhost client: %d", resp.StatusCode)
	}
	resp, body = b.do("GET", "/@/jwks.json", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"keys":[]}` {
		t.Errorf("jwks.json of the localhost client: %d %s", resp.StatusCode, body)
	}
}

func TestSignInGivesANewSessionEachTime(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	b.signIn("/")
	first := b.cookie(SecureCookieName).Value
	// Starting a new sign-in clears the old session cookie (fixation).
	b.start("alice.test", "/")
	if c := b.cookie(SecureCookieName); c == nil || c.MaxAge >= 0 {
		t.Error("starting a sign-in does not clear the session cookie")
	}
	b.signIn("/")
	second := b.cookie(SecureCookieName).Value
	if first == second {
		t.Error("a second sign-in reused the session id")
	}
	// The old session is gone from the store, not only from the browser.
	if _, ok := getSession(e.store, first); ok {
		t.Error("the first session outlived the second sign-in")
	}
	if _, ok := getSession(e.store, second); !ok || countSessions(e.store) != 1 {
		t.Errorf("sessions after two sign-ins: %d", countSessions(e.store))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.srv.Revoked()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(e.srv.Revoked()) == 0 {
		t.Error("the first session's tokens were not revoked")
	}
}

func TestCallbackReplayedStateFails(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	loc := b.start("alice.test", "/")
	cb, _ := e.srv.ApproveURL(loc, e.alice.DID)
	if resp, _ := b.do("GET", b.callbackPath(cb), nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	tokens := e.srv.Counts().Token
	b2 := e.browser(t)
	for _, br := range []*browser{b, b2} {
		resp, body := br.do("GET", br.callbackPath(cb), nil, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
			t.Errorf("replayed callback: %d\n%s", resp.StatusCode, body)
		}
	}
	if e.srv.Counts().Token != tokens || countSessions(e.store) != 1 {
		t.Error("a replayed callback reached the token endpoint or made a session")
	}
}

func TestCallbackInAnotherBrowserFails(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	attacker := e.browser(t)
	loc := attacker.start("alice.test", "/")
	cb, _ := e.srv.ApproveURL(loc, e.alice.DID)
	victim := e.browser(t)
	resp, body := victim.do("GET", victim.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "another browser") {
		t.Errorf("callback without the state cookie: %d\n%s", resp.StatusCode, body)
	}
	if victim.cookie(SecureCookieName) != nil && victim.cookie(SecureCookieName).Value != "" {
		t.Error("a session cookie was set in the other browser")
	}
	if e.srv.Counts().Token != 0 || countSessions(e.store) != 0 {
		t.Error("a callback from another browser was exchanged")
	}
	// A state cookie of another sign-in does not help either.
	b := e.browser(t)
	b.start("alice.test", "/")
	resp, _ = b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusBadRequest || countSessions(e.store) != 0 {
		t.Errorf("callback with another sign-in's state cookie: %d", resp.StatusCode)
	}
}

func TestCallbackExpiredStateFails(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	loc := b.start("alice.test", "/")
	cb, _ := e.srv.ApproveURL(loc, e.alice.DID)
	e.clock.Add(11 * time.Minute)
	resp, body := b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Errorf("expired state: %d\n%s", resp.StatusCode, body)
	}
	if e.srv.Counts().Token != 0 || countSessions(e.store) != 0 {
		t.Error("an expired sign-in was exchanged")
	}
}

func TestCallbackChecks(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(e *signinEnv)
		approve func(e *signinEnv, loc string) (string, error)
		status  int
		message string
	}{
		{name: "wrong iss", setup: func(e *signinEnv) { e.srv.SetCallbackIss(func(string) string { return "https://evil.example.com" }) },
			status: http.StatusBadGateway, message: "unexpected server"},
		{name: "missing iss", setup: func(e *signinEnv) { e.srv.SetCallbackIss(func(string) string { return "" }) },
			status: http.StatusBadGateway, message: "unexpected server"},
		{name: "denied", approve: func(e *signinEnv, loc string) (string, error) { return e.srv.Deny(loc) },
			status: http.StatusForbidden, message: "You declined"},
		{name: "scope without atproto", setup: func(e *signinEnv) {
			e.srv.SetTokenHook(func(r *atprototest.TokenResponse) { r.Scope = "transition:generic" })
		}, status: http.StatusBadGateway, message: "could not be trusted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newSigninEnv(t, envConfig{})
			if tt.setup != nil {
				tt.setup(e)
			}
			b := e.browser(t)
			loc := b.start("alice.test", "/")
			approve := tt.approve
			if approve == nil {
				approve = func(e *signinEnv, loc string) (string, error) { return e.srv.ApproveURL(loc, e.alice.DID) }
			}
			cb, err := approve(e, loc)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := b.do("GET", b.callbackPath(cb), nil, nil)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.message) {
				t.Errorf("callback: %d, want %d with %q\n%s", resp.StatusCode, tt.status, tt.message, body)
			}
			if countSessions(e.store) != 0 {
				t.Error("a session was created")
			}
		})
	}
}

// An account the rules do not name still signs in, and is then told, on
// every page, which account it used and how to sign out, so a person with
// several accounts can switch. Its sign-out revokes its tokens.
// TestSignInOfAccountNotAllowed: an account the host's rules refuse gets a
// 403 page naming it at the callback, and no session: it could do nothing
// with one, and anyone who runs a server can mint accounts to fill the
// store with. Its tokens are revoked at once.
func TestSignInOfAccountNotAllowed(t *testing.T) {
	e := newSigninEnv(t, envConfig{hostExtra: `require_atproto { dids = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"] }`})
	b := e.browser(t)
	resp, body := b.signIn("/report")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("callback: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	for _, want := range []string{"@alice.test", e.alice.DID, `id="signin-again"`, `href="/@/signin?redirect=%2Freport"`} {
		if !strings.Contains(body, want) {
			t.Errorf("403 page lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `action="/@/signout"`) {
		t.Error("the 403 page offers a sign-out, but there is no session")
	}
	if countSessions(e.store) != 0 || b.cookie(SecureCookieName) != nil {
		t.Fatalf("a refused account got a session: %d stored", countSessions(e.store))
	}
	deadline := time.Now().Add(5 * time.Second)
	for (e.srv.ActiveGrants() != 0 || len(e.srv.Revoked()) != 1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.srv.ActiveGrants() != 0 || len(e.srv.Revoked()) != 1 {
		t.Errorf("the refused account's tokens were not revoked: %d live grants", e.srv.ActiveGrants())
	}
	resp, _ = b.do("GET", "/report", nil, http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/@/signin?redirect=") {
		t.Errorf("after the refusal: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestErrorsNeverShowTokens(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	var mu sync.Mutex
	var secrets []string
	other := atprototest.New(t, atprototest.Options{})
	bob := other.AddAccount(atprototest.Account{Handle: "bob.test"})
	e.srv.AddAccount(atprototest.Account{DID: bob.DID, Handle: bob.Handle, PDS: other.URL})
	e.srv.SetTokenHook(func(r *atprototest.TokenResponse) {
		mu.Lock()
		secrets = append(secrets, r.AccessToken, r.RefreshToken)
		mu.Unlock()
		r.Sub = bob.DID
	})
	b := e.browser(t)
	loc := b.start(e.srv.URL, "/")
	cb, _ := e.srv.ApproveURL(loc, e.alice.DID)
	q, _ := url.Parse(cb)
	secrets = append(secrets, q.Query().Get("code"), q.Query().Get("state"))
	resp, body := b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusBadGateway || countSessions(e.store) != 0 {
		t.Fatalf("sub of another issuer: %d, %d sessions", resp.StatusCode, countSessions(e.store))
	}
	// The same failure as JSON, for an app's fetch.
	_, jsonBody := b.do("GET", b.callbackPath(cb), nil, http.Header{"Accept": {"application/json"}})
	mu.Lock()
	defer mu.Unlock()
	if len(secrets) != 4 {
		t.Fatalf("captured %d secrets", len(secrets))
	}
	for _, s := range secrets {
		for where, text := range map[string]string{"page": body, "JSON error": jsonBody, "logs": e.logs.String()} {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("the %s shows a secret (%.8s…)", where, s)
			}
		}
	}
}

func TestClientMetadataAndJWKS(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	resp, body := b.do("GET", "/@/client-metadata.json", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("client-metadata.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"client_id":                       "https://app.example.com/@/client-metadata.json",
		"client_name":                     "Test App",
		"client_uri":                      "https://app.example.com",
		"application_type":                "web",
		"redirect_uris":                   []any{"https://app.example.com/@/callback"},
		"scope":                           "atproto transition:generic",
		"token_endpoint_auth_method":      "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"jwks_uri":                        "https://app.example.com/@/jwks.json",
		"dpop_bound_access_tokens":        true,
		"grant_types":                     []any{"authorization_code", "refresh_token"},
		"response_types":                  []any{"code"},
	} {
		gb, _ := json.Marshal(m[k])
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s", k, gb, wb)
		}
	}
	if _, ok := m["jwks"]; ok {
		t.Error("both jwks and jwks_uri")
	}
	resp, body = b.do("GET", "/@/jwks.json", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("jwks.json: %d", resp.StatusCode)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks.json %s: %v", body, err)
	}
	k := set.Keys[0]
	if k["kid"] != e.key.KeyID() || k["kid"] == "" || k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" {
		t.Errorf("published key %v (client key id %s)", k, e.key.KeyID())
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := k[private]; ok {
			t.Errorf("jwks.json publishes private member %q", private)
		}
	}
	// The kid published is the kid of the assertions the server verifies.
	b.signIn("/")
	for _, a := range e.srv.Assertions() {
		if a.KeyID != k["kid"] {
			t.Errorf("assertion kid %s, published %v", a.KeyID, k["kid"])
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

func TestSignOut(t *testing.T) {
	signedIn := func(t *testing.T) (*signinEnv, *browser, sessions.Session) {
		e := newSigninEnv(t, envConfig{})
		b := e.browser(t)
		b.signIn("/")
		sess, ok := getSession(e.store, b.cookie(SecureCookieName).Value)
		if !ok {
			t.Fatal("not signed in")
		}
		return e, b, sess
	}
	page := func(t *testing.T, b *browser) string {
		resp, body := b.do("GET", "/@/signout?redirect=/bye", nil, nil)
		m := csrfField.FindStringSubmatch(body)
		if resp.StatusCode != 200 || m == nil || m[1] == "" || !strings.Contains(body, "@alice.test") {
			t.Fatalf("GET /@/signout: %d\n%s", resp.StatusCode, body)
		}
		return m[1]
	}

	t.Run("GET only shows the page", func(t *testing.T) {
		e, b, sess := signedIn(t)
		page(t, b)
		if _, ok := getSession(e.store, sess.ID); !ok {
			t.Error("GET /@/signout signed out")
		}
	})

	for _, tt := range []struct {
		name string
		form func(csrf string) url.Values
		hdr  http.Header
	}{
		{"foreign Origin, no token", func(string) url.Values { return url.Values{} }, http.Header{"Origin": {"https://evil.example.com"}}},
		{"no Origin, no token", func(string) url.Values { return url.Values{} }, nil},
		{"cross-site fetch metadata", func(string) url.Values { return url.Values{} }, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"null Origin", func(string) url.Values { return url.Values{} }, http.Header{"Origin": {"null"}}},
		{"Origin of a sibling host", func(string) url.Values { return url.Values{} }, http.Header{"Origin": {"https://evil.app.example.com"}}},
		{"Origin over http", func(string) url.Values { return url.Values{} }, http.Header{"Origin": {"http://app.example.com"}}},
		{"wrong token", func(string) url.Values { return url.Values{"csrf": {"x"}} }, http.Header{"Origin": {"https://evil.example.com"}}},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			e, b, sess := signedIn(t)
			csrf := page(t, b)
			resp, body := b.do("POST", "/@/signout", tt.form(csrf), tt.hdr)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("cross-site sign-out: %d\n%s", resp.StatusCode, body)
			}
			if _, ok := getSession(e.store, sess.ID); !ok {
				t.Error("the session was deleted by a cross-site request")
			}
		})
	}

	for _, tt := range []struct {
		name  string
		token bool
		hdr   http.Header
	}{
		{"with the token", true, nil},
		{"with the token from any origin", true, http.Header{"Origin": {"https://evil.example.com"}}},
		{"same Origin", false, http.Header{"Origin": {"https://app.example.com"}}},
		{"same-origin fetch metadata", false, http.Header{"Sec-Fetch-Site": {"same-origin"}}},
	} {
		t.Run("signs out: "+tt.name, func(t *testing.T) {
			e, b, sess := signedIn(t)
			form := url.Values{"redirect": {"/bye"}}
			if tt.token {
				form.Set("csrf", page(t, b))
			}
			resp, body := b.do("POST", "/@/signout", form, tt.hdr)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/bye" {
				t.Fatalf("sign-out: %d %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if _, ok := getSession(e.store, sess.ID); ok {
				t.Error("the session survived sign-out")
			}
			if c := b.cookie(SecureCookieName); c == nil || c.MaxAge >= 0 {
				t.Error("the session cookie was not cleared")
			}
			// The backend sees a signed-out browser.
			_, body = b.do("GET", "/", nil, nil)
			var s seen
			_ = json.Unmarshal([]byte(body), &s)
			if s.Headers.Get(contract.UserDID) != "" {
				t.Error("the backend still sees the user after sign-out")
			}
			// Revocation runs in the background.
			deadline := time.Now().Add(5 * time.Second)
			for e.srv.ActiveGrants() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if e.srv.ActiveGrants() != 0 || e.srv.TokenValid(sess.AccessToken) {
				t.Error("the tokens were not revoked at the server")
			}
		})
	}
}

func TestSafeRedirect(t *testing.T) {
	bad := []string{
		"", "//evil.example.com", "///evil.example.com", "////evil.example.com",
		`/\evil.example.com`, `\/evil.example.com`, `\\evil.example.com`, `/\/evil.example.com`,
		"/\t/evil.example.com", "/\n/evil.example.com", "/\r/evil.example.com", "/ /evil.example.com", "/\v/evil.example.com", "/\f/evil.example.com",
		"/./evil", "/.//evil.example.com", "/../evil", "/..//evil.example.com", `/.\evil.example.com`, `/..\evil.example.com`,
		"/%2F/evil.example.com", "/%2f%2fevil.example.com", "/%5Cevil.example.com", "/%5c%5cevil.example.com", "/%09/evil.example.com",
		"/%2e%2e//evil.example.com", "/%2e//evil.example.com", "/%0a/evil.example.com", "/%00/evil.example.com",
		"https://evil.example.com", "http://evil.example.com/", "HTTPS://evil.example.com", "//evil.example.com/path?x=1",
		"https:evil.example.com", "https:/evil.example.com", "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x",
		"vbscript:x", "evil.example.com", "@evil.example.com", " //evil.example.com", "\t//evil.example.com", " /path",
		"/path\x00", "/path\r\nSet-Cookie: x=1", "/path\x7f", "/\x01/evil", "/path\\x",
		"/@/signout", "/@", "/@/signin?redirect=//evil", "/%40/signout", "/@ ", "/@\t", "/@/signout ", "/path ",
		"http://[::1]/", "//[::1]", "/\\[::1]",
		// An escaped separator in the path: its decoded segments are not
		// the ones that http.Redirect and the browser clean.
		"/x/b%2Fc/../../@/signout", "/x/b%2fc/%2e%2e/%2e%2e/@/signout", "/a/../%2F/evil.example.com", "/files/a%2Fb", "/a%5Cb", "/a%2Eb",
	}
	for _, in := range bad {
		if got := SafeRedirect(in); got != "/" {
			t.Errorf("SafeRedirect(%q) = %q, want /", in, got)
		}
	}
	// Unicode spaces and look-alike slashes are percent-encoded by browsers
	// and by http.Redirect, so they stay same-site paths.
	good := []string{
		"/", "/after", "/after?x=1", "/a/b/c?next=//evil.example.com", "/a#frag", "/search?q=a%2Fb", "/a#x%2F", "/%E2%9C%93",
		"/café", "/\u3000/evil.example.com", "/\uff0f\uff0fevil.example.com", "/\u2215evil.example.com", "/javascript:alert(1)", "/@alice.test", "/a//b", "/a/./b",
	}
	long := "/" + strings.Repeat("a", maxRedirectLen-1)
	if got := SafeRedirect(long); got != long {
		t.Errorf("a path of %d bytes became %q, want it kept", len(long), got)
	}
	if got := SafeRedirect(long + "a"); got != "/" {
		t.Errorf("a path of %d bytes was kept, want /", len(long)+1)
	}
	for _, in := range good {
		if got := SafeRedirect(in); got != in {
			t.Errorf("SafeRedirect(%q) = %q, want it kept", in, got)
		}
	}
	// Whatever survives, the Location header ioproxy sends stays on this site.
	for _, in := range append(bad, good...) {
		rec := httptest.NewRecorder()
		http.Redirect(rec, httptest.NewRequest("GET", "https://app.example.com/@/callback", nil), SafeRedirect(in), http.StatusSeeOther)
		loc := rec.Header().Get("Location")
		u, err := url.Parse(loc)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`) {
			t.Errorf("redirect %q sent Location %q", in, loc)
		}
		base, _ := url.Parse("https://app.example.com/@/callback")
		if abs := base.ResolveReference(u); abs.Host != "app.example.com" {
			t.Errorf("redirect %q leads to host %q", in, abs.Host)
		}
	}
}

func TestUnknownSignInRoute(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	for _, p := range []string{"/@/nope", "/@/signin/extra"} {
		if resp, _ := b.do("GET", p, nil, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := b.do("DELETE", "/@/signout", nil, nil); resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != 404 {
		t.Errorf("DELETE /@/signout: %d", resp.StatusCode)
	}
}

// Login CSRF: another site's form cannot start a sign-in, sign the
// visitor out, or plant a state cookie.
func TestSignInFromAnotherSiteRefused(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	b.signIn("/")
	session := b.cookie(SecureCookieName).Value
	pars := e.srv.Counts().PAR
	for _, hdr := range []http.Header{
		{"Origin": {"https://evil.example.com"}},
		{"Origin": {"null"}},
		{"Origin": {"http://" + strings.TrimPrefix(e.base, "https://")}},
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}},
		{"Origin": {"null"}, "Sec-Fetch-Site": {"cross-site"}},
		{"Referer": {"https://evil.example.com/page"}},
	} {
		resp, body := b.do("POST", "/@/signin", url.Values{"handle": {"https://evil.example.com"}}, hdr)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "another site") {
			t.Errorf("%v: status %d", hdr, resp.StatusCode)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("%v: cookies set: %v", hdr, resp.Cookies())
		}
	}
	if _, ok := getSession(e.store, session); !ok {
		t.Error("a cross-site sign-in attempt ended the session")
	}
	if n := e.srv.Counts().PAR; n != pars {
		t.Errorf("refused sign-ins made %d PAR requests", n-pars)
	}
	// The site's own form (same Origin, or Sec-Fetch-Site: same-origin) works.
	for _, hdr := range []http.Header{
		{"Origin": {e.base}},
		{"Sec-Fetch-Site": {"same-origin"}},
		// A page with Referrer-Policy: no-referrer posting to itself.
		{"Origin": {"null"}, "Sec-Fetch-Site": {"same-origin"}},
		{"Referer": {e.base + "/login"}},
	} {
		if resp, _ := b.do("POST", "/@/signin", url.Values{"handle": {"alice.test"}}, hdr); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%v: status %d", hdr, resp.StatusCode)
		}
	}
}

// An authorization server that cached an older key set of this client
// refuses the pushed request ("no applicable key"): the person signing in
// is told to wait, not that something is broken on their side.
func TestSignInRefusedForAnUnknownClientKey(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	e.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/oauth/par" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		// Any server can say this, at any length: what we log of it is
		// bounded, and the alarm is raised once in ten minutes.
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"Validation of \"client_assertion\" failed: no applicable key found in the JSON Web Key Set`+
			strings.Repeat(" qqfillqq", 25000)+`"}`)
		return true
	})
	b := e.browser(t)
	attempt := func() {
		t.Helper()
		resp, body := b.do("POST", "/@/signin", url.Values{"handle": {"alice.test"}}, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "sign-in key changed recently") {
			t.Errorf("PAR refused for an unknown client key: %d Retry-After %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if strings.Contains(body, "qqfillqq") {
			t.Error("the page quotes the server's error")
		}
		if b.stateCookie() != nil {
			t.Error("a refused start set the state cookie")
		}
	}
	attempt()
	attempt()
	e.clock.Add(keyAlarmEvery)
	attempt()
	logs := e.logs.String()
	if n := strings.Count(logs, "level=ERROR msg=\"sign-in refused: the authorization server holds an older key set"); n != 2 {
		t.Errorf("%d error lines for three refusals, the third ten minutes later; want 2:\n%.3000s", n, logs)
	}
	if n := strings.Count(logs, "level=WARN msg=\"sign-in refused again"); n != 1 {
		t.Errorf("%d warnings for the refusal within ten minutes, want 1", n)
	}
	if !strings.Contains(logs, e.srv.URL) {
		t.Error("the log does not name the authorization server")
	}
	for line := range strings.SplitSeq(logs, "\n") {
		if len(line) > 2000 {
			t.Errorf("a log line of %d bytes: %.300s…", len(line), line)
		}
	}
}

// TestClientKeyRotation: a rotation held by ClientKeys shows at
// /@/jwks.json at once (both keys), and sign-ins sign with the old key
// until the next one's time, then with the next; its drop time takes the
// old key out of the set. (The fake checks assertion times on the real
// clock, so each stage is a rotation started that long ago.)
func TestClientKeyRotation(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	kids := func() []string {
		t.Helper()
		_, body := b.do("GET", "/@/jwks.json", nil, nil)
		var set struct {
			Keys []struct {
				KID string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(body), &set); err != nil {
			t.Fatalf("jwks.json %s: %v", body, err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.KID)
		}
		return out
	}
	for _, stage := range []struct {
		name      string
		started   time.Duration // before now
		signsNext bool
		both      bool
	}{
		{"before the next key's time", 0, false, true},
		{"after the next key's time", 90 * time.Minute, true, true},
		{"after the old key's drop time", 3 * time.Hour, true, false},
	} {
		rotated, err := oauth.NewKeyRing(e.key).Rotate(e.clock.Now().Add(-stage.started), time.Hour, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		next := rotated.Keys()[1].Key
		e.ckeys.Set(rotated)
		want := []string{next.KeyID()}
		if stage.both {
			want = []string{e.key.KeyID(), next.KeyID()}
		}
		if got := kids(); !slices.Equal(got, want) {
			t.Errorf("%s: the key set is %v, want %v", stage.name, got, want)
		}
		signer := e.key
		if stage.signsNext {
			signer = next
		}
		before := len(e.srv.Assertions())
		b.signIn("/")
		as := e.srv.Assertions()[before:]
		if len(as) == 0 {
			t.Fatalf("%s: no assertion verified", stage.name)
		}
		for _, a := range as {
			if a.KeyID != signer.KeyID() {
				t.Errorf("%s: an assertion at %s signed with %s, want %s", stage.name, a.Endpoint, a.KeyID, signer.KeyID())
			}
		}
	}
}
