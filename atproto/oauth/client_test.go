package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

// clock is a settable clock shared by the fake server and the client.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testScope = "atproto transition:generic"

// env is one fake AT Protocol world and an OAuth client pointed at it.
type env struct {
	srv    *atprototest.Server
	alice  atprototest.Account
	client *Client
	cfg    Config
	clock  *clock
}

// localhostConfig is a localhost (public) client of the fake world.
func localhostConfig(srvURL string, httpc *http.Client, clk *clock) Config {
	redirect := "http://127.0.0.1:9000/@/callback"
	return Config{
		ClientID:    LocalhostClientID(redirect, testScope),
		RedirectURI: redirect,
		Scope:       testScope,
		HTTP:        httpc,
		Identity: identity.New(identity.Config{
			PLCURL: srvURL, HandleResolver: srvURL, HTTPClient: httpc, AllowInsecure: true,
		}),
		Nonces:        &dpop.Nonces{},
		AllowInsecure: true,
		Now:           clk.Now,
	}
}

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	clk := newClock()
	srv := atprototest.New(t, atprototest.Options{Now: clk.Now})
	e := &env{srv: srv, clock: clk}
	e.alice = srv.AddAccount(atprototest.Account{Handle: "alice.test"})
	httpc := safehttp.NewClient(safehttp.Options{AllowInsecure: true})
	e.cfg = localhostConfig(srv.URL, httpc, clk)
	for _, o := range opts {
		o(&e.cfg)
	}
	c, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	return e
}

// callback parses a callback URL the fake made.
func callback(t *testing.T, raw string) (code, state, iss string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	return q.Get("code"), q.Get("state"), q.Get("iss")
}

// authorize starts a sign-in and has the fake approve it as did.
func (e *env) authorize(t *testing.T, input, did string) (*Request, string, string) {
	t.Helper()
	req, authURL, err := e.client.Authorize(context.Background(), input)
	if err != nil {
		t.Fatalf("Authorize(%q): %v", input, err)
	}
	cb, err := e.srv.ApproveURL(authURL, did)
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	code, state, iss := callback(t, cb)
	if state != req.State {
		t.Fatalf("callback state %q, want %q", state, req.State)
	}
	if !strings.HasPrefix(cb, e.cfg.RedirectURI+"?") {
		t.Fatalf("callback %s does not go to the redirect URI", cb)
	}
	return req, code, iss
}

func (e *env) signIn(t *testing.T, input, did string) (*Request, *Grant) {
	t.Helper()
	req, code, iss := e.authorize(t, input, did)
	g, err := e.client.Exchange(context.Background(), req, code, iss)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return req, g
}

func checkGrant(t *testing.T, e *env, g *Grant, acct atprototest.Account) {
	t.Helper()
	if g.DID != acct.DID || g.Handle != acct.Handle || g.PDS != e.srv.URL || g.Issuer != e.srv.Issuer() {
		t.Errorf("grant = %+v, want DID %s handle %s PDS and issuer %s", g, acct.DID, acct.Handle, e.srv.URL)
	}
	if !hasScope(g.Scope, "atproto") || g.AccessToken == "" || g.RefreshToken == "" {
		t.Errorf("grant scope %q, tokens %t/%t", g.Scope, g.AccessToken != "", g.RefreshToken != "")
	}
	if d := g.Expiry.Sub(e.clock.Now()); d < 59*time.Minute || d > time.Hour {
		t.Errorf("grant expires in %s, want the server's 1h", d)
	}
	if !e.srv.TokenValid(g.AccessToken) {
		t.Error("the server does not accept the granted access token")
	}
}

