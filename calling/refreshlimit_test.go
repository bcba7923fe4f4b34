package calling

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/clocktest"
	"github.com/ioproxy/ioproxy/sessions"
)

// TestRejectedTokensRefreshOncePerMinute: a PDS (anyone's to run) that
// answers every call 401 invalid_token gets one refresh a minute, not one
// per call: each would cost an account check, a token request and a
// store write. The calls get the PDS's answer.
func TestRejectedTokensRefreshOncePerMinute(t *testing.T) {
	clk := clocktest.New(time.Now())
	e := newCallEnvAt(t, clk.Now)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	var rejected atomic.Int32
	e.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/xrpc/com.example.echo" {
			return false
		}
		rejected.Add(1)
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	before := e.srv.Counts()
	calls := func(n int) {
		for range n {
			cur, _ := getSession(e.store, sess.ID)
			if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(cur)); rec.Code != http.StatusUnauthorized {
				t.Fatalf("a rejected call: %d %s, want the PDS's 401", rec.Code, rec.Body)
			}
		}
	}
	calls(20)
	if n := e.srv.Counts().Refresh - before.Refresh; n != 1 {
		t.Errorf("20 rejected calls in a minute caused %d refreshes, want 1", n)
	}
	// The first call is sent again after its refresh; the others are
	// not, as the same token would be refused again.
	if n := rejected.Load(); n != 21 {
		t.Errorf("20 rejected calls made %d requests to the PDS, want 21", n)
	}
	clk.Add(sessions.MinRefreshInterval + time.Second)
	calls(5)
	if n := e.srv.Counts().Refresh - before.Refresh; n != 2 {
		t.Errorf("after a minute: %d refreshes in all, want 2", n)
	}
}

// TestShortLivedTokensRefreshOncePerMinute: tokens that a server grants
// for one second do not make every signed-in page a refresh.
func TestShortLivedTokensRefreshOncePerMinute(t *testing.T) {
	clk := clocktest.New(time.Now())
	e := newCallEnvAt(t, clk.Now)
	sess := e.signIn(t, e.alice)
	e.srv.SetTokenHook(func(r *atprototest.TokenResponse) { r.ExpiresIn = 1 })
	before := e.srv.Counts().Refresh
	page := func() {
		cur, _ := getSession(e.store, sess.ID)
		e.tokens.RefreshLater(cur) // what ingress does for a stale session
		e.tokens.Wait()
	}
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.TokenExpiry = clk.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	page()
	for range 10 {
		clk.Add(2 * time.Second) // each token has expired again
		page()
	}
	if n := e.srv.Counts().Refresh - before; n != 1 {
		t.Errorf("%d refreshes in 20 s of one-second tokens, want 1", n)
	}
	clk.Add(sessions.MinRefreshInterval)
	page()
	if n := e.srv.Counts().Refresh - before; n != 2 {
		t.Errorf("after a minute: %d refreshes, want 2", n)
	}
	if _, ok := getSession(e.store, sess.ID); !ok {
		t.Error("the session ended")
	}
}

// TestNoncesKeptWithTheSession: a replica that has never talked to the
// authorization server or the PDS uses the nonces stored with the
// session (at sign-in, at the last refresh), and is not refused for want
// of one: exactly one token request for a refresh, one request per call.
func TestNoncesKeptWithTheSession(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	if sess.AuthServerNonce == "" {
		t.Fatal("the sign-in kept no authorization server nonce")
	}
	// Replica 1 learns the PDS's nonce; a refresh there saves both.
	h1 := e.port(t, pdsCall())
	if rec := call(h1, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.PDSNonce = e.nonces.Get(s.PDS)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A replica that has never talked to either: its own nonces, empty.
	// (The fake serves the PDS and the authorization server on one
	// origin, so each replica is used for one of them only.)
	newReplica := func() (*sessions.Lifecycle, http.Handler) {
		nonces := &dpop.Nonces{}
		client, err := oauth.New(oauth.Config{
			ClientID: e.client.ClientID(), RedirectURI: "http://127.0.0.1:9000/@/callback", Scope: "atproto transition:generic",
			HTTP: e.pdsClient, Identity: e.resolver, Nonces: nonces, AllowInsecure: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		tokens := sessions.NewLifecycle(sessions.LifecycleConfig{Store: e.store, Clients: map[string]*oauth.Client{client.ClientID(): client}, Nonces: nonces})
		h, err := New(Config{Call: pdsCall(), Sessions: tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: nonces})
		if err != nil {
			t.Fatal(err)
		}
		return tokens, h
	}

	cur, _ := getSession(e.store, sess.ID)
	_, h2 := newReplica()
	before := e.srv.Counts()
	if rec := call(h2, "GET", "/xrpc/com.example.echo", "", who(cur)); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got := e.srv.Counts(); got.XRPC-before.XRPC != 1 || got.NonceChallenges != before.NonceChallenges {
		t.Errorf("a call through a new replica: %d PDS requests, %d nonce challenges; want 1 and 0",
			got.XRPC-before.XRPC, got.NonceChallenges-before.NonceChallenges)
	}

	tokens3, _ := newReplica()
	before = e.srv.Counts()
	if _, err := tokens3.Refresh(context.Background(), cur.ID, cur.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Counts(); got.Token-before.Token != 1 || got.Refresh-before.Refresh != 1 {
		t.Errorf("a refresh through a new replica: %d token requests (%d nonce challenges); want 1",
			got.Token-before.Token, got.NonceChallenges-before.NonceChallenges)
	}
}
