package oidctest

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/provider"
)

const (
	clientID     = "ioproxy-test"
	clientSecret = "s3cret+/:with odd chars"
	// redirectURI is never dialled: SignIn stops at the redirect to it.
	redirectURI = "http://127.0.0.1:1/@/callback"
)

var alice = User{Username: "alice", Password: "correct horse", Email: "alice@example.com", EmailVerified: true, Subject: "248289761001", Name: "Alice Liddell"}

func startProvider(t *testing.T, edit func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURIs: []string{redirectURI},
		Users: []User{alice, {Username: "bob", Password: "hunter2", Email: "bob@example.com"}},
	}
	if edit != nil {
		edit(&cfg)
	}
	return Start(t, cfg)
}

func newClient(t *testing.T, p *Provider, scopes ...string) *provider.Client {
	t.Helper()
	c, err := provider.New(provider.Config{
		Name: "oidctest", ClientID: clientID, ClientSecret: clientSecret,
		Issuer: p.Issuer, Scopes: scopes, RedirectURI: redirectURI,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signIn is a sign-in up to the callback: its code, and what the client
// kept for it.
type signIn struct {
	code  string
	req   provider.AuthRequest
	state string
}

func doSignIn(t *testing.T, p *Provider, c *provider.Client, username, password string) signIn {
	t.Helper()
	req := provider.AuthRequest{State: rand.Text(), Nonce: rand.Text(), Verifier: rand.Text() + rand.Text()}
	authURL, err := c.AuthCodeURL(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	cb, err := p.SignIn(context.Background(), &http.Client{Jar: jar, Timeout: 10 * time.Second}, authURL, username, password)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != redirectURI {
		t.Fatalf("callback %s, want %s", cb, redirectURI)
	}
	q := u.Query()
	if q.Get("state") != req.State || q.Get("code") == "" || q.Has("error") {
		t.Fatalf("callback %s", cb)
	}
	return signIn{code: q.Get("code"), req: req, state: q.Get("state")}
}

func (s signIn) exchange(c *provider.Client) (*provider.Grant, error) {
	return c.Exchange(context.Background(), s.code, s.req.Verifier, s.req.Nonce)
}

// TestSignInAndExchange: the provider package against a real OpenID
// provider: the code is exchanged, the ID token verifies, and the identity
// is the user's, whether the provider puts the email in the ID token or
// only at userinfo.
func TestSignInAndExchange(t *testing.T) {
	for _, inIDToken := range []bool{false, true} {
		t.Run(map[bool]string{false: "claims at userinfo", true: "claims in the ID token"}[inIDToken], func(t *testing.T) {
			p := startProvider(t, func(c *Config) { c.ClaimsInIDToken = inIDToken })
			c := newClient(t, p, "openid", "email", "profile", "offline_access")
			before := time.Now()
			g, err := doSignIn(t, p, c, "alice", alice.Password).exchange(c)
			if err != nil {
				t.Fatal(err)
			}
			want := provider.Identity{Subject: alice.Subject, Email: alice.Email, EmailVerified: true, Name: alice.Name, Issuer: p.Issuer}
			if g.Identity != want {
				t.Errorf("identity %+v, want %+v", g.Identity, want)
			}
			if g.AccessToken == "" || g.RefreshToken == "" || g.TokenType != "Bearer" {
				t.Errorf("grant %+v", g)
			}
			if g.Expiry.Before(before.Add(4*time.Minute)) || g.Expiry.After(time.Now().Add(5*time.Minute)) {
				t.Errorf("expiry %s, want about 5 minutes from now", g.Expiry)
			}
			if n := p.TokenRequests("authorization_code"); n != 1 {
				t.Errorf("%d code exchanges", n)
			}
			if n, want := p.Requests("/userinfo"), map[bool]int{false: 1, true: 0}[inIDToken]; n != want {
				t.Errorf("%d userinfo requests, want %d", n, want)
			}
		})
	}
}

// TestUnverifiedEmail: email_verified false reaches the identity as false.
func TestUnverifiedEmail(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid", "email")
	g, err := doSignIn(t, p, c, "bob", "hunter2").exchange(c)
	if err != nil {
		t.Fatal(err)
	}
	if g.Identity.Subject != "sub-bob" || g.Identity.Email != "bob@example.com" || g.Identity.EmailVerified {
		t.Errorf("identity %+v", g.Identity)
	}
	if g.RefreshToken != "" {
		t.Errorf("a refresh token without offline_access")
	}
}

func TestReplayedCode(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid", "email", "offline_access")
	s := doSignIn(t, p, c, "alice", alice.Password)
	g, err := s.exchange(c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.exchange(c)
	if !errors.Is(err, provider.ErrInvalidGrant) {
		t.Fatalf("replayed code: %v", err)
	}
	// RFC 6749 §4.1.2: the replay revoked what the code gave.
	if _, err := c.RefreshSubject(context.Background(), g.RefreshToken, ""); !errors.Is(err, provider.ErrInvalidGrant) {
		t.Fatalf("refresh after a replay: %v", err)
	}
	if n := p.TokenRequests("authorization_code"); n != 2 {
		t.Errorf("%d code exchanges", n)
	}
}

// TestPKCEEnforced: a code exchanged with another verifier is refused.
func TestPKCEEnforced(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid")
	s := doSignIn(t, p, c, "alice", alice.Password)
	_, err := c.Exchange(context.Background(), s.code, strings.Repeat("x", 43), s.req.Nonce)
	if !errors.Is(err, provider.ErrInvalidGrant) {
		t.Fatalf("wrong verifier: %v", err)
	}
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	p := startProvider(t, nil)
	c := newClient(t, p, "openid", "email", "offline_access")
	g, err := doSignIn(t, p, c, "alice", alice.Password).exchange(c)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.RefreshSubject(ctx, g.RefreshToken, g.Identity.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if r.AccessToken == g.AccessToken || r.RefreshToken == "" || r.RefreshToken == g.RefreshToken {
		t.Errorf("refresh did not rotate: %+v", r)
	}
	// zitadel sends an ID token on refresh too; it verified, for alice.
	if r.Identity.Subject != alice.Subject || r.Identity.Issuer != p.Issuer {
		t.Errorf("refresh identity %+v", r.Identity)
	}
	if code := userinfoStatus(t, p, r.AccessToken); code != http.StatusOK {
		t.Errorf("new access token: userinfo answered %d", code)
	}
	// The refresh token was rotated: the old one is dead.
	if _, err := c.RefreshSubject(ctx, g.RefreshToken, ""); !errors.Is(err, provider.ErrInvalidGrant) {
		t.Fatalf("reused refresh token: %v", err)
	}
	// Revoked, the new one is dead too.
	if err := c.Revoke(ctx, r.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RefreshSubject(ctx, r.RefreshToken, ""); !errors.Is(err, provider.ErrInvalidGrant) {
		t.Fatalf("revoked refresh token: %v", err)
	}
}

// TestExpiredAccessTokenRefreshed: once the access token has expired (the
// userinfo endpoint refuses it), a refresh gets one that works.
func TestExpiredAccessTokenRefreshed(t *testing.T) {
	const lifetime = 2 * time.Second
	p := startProvider(t, func(c *Config) { c.AccessTokenLifetime = lifetime; c.RefreshWithoutOfflineAccess = true })
	c := newClient(t, p, "openid", "email")
	g, err := doSignIn(t, p, c, "alice", alice.Password).exchange(c)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	if g.RefreshToken == "" || g.Expiry.After(issued.Add(lifetime)) {
		t.Fatalf("grant %+v", g)
	}
	if code := userinfoStatus(t, p, g.AccessToken); code != http.StatusOK {
		t.Fatalf("fresh access token: userinfo answered %d", code)
	}
	time.Sleep(time.Until(issued.Add(lifetime + 100*time.Millisecond)))
	if time.Now().Before(g.Expiry) {
		t.Fatalf("Expiry %s has not passed", g.Expiry)
	}
	if code := userinfoStatus(t, p, g.AccessToken); code == http.StatusOK {
		t.Fatal("expired access token still accepted")
	}
	r, err := c.RefreshSubject(context.Background(), g.RefreshToken, "")
	if err != nil {
		t.Fatal(err)
	}
	if code := userinfoStatus(t, p, r.AccessToken); code != http.StatusOK {
		t.Errorf("refreshed access token: userinfo answered %d", code)
	}
	if n := p.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("%d refreshes, want exactly 1", n)
	}
}

// TestKeyRotation: tokens signed with a new key verify after the client
// refetches the key set.
func TestKeyRotation(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid")
	if _, err := doSignIn(t, p, c, "alice", alice.Password).exchange(c); err != nil {
		t.Fatal(err)
	}
	p.RotateKey(t)
	if _, err := doSignIn(t, p, c, "alice", alice.Password).exchange(c); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := p.Requests("/keys"); n != 2 {
		t.Errorf("key set fetched %d times, want 2", n)
	}
}

func TestSignInRefused(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid")
	authURL, err := c.AuthCodeURL(context.Background(), provider.AuthRequest{State: "s", Nonce: "n", Verifier: rand.Text() + rand.Text()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.SignIn(context.Background(), http.DefaultClient, authURL, "alice", "wrong")
	if err == nil || !strings.Contains(err.Error(), "wrong username or password") {
		t.Fatalf("wrong password: %v", err)
	}

	// A redirect URI that is not registered never reaches the login page.
	other, err := provider.New(provider.Config{
		Name: "oidctest", ClientID: clientID, ClientSecret: clientSecret, Issuer: p.Issuer,
		Scopes: []string{"openid"}, RedirectURI: "http://127.0.0.1:2/elsewhere",
	})
	if err != nil {
		t.Fatal(err)
	}
	authURL, err = other.AuthCodeURL(context.Background(), provider.AuthRequest{State: "s", Nonce: "n", Verifier: rand.Text() + rand.Text()})
	if err != nil {
		t.Fatal(err)
	}
	if cb, err := p.SignIn(context.Background(), http.DefaultClient, authURL, "alice", alice.Password); err == nil {
		t.Fatalf("unregistered redirect_uri signed in: %s", cb)
	}
}

// TestLoginPage: the form a browser test fills.
func TestLoginPage(t *testing.T) {
	p := startProvider(t, nil)
	c := newClient(t, p, "openid")
	authURL, err := c.AuthCodeURL(context.Background(), provider.AuthRequest{State: "s", Nonce: "n", Verifier: rand.Text() + rand.Text()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(authURL) // follows the redirect to the login page
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), p.Issuer+loginPath+"?") {
		t.Fatalf("login page: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	for _, want := range []string{`id="username"`, `name="username"`, `id="password"`, `type="password"`, `id="submit"`, `type="submit"`, `name="` + authRequestParam + `"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	action, values, err := loginForm(body)
	if err != nil || action != loginPath || values.Get(authRequestParam) == "" {
		t.Errorf("form %q %v %v", action, values, err)
	}
	resp, err = http.Get(p.Issuer + loginPath + "?" + authRequestParam + "=unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown sign-in: %d", resp.StatusCode)
	}
}

func userinfoStatus(t *testing.T, p *Provider, accessToken string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.Issuer+"/userinfo", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