func TestSignInFromHandle(t *testing.T) {
	e := newEnv(t)
	req, authURL, err := e.client.Authorize(context.Background(), " @Alice.Test ")
	if err != nil {
		t.Fatal(err)
	}
	if req.ExpectedDID != e.alice.DID || req.Handle != "alice.test" || req.PDS != e.srv.URL || req.Issuer != e.srv.Issuer() {
		t.Errorf("request = %+v", req)
	}
	// The browser URL carries only client_id and request_uri: the fake's
	// ApproveURL refuses anything else.
	u, _ := url.Parse(authURL)
	if got := len(u.Query()); got != 2 {
		t.Errorf("authorize URL has %d parameters: %s", got, authURL)
	}
	if hint, ok := e.srv.RequestLoginHint(authURL); !ok || !strings.EqualFold(hint, "alice.test") {
		t.Errorf("login_hint = %q, want the handle as typed without @", hint)
	}
	cb, err := e.srv.ApproveURL(authURL, e.alice.DID)
	if err != nil {
		t.Fatal(err)
	}
	code, _, iss := callback(t, cb)
	g, err := e.client.Exchange(context.Background(), req, code, iss)
	if err != nil {
		t.Fatal(err)
	}
	checkGrant(t, e, g, e.alice)
}

func TestSignInFromDID(t *testing.T) {
	e := newEnv(t)
	req, g := e.signIn(t, e.alice.DID, e.alice.DID)
	if req.ExpectedDID != e.alice.DID {
		t.Errorf("ExpectedDID = %q", req.ExpectedDID)
	}
	checkGrant(t, e, g, e.alice)
}

func TestSignInFromServerURL(t *testing.T) {
	for _, input := range []string{"SERVER", "SERVER/"} {
		e := newEnv(t)
		in := strings.Replace(input, "SERVER", e.srv.URL, 1)
		req, g := e.signIn(t, in, e.alice.DID)
		if req.ExpectedDID != "" || req.Issuer != e.srv.Issuer() {
			t.Errorf("%s: request = %+v", in, req)
		}
		checkGrant(t, e, g, e.alice)
	}
}

func TestEachSignInHasItsOwnDPoPKeyStateAndVerifier(t *testing.T) {
	e := newEnv(t)
	r1, _, err := e.client.Authorize(context.Background(), "alice.test")
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := e.client.Authorize(context.Background(), "alice.test")
	if err != nil {
		t.Fatal(err)
	}
	if r1.DPoPKey.Thumbprint() == r2.DPoPKey.Thumbprint() || r1.State == r2.State || r1.PKCEVerifier == r2.PKCEVerifier {
		t.Error("two sign-ins share a DPoP key, state or PKCE verifier")
	}
	if len(r1.State) < 40 || len(r1.PKCEVerifier) < 43 {
		t.Errorf("state %d chars, verifier %d chars: too short", len(r1.State), len(r1.PKCEVerifier))
	}
}

func TestPARNonceRetry(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.client.Authorize(context.Background(), "alice.test"); err != nil {
		t.Fatal(err)
	}
	// A fresh client knows no nonce: one refusal, one retry.
	if c := e.srv.Counts(); c.PAR != 2 || c.NonceChallenges != 1 {
		t.Errorf("first sign-in: %d PAR requests, %d nonce challenges; want 2 and 1", c.PAR, c.NonceChallenges)
	}
	// The nonce is remembered: no retry.
	if _, _, err := e.client.Authorize(context.Background(), "alice.test"); err != nil {
		t.Fatal(err)
	}
	if c := e.srv.Counts(); c.PAR != 3 || c.NonceChallenges != 1 {
		t.Errorf("second sign-in: %d PAR requests, %d nonce challenges; want 3 and 1", c.PAR, c.NonceChallenges)
	}
	// A rotated nonce costs exactly one retry.
	e.srv.RotateNonce()
	if _, _, err := e.client.Authorize(context.Background(), "alice.test"); err != nil {
		t.Fatal(err)
	}
	if c := e.srv.Counts(); c.PAR != 5 || c.NonceChallenges != 2 {
		t.Errorf("after rotation: %d PAR requests, %d nonce challenges; want 5 and 2", c.PAR, c.NonceChallenges)
	}
}

