package ingress

import (
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
			if e.store.Count() != 0 {
				t.Errorf("%d sessions stored", e.store.Count())
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
	if n := e.store.Count(); n != 3 {
		t.Errorf("%d sessions, want 3", n)
	}
	for i, id := range ids {
		_, ok := e.store.Get(id)
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
	if e.store.Count() != 2 {
		t.Errorf("%d sessions", e.store.Count())
	}
	if !strings.Contains(e.events.String(), "store_full") {
		t.Errorf("events %q lack store_full", e.events.String())
	}
	if !strings.Contains(e.logs.String(), "the session store is full") {
		t.Error("no log line")
	}
}
