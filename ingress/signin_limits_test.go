package ingress

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/sessions"
)

// TestCallbackJunkCostsNoWrite: anyone can send /@/callback?state=…, and
// a write to the store is two fdatasyncs that every sign-in, sign-out and
// refresh queues behind. A state ioproxy did not issue costs none.
func TestCallbackJunkCostsNoWrite(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	before := e.store.Writes()
	for _, state := range []string{
		"x", "", strings.Repeat("A", 43), sessions.NewToken(), strings.Repeat("%", 43),
		strings.Repeat("a", 4096), "../../etc", sessions.NewToken() + "x",
	} {
		resp, body := b.do("GET", "/@/callback?"+url.Values{"state": {state}, "code": {"c"}, "iss": {e.srv.URL}}.Encode(), nil, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Start again") {
			t.Errorf("state %.20q: %d %s", state, resp.StatusCode, body)
		}
	}
	if n := e.store.Writes() - before; n != 0 {
		t.Errorf("junk callbacks cost %d store writes, want none", n)
	}
	// A real one costs its write, and still works.
	if resp, body := b.signIn("/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in after junk: %d %s", resp.StatusCode, body)
	}
}

// TestCallbackRateLimited: callbacks are counted per client like sign-in
// starts, so a flood of them costs lookups for a minute at most.
func TestCallbackRateLimited(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	codes := map[int]int{}
	for i := 0; i < signinStartsPerMinute+5; i++ {
		resp, _ := b.do("GET", "/@/callback?state="+sessions.NewToken(), nil, nil)
		codes[resp.StatusCode]++
	}
	if codes[http.StatusBadRequest] != signinStartsPerMinute || codes[http.StatusTooManyRequests] != 5 {
		t.Errorf("answers: %v, want %d × 400 then 5 × 429", codes, signinStartsPerMinute)
	}
}

// TestSignInRefusesOversizedAnswers: a server anyone can run chooses its
// token sizes; ioproxy refuses to keep megabytes for a month.
func TestSignInRefusesOversizedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*atprototest.TokenResponse)
	}{
		{"access token", func(r *atprototest.TokenResponse) { r.AccessToken += strings.Repeat("A", sessions.MaxTokenBytes) }},
		{"refresh token", func(r *atprototest.TokenResponse) { r.RefreshToken += strings.Repeat("R", sessions.MaxTokenBytes) }},
		{"scope", func(r *atprototest.TokenResponse) {
			r.Scope += strings.Repeat(" repo:x.y.z", sessions.MaxScopeBytes/10)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSigninEnv(t, envConfig{})
			e.srv.SetTokenHook(tc.edit)
			resp, body := e.browser(t).signIn("/")
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "too large") {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			if countSessions(e.store) != 0 {
				t.Errorf("%d sessions stored", countSessions(e.store))
			}
		})
	}
}

// TestSessionsPerAccountAreCapped: one account signing in again and again
// on a host (every browser, every device) keeps at most MaxPerAccount
// sessions: the oldest ends.
func TestSessionsPerAccountAreCapped(t *testing.T) {
	e := newSigninEnv(t, envConfig{store: sessions.Options{MaxPerAccount: 3}})
	var ids []string
	for i := 0; i < 5; i++ {
		b := e.browser(t)
		if resp, body := b.signIn("/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in %d: %d %s", i, resp.StatusCode, body)
		}
		e.clock.Add(1e9)
		ids = append(ids, b.cookie(SecureCookieName).Value)
	}
	if n := countSessions(e.store); n != 3 {
		t.Errorf("%d sessions, want 3", n)
	}
	for i, id := range ids {
		_, ok := getSession(e.store, id)
		if want := i >= 2; ok != want {
			t.Errorf("session %d live: %v, want %v", i, ok, want)
		}
	}
	if !strings.Contains(e.logs.String(), "too many sessions on this host") {
		t.Error("no log line for the ended sessions")
	}
}