func TestPARGivesUpAfterOneRetry(t *testing.T) {
	e := newEnv(t)
	e.srv.SetNonceEveryRequest(true)
	_, _, err := e.client.Authorize(context.Background(), "alice.test")
	var ue *UserError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want a UserError", err)
	}
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "use_dpop_nonce" {
		t.Errorf("err = %v, want the server's use_dpop_nonce", err)
	}
	if c := e.srv.Counts(); c.PAR != 2 {
		t.Errorf("%d PAR requests, want exactly 2 (one retry)", c.PAR)
	}
}

func TestTokenEndpointNonceRetry(t *testing.T) {
	e := newEnv(t)
	req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
	e.srv.RotateNonce()
	if _, err := e.client.Exchange(context.Background(), req, code, iss); err != nil {
		t.Fatal(err)
	}
	if c := e.srv.Counts(); c.Token != 2 {
		t.Errorf("%d token requests after a nonce rotation, want 2", c.Token)
	}
}

func TestCallbackIssuerChecked(t *testing.T) {
	for _, tt := range []struct {
		name string
		iss  func(string) string
	}{
		{"missing", func(string) string { return "" }},
		{"other server", func(string) string { return "https://evil.example.com" }},
		{"trailing slash", func(s string) string { return s + "/" }},
		{"other scheme", func(s string) string { return strings.Replace(s, "http://", "https://", 1) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetCallbackIss(tt.iss)
			req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
			_, err := e.client.Exchange(context.Background(), req, code, iss)
			var ue *UserError
			if !errors.As(err, &ue) || !strings.Contains(ue.Message, "unexpected server") {
				t.Fatalf("Exchange with iss %q: %v, want a refusal", iss, err)
			}
			if c := e.srv.Counts(); c.Token != 0 {
				t.Errorf("the code was sent to the token endpoint (%d requests) despite a bad iss", c.Token)
			}
		})
	}
}

// twoServers sets up alice on server a and bob on server b; the client
// resolves DIDs through a's PLC directory, which knows that bob's PDS is b.
func twoServers(t *testing.T) (e *env, b *atprototest.Server, bob atprototest.Account) {
	e = newEnv(t)
	b = atprototest.New(t, atprototest.Options{})
	bob = b.AddAccount(atprototest.Account{Handle: "bob.test"})
	e.srv.AddAccount(atprototest.Account{DID: bob.DID, Handle: bob.Handle, PDS: b.URL})
	return e, b, bob
}

func TestSubServedByAnotherIssuerRefused(t *testing.T) {
	e, b, bob := twoServers(t)
	// Sanity: bob's identity resolves to server b.
	id, err := e.cfg.Identity.LookupDIDFresh(context.Background(), mustDID(t, bob.DID))
	if err != nil || id.PDS != b.URL {
		t.Fatalf("bob resolves to %+v, %v", id, err)
	}
	// Server a claims bob's account in a flow that named no account.
	e.srv.SetTokenHook(func(r *atprototest.TokenResponse) { r.Sub = bob.DID })
	req, code, iss := e.authorize(t, e.srv.URL, e.alice.DID)
	_, err = e.client.Exchange(context.Background(), req, code, iss)
	var ue *UserError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "served by "+b.URL) {
		t.Fatalf("Exchange: %v, want a refusal naming %s", err, b.URL)
	}
	// The tokens we refused are revoked, not left live.
	if e.srv.ActiveGrants() != 0 || len(e.srv.Revoked()) != 1 {
		t.Errorf("after refusal: %d live grants, %d revoked tokens; want 0 and 1", e.srv.ActiveGrants(), len(e.srv.Revoked()))
	}
}

func TestSubOtherThanExpectedRefused(t *testing.T) {
	e, _, bob := twoServers(t)
	carol := e.srv.AddAccount(atprototest.Account{Handle: "carol.test"})
	for _, sub := range []string{bob.DID, carol.DID, "not-a-did", ""} {
		e.srv.SetTokenHook(func(r *atprototest.TokenResponse) { r.Sub = sub })
		req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
		if _, err := e.client.Exchange(context.Background(), req, code, iss); err == nil {
			t.Errorf("sub %q accepted for a sign-in as alice", sub)
		}
	}
}

