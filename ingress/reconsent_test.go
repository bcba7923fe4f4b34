package ingress

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/sessions"
)

// sessionCookie is the browser's session cookie value, or "".
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.e.base + "/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == SecureCookieName || c.Name == CookieName {
			return c.Value
		}
	}
	return ""
}

// grantOnly narrows the stored session to scope, as if it signed in
// (asking for that scope) before the host asked for more.
func grantOnly(t *testing.T, e *signinEnv, id, scope string) {
	t.Helper()
	if _, err := e.store.Update(context.Background(), id, func(s *sessions.Session) error { s.Scope, s.Asked = scope, scope; return nil }); err != nil {
		t.Fatal(err)
	}
}

// signedInBeforeMore signs b in and narrows its session to "atproto",
// as if the host asked for less when it signed in; it returns the
// session id.
func signedInBeforeMore(t *testing.T, e *signinEnv, b *browser) string {
	t.Helper()
	b.signIn("/")
	id := b.sessionCookie()
	grantOnly(t, e, id, "atproto")
	return id
}

// TestReconsent: a signed-in session that lacks a scope the host asks
// for is taken from /@/signin straight to the authorization server for
// its own account, and comes back with a new session holding the grant;
// the old session ends then, not before.
func TestReconsent(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	old := signedInBeforeMore(t, e, b)

	resp, _ := b.do("GET", "/@/signin?redirect=/upload", nil, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, e.srv.URL+"/oauth/authorize?") {
		t.Fatalf("GET /@/signin with a scope missing: %d %q; want the authorization server", resp.StatusCode, loc)
	}
	if got, ok := getSession(e.store, old); !ok || got.Scope != "atproto" {
		t.Fatal("the old session ended before the new grant arrived")
	}
	if hint, ok := e.srv.RequestLoginHint(loc); !ok || hint != e.alice.DID {
		t.Errorf("the re-consent's login_hint is %q, want the account %s", hint, e.alice.DID)
	}
	cb, err := e.srv.ApproveURL(loc, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/upload" {
		t.Fatalf("callback: %d %q; want back to /upload", resp.StatusCode, resp.Header.Get("Location"))
	}
	next := b.sessionCookie()
	sess, ok := getSession(e.store, next)
	if next == old || !ok || !slices.Contains(strings.Fields(sess.Scope), "transition:generic") {
		t.Errorf("after re-consent: session %v with scope %q; want a new session with the host's scopes", ok, sess.Scope)
	}
	if _, ok := getSession(e.store, old); ok {
		t.Error("the old session is still live after the new grant")
	}
	// Nothing is missing now: the sign-in form, not another round.
	resp, _ = b.do("GET", "/@/signin?redirect=/upload", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /@/signin with every scope granted: %d, want the form", resp.StatusCode)
	}
}

// TestReconsentDeclined: declined, the old session goes on as it was and
// the browser returns to its page.
func TestReconsentDeclined(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	old := signedInBeforeMore(t, e, b)
	resp, _ := b.do("GET", "/@/signin?redirect=/upload", nil, nil)
	cb, err := e.srv.Deny(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = b.do("GET", b.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/upload" {
		t.Errorf("declined re-consent: %d %q; want back to /upload", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got, ok := getSession(e.store, old); !ok || got.Scope != "atproto" || b.sessionCookie() != old {
		t.Error("the old session did not survive a declined re-consent")
	}
}

func TestMissingScopes(t *testing.T) {
	for _, tc := range []struct {
		configured []string
		granted    string
		want       []string
	}{
		{[]string{"atproto", "repo:a.b.c"}, "atproto repo:a.b.c", nil},
		{[]string{"atproto", "repo:a.b.c"}, "atproto repo?collection=a.b.c&action=create&action=update&action=delete", nil},
		{[]string{"atproto", "repo:a.b.c", "blob:image/*"}, "atproto repo:a.b.c", []string{"blob:image/*"}},
		{[]string{"atproto", "include:app.example.authBasic"}, "atproto repo:app.example.thing", nil},
		{[]string{"atproto"}, "", []string{"atproto"}},
		{[]string{"atproto", "repo:a.b.c"}, "atproto junk%zz", []string{"repo:a.b.c"}},
	} {
		if got := missingScopes(tc.configured, tc.granted); !slices.Equal(got, tc.want) {
			t.Errorf("missingScopes(%v, %q) = %v, want %v", tc.configured, tc.granted, got, tc.want)
		}
	}
}

// TestReconsentNotForWhatWasAsked: a server that granted less than the
// host asked at sign-in is not asked again (a loop otherwise); only
// when the host asks for more than that sign-in did.
func TestReconsentNotForWhatWasAsked(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	b.signIn("/")
	id := b.sessionCookie()
	if _, err := e.store.Update(context.Background(), id, func(s *sessions.Session) error { s.Scope = "atproto"; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/@/signin?redirect=/upload", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a session granted less than it asked: %d %q; want the form, not another round", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestReconsentCrossSite: another site's link shows a page whose button
// (a POST, refused cross-site) starts the re-consent; it does not start
// one by itself.
func TestReconsentCrossSite(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	old := signedInBeforeMore(t, e, b)
	resp, body := b.do("GET", "/@/signin?redirect=/upload", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="reconsent"`) || b.stateCookie() != nil {
		t.Fatalf("a cross-site GET: %d %q, state cookie %v; want the page with its button, no flow", resp.StatusCode, resp.Header.Get("Location"), b.stateCookie())
	}
	resp, _ = b.do("POST", "/@/signin", url.Values{"reconsent": {"1"}, "redirect": {"/upload"}}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, e.srv.URL+"/oauth/authorize?") {
		t.Fatalf("the page's button: %d %q; want the authorization server", resp.StatusCode, loc)
	}
	if _, ok := getSession(e.store, old); !ok {
		t.Error("the button ended the session before the new grant")
	}
}

// TestSignoutCancelsReconsent: a re-consent in progress when the user
// signs out does not sign the browser back in.
func TestSignoutCancelsReconsent(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	signedInBeforeMore(t, e, b)
	resp, _ := b.do("GET", "/@/signin?redirect=/upload", nil, nil)
	loc := resp.Header.Get("Location")
	cb, err := e.srv.ApproveURL(loc, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	b.do("POST", "/@/signout", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	b.do("GET", b.callbackPath(cb), nil, nil)
	if id := b.sessionCookie(); id != "" {
		if _, ok := getSession(e.store, id); ok {
			t.Error("a re-consent approved after sign-out signed the browser back in")
		}
	}
}

// TestDeclinedReconsentNeedsBinding: a declined re-consent's callback
// from another browser (a link an attacker sends) is refused like any
// callback of another browser, not treated as declined.
func TestDeclinedReconsentNeedsBinding(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	attacker := e.browser(t)
	signedInBeforeMore(t, e, attacker)
	resp, _ := attacker.do("GET", "/@/signin?redirect=/chosen/by/attacker", nil, nil)
	cb, err := e.srv.Deny(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	victim := e.browser(t)
	resp, _ = victim.do("GET", victim.callbackPath(cb), nil, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("another browser's declined callback: %d %q; want 400", resp.StatusCode, resp.Header.Get("Location"))
	}
	if strings.Contains(e.logs.String(), "re-consent declined") {
		t.Error("logged as a declined re-consent")
	}
}