// TestSessionStoreFull: past MaxSessions, sign-ins are refused with a page
// that says so, a log line and a metric; the sessions there stay.
func TestSessionStoreFull(t *testing.T) {
	e := newSigninEnv(t, envConfig{store: sessions.Options{MaxSessions: 2}})
	bob := e.srv.AddAccount(atprototest.Account{Handle: "bob.test"})
	carol := e.srv.AddAccount(atprototest.Account{Handle: "carol.test"})
	signIn := func(acct atprototest.Account) (*http.Response, string) {
		b := e.browser(t)
		loc := b.start(acct.Handle, "/")
		cb, err := e.srv.ApproveURL(loc, acct.DID)
		if err != nil {
			t.Fatal(err)
		}
		return b.do("GET", b.callbackPath(cb), nil, nil)
	}
	for _, a := range []atprototest.Account{e.alice, bob} {
		if resp, body := signIn(a); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", a.Handle, resp.StatusCode, body)
		}
	}
	resp, body := signIn(carol)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "as many sessions as it can") {
		t.Errorf("third sign-in: %d %s", resp.StatusCode, body)
	}
	if countSessions(e.store) != 2 {
		t.Errorf("%d sessions", countSessions(e.store))
	}
	if !strings.Contains(e.events.String(), "store_full") {
		t.Errorf("events %q lack store_full", e.events.String())
	}
	if !strings.Contains(e.logs.String(), "the session store is full") {
		t.Error("no log line")
	}
}

// TestDeniedAccountsGetNoSession: anyone who runs a server can mint
// accounts; on a host whose rules name one account, the others' sign-ins
// must not fill the store and lock the owner out.
func TestDeniedAccountsGetNoSession(t *testing.T) {
	e := newSigninEnv(t, envConfig{
		store:     sessions.Options{MaxSessions: 3},
		hostExtra: `require_atproto { dids = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"] }`,
	})
	owner := e.srv.AddAccount(atprototest.Account{DID: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", Handle: "owner.test"})
	signIn := func(acct atprototest.Account) (*http.Response, string) {
		b := e.browser(t)
		loc := b.start(acct.Handle, "/")
		cb, err := e.srv.ApproveURL(loc, acct.DID)
		if err != nil {
			t.Fatal(err)
		}
		return b.do("GET", b.callbackPath(cb), nil, nil)
	}
	for i := range 5 {
		junk := e.srv.AddAccount(atprototest.Account{Handle: fmt.Sprintf("junk%d.test", i)})
		if resp, body := signIn(junk); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, junk.DID) {
			t.Fatalf("refused account %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := countSessions(e.store); n != 0 {
		t.Errorf("%d sessions stored for accounts the rules refuse", n)
	}
	if resp, body := signIn(owner); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the admitted account: %d %s", resp.StatusCode, body)
	}
}

// TestPendingSharePerClient: one client cannot take every place for
// sign-ins in progress (each costs it nothing but a form and a pushed
// request to a server it may run itself); another client still signs in.
func TestPendingSharePerClient(t *testing.T) {
	e := newSigninEnv(t, envConfig{store: sessions.Options{MaxPending: 100, MaxPendingPerClient: 3}})
	flood := func(remote string) *browser { b := e.browser(t); b.remote = remote; return b }
	for range 3 {
		flood("198.51.100.7:1234").start("alice.test", "/") // never finished
	}
	resp, body := flood("198.51.100.7:1234").do("POST", "/@/signin", url.Values{"handle": {"alice.test"}}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Too many sign-ins") {
		t.Errorf("a fourth unfinished sign-in from one address: %d %s", resp.StatusCode, body)
	}
	// Another address (IPv6 clients count per /56) is not affected.
	other := flood("[2001:db8:0:100::1]:1234")
	loc := other.start("alice.test", "/")
	cb, err := e.srv.ApproveURL(loc, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := other.do("GET", other.callbackPath(cb), nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a sign-in from another address: %d %s", resp.StatusCode, body)
	}
}

func TestLoggableInput(t *testing.T) {
	for in, want := range map[string]string{
		"alice.bsky.social":                "alice.bsky.social",
		"@alice.bsky.social":               "@alice.bsky.social",
		"did:plc:ewvi7nxzyoun6zhxrhs64oiz": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		"https://bsky.social":              "https://bsky.social",
		"https://bsky.social/x?token=abc":  "https://bsky.social",
		"https://user:pass@bsky.social":    "(29 characters that are not a handle, DID or URL)",
		"hunter2":                          "(7 characters that are not a handle, DID or URL)",
		"correct horse battery staple":     "(28 characters that are not a handle, DID or URL)",
	} {
		if got := loggableInput(in); got != want {
			t.Errorf("loggableInput(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPasswordTypedAsHandleIsNotLogged: people type passwords into the
// handle box; the log must not keep them.
func TestPasswordTypedAsHandleIsNotLogged(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	resp, _ := e.browser(t).do("POST", "/@/signin", url.Values{"handle": {"Hunter2-secret!"}}, nil)
	if resp.StatusCode == http.StatusSeeOther {
		t.Fatal("a password started a sign-in")
	}
	if logs := e.logs.String(); strings.Contains(logs, "Hunter2-secret") || !strings.Contains(logs, "sign-in start failed") {
		t.Errorf("logs:\n%s", logs)
	}
}