func TestTokenResponseShapeChecked(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*atprototest.TokenResponse)
	}{
		{"scope without atproto", func(r *atprototest.TokenResponse) { r.Scope = "transition:generic" }},
		{"empty scope", func(r *atprototest.TokenResponse) { r.Scope = "" }},
		{"scope with atproto as a substring only", func(r *atprototest.TokenResponse) { r.Scope = "atprotoX transition:generic" }},
		{"bearer token", func(r *atprototest.TokenResponse) { r.TokenType = "Bearer" }},
		{"no access token", func(r *atprototest.TokenResponse) { r.AccessToken = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetTokenHook(tt.edit)
			req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
			_, err := e.client.Exchange(context.Background(), req, code, iss)
			var ue *UserError
			if !errors.As(err, &ue) {
				t.Fatalf("Exchange: %v, want a refusal", err)
			}
		})
	}
}

func TestExpiredRequestRefused(t *testing.T) {
	t.Run("client side", func(t *testing.T) {
		e := newEnv(t)
		req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
		e.clock.Add(11 * time.Minute)
		_, err := e.client.Exchange(context.Background(), req, code, iss)
		var ue *UserError
		if !errors.As(err, &ue) || !strings.Contains(ue.Message, "expired") {
			t.Fatalf("Exchange: %v, want expired", err)
		}
		if c := e.srv.Counts(); c.Token != 0 {
			t.Errorf("an expired request reached the token endpoint")
		}
	})
	t.Run("pushed request expired at the server", func(t *testing.T) {
		e := newEnv(t)
		_, authURL, err := e.client.Authorize(context.Background(), "alice.test")
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Add(6 * time.Minute)
		if _, err := e.srv.ApproveURL(authURL, e.alice.DID); err == nil {
			t.Fatal("the fake approved an expired request")
		}
	})
	t.Run("code expired at the server", func(t *testing.T) {
		e := newEnv(t)
		req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
		e.clock.Add(2 * time.Minute)
		_, err := e.client.Exchange(context.Background(), req, code, iss)
		var se *ServerError
		if !errors.As(err, &se) || se.Code != "invalid_grant" {
			t.Fatalf("Exchange: %v, want invalid_grant", err)
		}
	})
}

func TestReplayedCodeFails(t *testing.T) {
	e := newEnv(t)
	req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
	g, err := e.client.Exchange(context.Background(), req, code, iss)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Exchange(context.Background(), req, code, iss)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "invalid_grant" {
		t.Fatalf("replayed code: %v, want invalid_grant", err)
	}
	// As the reference server: the replay revokes what the code produced.
	if e.srv.TokenValid(g.AccessToken) {
		t.Error("tokens of a replayed code are still live")
	}
}

func TestWrongPKCEVerifierFails(t *testing.T) {
	e := newEnv(t)
	req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
	req.PKCEVerifier = randomToken(48)
	if _, err := e.client.Exchange(context.Background(), req, code, iss); err == nil {
		t.Fatal("code exchanged with another PKCE verifier")
	}
}

func TestCodeBoundToDPoPKey(t *testing.T) {
	e := newEnv(t)
	req, code, iss := e.authorize(t, "alice.test", e.alice.DID)
	other, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	req.DPoPKey = other
	if _, err := e.client.Exchange(context.Background(), req, code, iss); err == nil {
		t.Fatal("code exchanged with another DPoP key than the pushed request's")
	}
}

func mustDID(t *testing.T, s string) syntax.DID {
	t.Helper()
	d, err := syntax.ParseDID(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	e.clock.Add(30 * time.Minute)
	g2, err := refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey)
	if err != nil {
		t.Fatal(err)
	}
	if g2.AccessToken == g.AccessToken || g2.RefreshToken == g.RefreshToken || g2.RefreshToken == "" {
		t.Error("refresh did not rotate both tokens")
	}
	if g2.DID != e.alice.DID || g2.Handle != "alice.test" || g2.PDS != e.srv.URL || g2.Issuer != e.srv.Issuer() {
		t.Errorf("refreshed grant = %+v", g2)
	}
	if !g2.Expiry.After(g.Expiry) {
		t.Errorf("refreshed expiry %s is not after %s", g2.Expiry, g.Expiry)
	}
	if e.srv.TokenValid(g.AccessToken) || !e.srv.TokenValid(g2.AccessToken) {
		t.Error("old access token still valid, or new one not valid")
	}
	if c := e.srv.Counts(); c.Refresh != 1 {
		t.Errorf("%d refreshes, want 1", c.Refresh)
	}
}

func TestRefreshReverifiesIssuerFirst(t *testing.T) {
	e, b, _ := twoServers(t)
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	// alice moves her account to server b.
	e.srv.AddAccount(atprototest.Account{DID: e.alice.DID, Handle: e.alice.Handle, PDS: b.URL})
	_, err := refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey)
	var ue *UserError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "served by "+b.URL) {
		t.Fatalf("Refresh after the account moved: %v, want a refusal", err)
	}
	if c := e.srv.Counts(); c.Refresh != 0 {
		t.Errorf("the refresh token was sent to the old issuer (%d refreshes) before the issuer was checked", c.Refresh)
	}
}

func TestRefreshKeepsSessionWhenDirectoryIsDown(t *testing.T) {
	e := newEnv(t)
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := refresh(ctx, e.client, g, g.RefreshToken, req.DPoPKey)
	var ue *UserError
	if err == nil || errors.As(err, &ue) || IsInvalidGrant(err) {
		t.Fatalf("Refresh with the directory unreachable: %v, want a transient error", err)
	}
	if c := e.srv.Counts(); c.Refresh != 0 {
		t.Error("refresh token spent although the refresh failed before the token endpoint")
	}
}

func TestReplayedRefreshTokenFails(t *testing.T) {
	e := newEnv(t)
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	g2, err := refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey)
	if !IsInvalidGrant(err) {
		t.Fatalf("replayed refresh token: %v, want invalid_grant", err)
	}
	// The reference server deletes the whole session on a replay: the
	// newest tokens die too.
	if e.srv.TokenValid(g2.AccessToken) {
		t.Error("access token still valid after a refresh token replay")
	}
	if _, err := refresh(context.Background(), e.client, g, g2.RefreshToken, req.DPoPKey); !IsInvalidGrant(err) {
		t.Errorf("newest refresh token after a replay: %v, want invalid_grant", err)
	}
}

func TestRefreshBoundToDPoPKey(t *testing.T) {
	e := newEnv(t)
	_, g := e.signIn(t, "alice.test", e.alice.DID)
	other, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refresh(context.Background(), e.client, g, g.RefreshToken, other); err == nil {
		t.Fatal("refreshed with another DPoP key")
	}
}

func TestRefreshAnswerForAnotherAccountRefused(t *testing.T) {
	e := newEnv(t)
	carol := e.srv.AddAccount(atprototest.Account{Handle: "carol.test"})
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	e.srv.SetTokenHook(func(r *atprototest.TokenResponse) {
		if r.GrantType == "refresh_token" {
			r.Sub = carol.DID
		}
	})
	_, err := refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey)
	var ue *UserError
	if !errors.As(err, &ue) {
		t.Fatalf("refresh answered for carol: %v, want a refusal that ends the session", err)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	e.client.Revoke(context.Background(), g.Issuer, g.RefreshToken, req.DPoPKey)
	if got := e.srv.Revoked(); len(got) != 1 || got[0] != g.RefreshToken {
		t.Errorf("revoked %d tokens, want the refresh token", len(got))
	}
	if e.srv.TokenValid(g.AccessToken) {
		t.Error("access token valid after its grant was revoked")
	}
}

// confidential returns a private_key_jwt client configuration for
// https://app.example.com and its key.
func confidential(t *testing.T, clientID, redirect string) (*ClientKey, func(*Config)) {
	t.Helper()
	raw, err := GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseClientKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return key, func(c *Config) {
		c.ClientID, c.RedirectURI, c.Keys = clientID, redirect, NewClientKeys(NewKeyRing(key))
	}
}

func TestConfidentialClientAssertions(t *testing.T) {
	const clientID = "https://app.example.com/@/client-metadata.json"
	key, opt := confidential(t, clientID, "https://app.example.com/@/callback")
	e := newEnv(t, opt)
	meta, _ := json.Marshal(e.client.Metadata(MetadataInfo{JWKSURI: "https://app.example.com/@/jwks.json"}))
	jwks, err := NewKeyRing(key).JWKS(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.RegisterClient(meta, jwks); err != nil {
		t.Fatal(err)
	}
	req, g := e.signIn(t, "alice.test", e.alice.DID)
	if _, err := refresh(context.Background(), e.client, g, g.RefreshToken, req.DPoPKey); err != nil {
		t.Fatal(err)
	}
	as := e.srv.Assertions()
	// PAR (its first try is refused for the nonce before client
	// authentication), code exchange, refresh.
	if len(as) != 3 || as[0].Endpoint != "par" || as[1].Endpoint != "token" || as[2].Endpoint != "token" {
		t.Fatalf("assertions verified: %+v, want PAR, token, token", as)
	}
	jtis := map[string]bool{}
	for _, a := range as {
		if a.Issuer != clientID || a.Subject != clientID || len(a.Audience) != 1 || a.Audience[0] != e.srv.Issuer() ||
			a.KeyID != key.KeyID() || a.Alg != "ES256" || a.JTI == "" || a.IssuedAt.IsZero() {
			t.Errorf("assertion at %s = %+v", a.Endpoint, a)
		}
		if jtis[a.JTI] {
			t.Errorf("assertion jti %s reused", a.JTI)
		}
		jtis[a.JTI] = true
	}
}

func TestConfidentialClientWithUnknownKeyRefused(t *testing.T) {
	const clientID = "https://app.example.com/@/client-metadata.json"
	_, opt := confidential(t, clientID, "https://app.example.com/@/callback")
	e := newEnv(t, opt)
	meta, _ := json.Marshal(e.client.Metadata(MetadataInfo{JWKSURI: "https://app.example.com/@/jwks.json"}))
	otherRaw, _ := GenerateClientKey()
	other, _ := ParseClientKey(otherRaw)
	jwks, _ := NewKeyRing(other).JWKS(time.Now())
	if err := e.srv.RegisterClient(meta, jwks); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.client.Authorize(context.Background(), "alice.test")
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "invalid_client" {
		t.Fatalf("Authorize with a key the server does not know: %v, want invalid_client", err)
	}
}

// TestConfidentialClientMetadataFetched has the fake fetch the client's
// metadata document and JWKS from the client id, as a real server does.
func TestConfidentialClientMetadataFetched(t *testing.T) {
	var client *Client
	var key *ClientKey
	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	mux.HandleFunc("GET /client-metadata.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(client.Metadata(MetadataInfo{ClientName: "Test", ClientURI: app.URL, JWKSURI: app.URL + "/jwks.json"}))
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		b, _ := NewKeyRing(key).JWKS(time.Now())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	key, opt := confidential(t, app.URL+"/client-metadata.json", app.URL+"/callback")
	e := newEnv(t, opt)
	client = e.client
	_, g := e.signIn(t, "alice.test", e.alice.DID)
	checkGrant(t, e, g, e.alice)
	if as := e.srv.Assertions(); len(as) == 0 || as[0].KeyID != key.KeyID() {
		t.Errorf("assertions = %+v", as)
	}
}

func TestClientMetadataDocument(t *testing.T) {
	t.Run("confidential", func(t *testing.T) {
		const clientID = "https://app.example.com/@/client-metadata.json"
		_, opt := confidential(t, clientID, "https://app.example.com/@/callback")
		e := newEnv(t, opt)
		m := e.client.Metadata(MetadataInfo{ClientName: "App", ClientURI: "https://app.example.com", JWKSURI: "https://app.example.com/@/jwks.json"})
		b, _ := json.Marshal(m)
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		want := map[string]any{
			"client_id":                       clientID,
			"client_name":                     "App",
			"client_uri":                      "https://app.example.com",
			"application_type":                "web",
			"grant_types":                     []any{"authorization_code", "refresh_token"},
			"response_types":                  []any{"code"},
			"redirect_uris":                   []any{"https://app.example.com/@/callback"},
			"scope":                           testScope,
			"token_endpoint_auth_method":      "private_key_jwt",
			"token_endpoint_auth_signing_alg": "ES256",
			"jwks_uri":                        "https://app.example.com/@/jwks.json",
			"dpop_bound_access_tokens":        true,
		}
		compareDoc(t, doc, want)
		if !e.client.Confidential() {
			t.Error("Confidential() = false")
		}
	})
	t.Run("localhost", func(t *testing.T) {
		e := newEnv(t)
		m := e.client.Metadata(MetadataInfo{JWKSURI: "https://ignored.example.com/jwks.json"})
		b, _ := json.Marshal(m)
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		want := map[string]any{
			"client_id":                  e.cfg.ClientID,
			"application_type":           "web",
			"grant_types":                []any{"authorization_code", "refresh_token"},
			"response_types":             []any{"code"},
			"redirect_uris":              []any{"http://127.0.0.1:9000/@/callback"},
			"scope":                      testScope,
			"token_endpoint_auth_method": "none",
			"dpop_bound_access_tokens":   true,
		}
		compareDoc(t, doc, want)
		if e.client.Confidential() {
			t.Error("Confidential() = true")
		}
	})
}

func compareDoc(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		gb, _ := json.Marshal(got[k])
		wb, _ := json.Marshal(w)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s", k, gb, wb)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected member %s = %v", k, got[k])
		}
	}
}

func TestLocalhostClientID(t *testing.T) {
	id := LocalhostClientID("http://127.0.0.1:9000/@/callback", "atproto transition:generic")
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || u.Host != "localhost" || u.Path != "" || u.Port() != "" {
		t.Errorf("client id %s: origin must be exactly http://localhost with an empty path", id)
	}
	q := u.Query()
	if q.Get("redirect_uri") != "http://127.0.0.1:9000/@/callback" || q.Get("scope") != "atproto transition:generic" || len(q) != 2 {
		t.Errorf("client id %s: query %v", id, q)
	}
}

// refresh checks the account of g and refreshes, as sessions.Lifecycle does.
func refresh(ctx context.Context, c *Client, g *Grant, refreshToken string, key *dpop.Key) (*Grant, error) {
	acct, err := c.CheckAccount(ctx, g.DID, g.Issuer)
	if err != nil {
		return nil, err
	}
	return c.Refresh(ctx, acct, refreshToken, key)
}

// TestTokenLifetimeBounded: a server's expires_in is kept between a
// default for none and a day for huge ones (which would overflow a
// time.Duration into a token that expired long ago), and the grant
// carries the server's nonce for the session to keep.
func TestTokenLifetimeBounded(t *testing.T) {
	for _, tc := range []struct {
		expiresIn int64
		want      time.Duration
	}{
		{0, 300 * time.Second},
		{-5, 300 * time.Second},
		{60, time.Minute},
		{1 << 62, maxTokenLifetime},
		{int64(maxTokenLifetime/time.Second) + 1, maxTokenLifetime},
	} {
		e := newEnv(t)
		e.srv.SetTokenHook(func(r *atprototest.TokenResponse) { r.ExpiresIn = tc.expiresIn })
		req, code, iss := e.authorize(t, e.srv.URL, e.alice.DID)
		start := time.Now()
		g, err := e.client.Exchange(context.Background(), req, code, iss)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Expiry.Sub(start); got < tc.want-5*time.Second || got > tc.want+5*time.Second {
			t.Errorf("expires_in %d: the token lives %v, want %v", tc.expiresIn, got, tc.want)
		}
		if g.AuthServerNonce == "" || g.AuthServerNonce != e.cfg.Nonces.Get(g.Issuer) {
			t.Errorf("the grant's nonce %q, the server's latest %q", g.AuthServerNonce, e.cfg.Nonces.Get(g.Issuer))
		}
	}
}
