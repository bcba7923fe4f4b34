package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{
		Name: "google", ClientID: "id", ClientSecret: "secret",
		Issuer: "https://accounts.google.com", Scopes: []string{"openid", "email"},
		RedirectURI: testRedirect,
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "name is empty"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "client_id is empty"},
		{"no redirect", func(c *Config) { c.RedirectURI = "" }, "redirect_uri is empty"},
		{"relative redirect", func(c *Config) { c.RedirectURI = "/@/callback" }, "not an absolute URL"},
		{"issuer and one url", func(c *Config) { c.AuthorizeURL = "https://a/x" }, "set both authorize_url and token_url"},
		{"neither", func(c *Config) { c.Issuer = "" }, "set issuer, or both"},
		{"only authorize url", func(c *Config) { c.Issuer = ""; c.AuthorizeURL = "https://a/x" }, "set issuer, or both"},
		{"openid without issuer", func(c *Config) {
			c.Issuer, c.AuthorizeURL, c.TokenURL = "", "https://a/x", "https://a/t"
		}, `"openid" needs issuer`},
		{"plain http issuer", func(c *Config) { c.Issuer = "http://accounts.example.com" }, "only loopback hosts may use http"},
		{"issuer with query", func(c *Config) { c.Issuer = "https://a.example?x=1" }, "has a query"},
		{"issuer with fragment", func(c *Config) { c.Issuer = "https://a.example#x" }, "fragment"},
		{"credentials in url", func(c *Config) {
			c.Issuer, c.Scopes = "", []string{"user"}
			c.AuthorizeURL, c.TokenURL = "https://a/x", "https://id:pw@a/t"
		}, "credentials"},
		{"ftp userinfo", func(c *Config) { c.UserinfoURL = "ftp://a/u" }, "neither https nor http"},
		{"scope with space", func(c *Config) { c.Scopes = []string{"openid email"} }, "scope"},
		{"empty scope", func(c *Config) { c.Scopes = []string{""} }, "scope"},
		{"reserved param", func(c *Config) { c.AuthorizeParams = url.Values{"code_challenge_method": {"plain"}} }, "set by ioproxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"google", func(*Config) {}},
		{"loopback http", func(c *Config) { c.Issuer = "http://127.0.0.1:8080" }},
		{"localhost http", func(c *Config) { c.Issuer = "http://localhost:8080/realms/x" }},
		{"github", func(c *Config) {
			c.Issuer, c.Scopes = "", []string{"read:user", "user:email"}
			c.AuthorizeURL, c.TokenURL = "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token"
			c.UserinfoURL = "https://api.github.com/user"
		}},
		{"public client", func(c *Config) { c.ClientSecret = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			if _, err := New(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNewDoesNoIO: a provider that is down at start must not stop ioproxy.
func TestNewDoesNoIO(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.client(t)
	if n := f.hitsOf("/.well-known/openid-configuration"); n != 0 {
		t.Fatalf("New fetched discovery %d times", n)
	}
}

func TestAuthCodeURL(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	ctx := context.Background()
	c := f.client(t, func(c *Config) {
		c.AuthorizeParams = url.Values{"access_type": {"offline"}, "prompt": {"consent"}}
	})
	raw, err := c.AuthCodeURL(ctx, AuthRequest{State: "st", Nonce: testNonce, Verifier: testVerifier})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != f.issuer()+"/authorize" {
		t.Errorf("endpoint %s", got)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          testRedirect,
		"scope":                 "openid email profile",
		"state":                 "st",
		"nonce":                 testNonce,
		"code_challenge_method": "S256",
		"code_challenge":        codeChallenge(testVerifier),
		"access_type":           "offline",
		"prompt":                "consent",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// RFC 7636 appendix B.
	if got := codeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("codeChallenge = %s", got)
	}

	// Without openid: no nonce, even when given; the endpoint's own query stays.
	plain, err := New(Config{
		Name: "github", ClientID: "id", ClientSecret: "s", RedirectURI: testRedirect,
		AuthorizeURL: "https://github.com/login/oauth/authorize?allow_signup=false",
		TokenURL:     "https://github.com/login/oauth/access_token",
		Scopes:       []string{"read:user"},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err = plain.AuthCodeURL(ctx, AuthRequest{State: "st", Nonce: "n", Verifier: testVerifier})
	if err != nil {
		t.Fatal(err)
	}
	u, _ = url.Parse(raw)
	if u.Query().Has("nonce") || u.Query().Get("allow_signup") != "false" || u.Query().Get("scope") != "read:user" {
		t.Errorf("plain OAuth URL %s", raw)
	}

	for _, tc := range []struct {
		name string
		req  AuthRequest
		want string
	}{
		{"no state", AuthRequest{Nonce: "n", Verifier: testVerifier}, "state is empty"},
		{"no nonce", AuthRequest{State: "s", Verifier: testVerifier}, "nonce is empty"},
		{"short verifier", AuthRequest{State: "s", Nonce: "n", Verifier: "short"}, "43 to 128"},
		{"bad verifier", AuthRequest{State: "s", Nonce: "n", Verifier: testVerifier[:42] + "+"}, "outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.AuthCodeURL(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AuthCodeURL: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExchange(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	c := f.client(t)
	g, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	want := Grant{
		AccessToken: "at-1", RefreshToken: "rt-1", TokenType: "Bearer", Scope: "openid email profile",
		Expiry: now.Add(time.Hour),
		Identity: Identity{
			Subject: testSubject, Email: "alice@example.com", EmailVerified: true, Name: "Alice", Issuer: f.issuer(),
		},
	}
	if *g != want {
		t.Errorf("grant\n%+v, want\n%+v", *g, want)
	}
	form := f.lastForm()
	for k, v := range map[string]string{
		"grant_type": "authorization_code", "code": testCode, "redirect_uri": testRedirect, "code_verifier": testVerifier,
	} {
		if form.Get(k) != v {
			t.Errorf("token request %s = %q, want %q", k, form.Get(k), v)
		}
	}
	if form.Has("client_secret") || form.Has("client_id") {
		t.Errorf("client_secret_basic sent the credentials in the form too: %v", form)
	}
	// RFC 6749 §2.3.1: form-encoded, then Basic.
	if got := f.lastBasic(); got != [2]string{testClientID, url.QueryEscape(testClientSecret)} {
		t.Errorf("basic auth %q", got)
	}
	// The ID token had email and name: no userinfo call.
	if n := f.hitsOf("/userinfo"); n != 0 {
		t.Errorf("userinfo called %d times", n)
	}
	// Discovery and keys are cached.
	if _, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce); err != nil {
		t.Fatal(err)
	}
	if d, k := f.hitsOf("/.well-known/openid-configuration"), f.hitsOf("/jwks"); d != 1 || k != 1 {
		t.Errorf("discovery fetched %d times, keys %d times; want once each", d, k)
	}
}

func TestExchangeClientSecretPost(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) {
		f.discovery = map[string]any{"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt"}}
	})
	c := f.client(t)
	if _, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce); err != nil {
		t.Fatal(err)
	}
	form := f.lastForm()
	if form.Get("client_id") != testClientID || form.Get("client_secret") != testClientSecret {
		t.Errorf("client_secret_post form %v", form)
	}
	if got := f.lastBasic(); got != [2]string{} {
		t.Errorf("basic auth sent too: %q", got)
	}
}

// TestExchangeUserinfoCompletes: a provider that keeps email and name out
// of the ID token (OpenID Connect Core §5.4) gives them at userinfo.
func TestExchangeUserinfoCompletes(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) {
		f.claims = func(c map[string]any) { delete(c, "email"); delete(c, "email_verified"); delete(c, "name") }
	})
	c := f.client(t)
	g, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Subject: testSubject, Email: "info@example.com", EmailVerified: true, Name: "Info Name", Issuer: f.issuer()}
	if g.Identity != want {
		t.Errorf("identity %+v, want %+v", g.Identity, want)
	}
	if got := f.lastBearer(); got != "Bearer at-1" {
		t.Errorf("userinfo Authorization %q", got)
	}

	f.set(func(f *fakeIssuer) { f.userinfo = map[string]any{"sub": "someone-else", "email": "x@example.com"} })
	_, err = c.Exchange(context.Background(), testCode, testVerifier, testNonce)
	if !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), "sub") {
		t.Fatalf("userinfo for another sub: %v", err)
	}
}

// TestPlainOAuth: GitHub's shape, no OpenID: the identity comes from the
// userinfo URL, whose numeric id is the subject.
func TestPlainOAuth(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) {
		f.userinfo = map[string]any{"id": 12345678901234567, "login": "octocat", "email": nil}
	})
	f.set(func(f *fakeIssuer) {
		f.token = func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"access_token": "gho_x", "token_type": "bearer", "scope": "read:user"})
		}
	})
	cfg := Config{
		Name: "github", ClientID: testClientID, ClientSecret: testClientSecret, RedirectURI: testRedirect,
		AuthorizeURL: f.issuer() + "/authorize", TokenURL: f.issuer() + "/token", UserinfoURL: f.issuer() + "/userinfo",
		Scopes: []string{"read:user"}, Now: f.clock.Now,
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.OpenID() {
		t.Fatal("OpenID without openid scope")
	}
	g, err := c.Exchange(context.Background(), testCode, testVerifier, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Subject: "12345678901234567", Name: "octocat", Issuer: f.issuer()}
	if g.Identity != want || g.TokenType != "Bearer" || !g.Expiry.IsZero() || g.RefreshToken != "" {
		t.Errorf("grant %+v, want identity %+v", g, want)
	}
	if n := f.hitsOf("/.well-known/openid-configuration"); n != 0 {
		t.Errorf("discovery fetched without issuer")
	}

	// Without a userinfo URL the identity is empty.
	cfg.UserinfoURL = ""
	c, _ = New(cfg)
	g, err = c.Exchange(context.Background(), testCode, testVerifier, "")
	if err != nil || g.Identity != (Identity{}) {
		t.Fatalf("no userinfo: %+v, %v", g, err)
	}

	// GitHub answers a dead code with HTTP 200.
	f.set(func(f *fakeIssuer) {
		f.token = func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		}
	})
	_, err = c.Exchange(context.Background(), testCode, testVerifier, "")
	if !errors.Is(err, ErrInvalidGrant) || !strings.Contains(err.Error(), "incorrect or expired") {
		t.Fatalf("bad_verification_code: %v", err)
	}
}

func TestTokenAnswerRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
		is     error
	}{
		{"dpop token", 200, `{"access_token":"a","token_type":"DPoP"}`, `token_type is "DPoP"`, nil},
		{"mac token", 200, `{"access_token":"a","token_type":"mac"}`, "only Bearer", nil},
		{"no token type", 200, `{"access_token":"a"}`, "no token_type", nil},
		{"no access token", 200, `{"token_type":"Bearer"}`, "no access_token", nil},
		{"negative expiry", 200, `{"access_token":"a","token_type":"Bearer","expires_in":-5}`, "negative", nil},
		{"html", 200, `<html>captive portal</html>`, "not a JSON token answer", nil},
		{"invalid_client", 401, `{"error":"invalid_client","error_description":"Unauthorized"}`, `HTTP 401 invalid_client: "Unauthorized"`, nil},
		{"invalid_grant", 400, `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`, "expired or revoked", ErrInvalidGrant},
		{"503 html", 503, `<html>upstream down</html>`, "HTTP 503 (text/plain", ErrUnavailable},
		{"429", 429, `{"error":"slow_down"}`, "HTTP 429 slow_down", ErrUnavailable},
		{"temporarily_unavailable", 400, `{"error":"temporarily_unavailable"}`, "temporarily_unavailable", ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
			f.set(func(f *fakeIssuer) {
				f.token = func(w http.ResponseWriter, r *http.Request) {
					ct := "application/json"
					if strings.HasPrefix(tc.body, "<") {
						ct = "text/plain; charset=utf-8"
					}
					w.Header().Set("Content-Type", ct)
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(tc.body))
				}
			})
			c := f.client(t)
			_, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Exchange: %v, want %q", err, tc.want)
			}
			for _, sentinel := range []error{ErrInvalidGrant, ErrUnavailable} {
				if errors.Is(err, sentinel) != (sentinel == tc.is) {
					t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, !(sentinel == tc.is))
				}
			}
			noSecrets(t, err)
		})
	}
}

// noSecrets: no error says what was sent.
func noSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{testClientSecret, url.QueryEscape(testClientSecret), testCode, testVerifier, "rt-old", "at-1"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q has %q in it", err, s)
		}
	}
}

func TestErrorAnswerClipped(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) {
		f.token = func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusBadRequest, map[string]any{
				"error":             "invalid_request\nforged log line",
				"error_description": strings.Repeat("x", 5000),
			})
		}
	})
	_, err := f.client(t).Exchange(context.Background(), testCode, testVerifier, testNonce)
	var oe *OAuthError
	if !errors.As(err, &oe) {
		t.Fatalf("not an OAuthError: %v", err)
	}
	if strings.ContainsAny(oe.Error(), "\n\r") || len(oe.Description) > maxErrorDescription+len("…") {
		t.Errorf("error not cleaned: %q", oe.Error())
	}
	if oe.Provider != "fake" || oe.Operation != "code exchange" || oe.Status != 400 {
		t.Errorf("error fields %+v", oe)
	}
}

func TestOversizedAnswers(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", maxTokenAnswer) + `","token_type":"Bearer"}`
	t.Run("token", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) {
			f.token = func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(big)) }
		})
		_, err := f.client(t).Exchange(context.Background(), testCode, testVerifier, testNonce)
		if !errors.Is(err, safehttp.ErrBodyTooLarge) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("oversized token answer: %v", err)
		}
	})
	t.Run("discovery", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) { f.discovery = map[string]any{"padding": strings.Repeat("p", maxDocument)} })
		_, err := f.client(t).AuthCodeURL(context.Background(), AuthRequest{State: "s", Nonce: "n", Verifier: testVerifier})
		if !errors.Is(err, safehttp.ErrBodyTooLarge) {
			t.Fatalf("oversized discovery: %v", err)
		}
	})
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	t.Run("keeps the old refresh token", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if err != nil {
			t.Fatal(err)
		}
		if g.RefreshToken != "rt-old" || g.AccessToken != "at-2" || g.Identity.Subject != testSubject {
			t.Errorf("grant %+v", g)
		}
		form := f.lastForm()
		if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != "rt-old" {
			t.Errorf("refresh form %v", form)
		}
	})
	t.Run("rotated refresh token", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) {
			f.token = func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, map[string]any{"access_token": "at-3", "token_type": "Bearer", "refresh_token": "rt-new", "expires_in": "120"})
			}
		})
		g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if err != nil {
			t.Fatal(err)
		}
		if g.RefreshToken != "rt-new" || !g.Expiry.Equal(f.clock.Now().Add(2*time.Minute)) || g.Identity != (Identity{}) || g.Scope != "" {
			t.Errorf("grant %+v", g)
		}
	})
	t.Run("invalid_grant", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) {
			f.token = func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
			}
		})
		_, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if !errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("invalid_grant: %v", err)
		}
		noSecrets(t, err)
	})
	t.Run("5xx passes", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) {
			f.token = func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "server_error"})
			}
		})
		_, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("500: %v", err)
		}
	})
	t.Run("down passes", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		c := f.client(t)
		if _, err := c.RefreshSubject(ctx, "rt-old", testSubject); err != nil { // discovery cached
			t.Fatal(err)
		}
		f.srv.Close()
		_, err := c.RefreshSubject(ctx, "rt-old", testSubject)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("closed server: %v", err)
		}
		noSecrets(t, err)
	})
	t.Run("id_token of another subject", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) { f.claims = func(c map[string]any) { c["sub"] = "user-2" } })
		c := f.client(t)
		_, err := c.RefreshSubject(ctx, "rt-old", testSubject)
		if !errors.Is(err, ErrSubjectChanged) || !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("subject changed: %v", err)
		}
		if g, err := c.RefreshSubject(ctx, "rt-old", "user-2"); err != nil || g.Identity.Subject != "user-2" {
			t.Fatalf("same subject: %+v, %v", g, err)
		}
	})
}

// TestRefreshIDToken: what a refresh does with an ID token that fails
// its checks, and with one that cannot be checked now.
func TestRefreshIDToken(t *testing.T) {
	ctx := context.Background()
	// An ID token that fails its checks ends the session (as the server
	// adapts ErrInvalidGrant): the answer cannot be trusted to be the
	// session's account.
	t.Run("id_token refused", func(t *testing.T) {
		for name, edit := range map[string]func(map[string]any){
			"other audience": func(c map[string]any) { c["aud"] = "another-client" },
			"expired":        func(c map[string]any) { c["exp"] = c["iat"].(int64) - 3600 },
			"other issuer":   func(c map[string]any) { c["iss"] = "https://evil.example" },
		} {
			t.Run(name, func(t *testing.T) {
				f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
				f.set(func(f *fakeIssuer) { f.claims = edit })
				g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
				if !errors.Is(err, ErrIDToken) || !errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrUnavailable) || g != nil {
					t.Fatalf("bad id_token on refresh: %+v, %v; want an error that is ErrIDToken and ErrInvalidGrant", g, err)
				}
				noSecrets(t, err)
			})
		}
	})
	// An ID token that cannot be checked now keeps the answer, without
	// an identity: the server may have rotated the refresh token.
	t.Run("id_token not checkable", func(t *testing.T) {
		for name, setup := range map[string]func(f *fakeIssuer){
			"key set down": func(f *fakeIssuer) {
				f.handle("/jwks-down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
				f.set(func(f *fakeIssuer) { f.discovery = map[string]any{"jwks_uri": f.issuer() + "/jwks-down"} })
			},
			"key not yet published": func(f *fakeIssuer) {
				f.set(func(f *fakeIssuer) { f.signer = newTestKey(t, 1, "k2") })
			},
		} {
			t.Run(name, func(t *testing.T) {
				f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
				setup(f)
				g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
				if err != nil || g.AccessToken != "at-2" || g.RefreshToken != "rt-old" || g.Identity != (Identity{}) || !g.IdentityUnchecked {
					t.Fatalf("RefreshSubject: %+v, %v; want the answer without an identity, marked unchecked", g, err)
				}
			})
		}
	})
	// A kid-less key that the issuer rotated: no kid says the set held
	// lacks it, so the failed signature makes the set be fetched again
	// (found in review: the session ended instead).
	t.Run("kid-less rotation", func(t *testing.T) {
		old, next := newTestKey(t, 0, ""), newTestKey(t, 1, "")
		f := newFakeIssuer(t, old)
		c := f.client(t)
		if _, err := c.RefreshSubject(ctx, "rt-old", testSubject); err != nil {
			t.Fatalf("first refresh: %v", err)
		}
		f.set(func(f *fakeIssuer) { f.published, f.signer = []testKey{next}, next })
		f.clock.Advance(keysRefetchAfter)
		g, err := c.RefreshSubject(ctx, "rt-old", testSubject)
		if err != nil || g.Identity.Subject != testSubject || g.IdentityUnchecked {
			t.Fatalf("refresh after a kid-less rotation: %+v, %v; want the new key fetched and the token checked", g, err)
		}
	})
	// A refused answer's rotated refresh token is revoked: it must not
	// outlive the session that ends.
	t.Run("refused answer's refresh token revoked", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) {
			f.claims = func(c map[string]any) { c["aud"] = "another-client" }
			f.token = func(w http.ResponseWriter, r *http.Request) {
				ans := f.tokenAnswer(r.PostForm)
				ans["refresh_token"] = "rt-rotated"
				writeJSON(w, http.StatusOK, ans)
			}
		})
		if _, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("refused answer: %v", err)
		}
		if f.hitsOf("/revoke") != 1 || f.lastForm().Get("token") != "rt-rotated" {
			t.Errorf("revocations %d, last token %q; want the rotated token revoked", f.hitsOf("/revoke"), f.lastForm().Get("token"))
		}
	})
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	c := f.client(t)
	if err := c.Revoke(ctx, "rt-old"); err != nil {
		t.Fatal(err)
	}
	if f.hitsOf("/revoke") != 1 || f.lastForm().Get("token") != "rt-old" || f.lastBasic()[0] != testClientID {
		t.Errorf("revocation request %v %v", f.lastForm(), f.lastBasic())
	}
	f.set(func(f *fakeIssuer) { f.revokeCode, f.revokeError = http.StatusBadRequest, "invalid_token" })
	if err := c.Revoke(ctx, "rt-old"); err != nil {
		t.Errorf("already revoked: %v", err)
	}
	f.set(func(f *fakeIssuer) { f.revokeCode, f.revokeError = http.StatusServiceUnavailable, "" })
	if err := c.Revoke(ctx, "rt-old"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("503: %v", err)
	}

	// No revocation endpoint: nothing to do, nothing sent.
	g := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	g.set(func(g *fakeIssuer) { g.discovery = map[string]any{"revocation_endpoint": nil} })
	if err := g.client(t).Revoke(ctx, "rt-old"); err != nil || g.hitsOf("/revoke") != 0 {
		t.Errorf("no endpoint: %v, %d requests", err, g.hitsOf("/revoke"))
	}
}

// TestDiscoveryDownAtFirstUse: a provider down when first needed is asked
// again on the next call, and not before an hour once it answered.
func TestDiscoveryDownAtFirstUse(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) { f.discoveryStatus = http.StatusServiceUnavailable })
	c := f.client(t)
	req := AuthRequest{State: "s", Nonce: "n", Verifier: testVerifier}
	_, err := c.AuthCodeURL(ctx, req)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("down: %v", err)
	}
	_, err = c.AuthCodeURL(ctx, req)
	if !errors.Is(err, ErrUnavailable) || f.hitsOf("/.well-known/openid-configuration") != 2 {
		t.Fatalf("down again: %v after %d fetches", err, f.hitsOf("/.well-known/openid-configuration"))
	}
	f.set(func(f *fakeIssuer) { f.discoveryStatus = 0 })
	if _, err := c.AuthCodeURL(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthCodeURL(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOf("/.well-known/openid-configuration"); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}

	// After an hour it is fetched again; a failure keeps the old one, and
	// is not retried for a minute.
	f.clock.Advance(discoveryMaxAge)
	f.set(func(f *fakeIssuer) { f.discoveryStatus = http.StatusBadGateway })
	if _, err := c.AuthCodeURL(ctx, req); err != nil {
		t.Fatalf("stale discovery not used: %v", err)
	}
	if _, err := c.AuthCodeURL(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOf("/.well-known/openid-configuration"); n != 4 {
		t.Fatalf("%d fetches, want 4", n)
	}
	f.clock.Advance(discoveryRetryAfter)
	f.set(func(f *fakeIssuer) { f.discoveryStatus = 0 })
	if _, err := c.AuthCodeURL(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOf("/.well-known/openid-configuration"); n != 5 {
		t.Fatalf("%d fetches, want 5", n)
	}
}

// TestDiscoveryRefused: a document that names another issuer is someone
// else's (OpenID Connect Discovery §4.3).
func TestDiscoveryRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		patch map[string]any
		want  string
	}{
		{"other issuer", map[string]any{"issuer": "https://evil.example"}, "must be the same"},
		{"trailing slash", map[string]any{"issuer": "ISSUER/"}, "must be the same"},
		{"no token endpoint", map[string]any{"token_endpoint": nil}, "no token_endpoint"},
		{"no jwks", map[string]any{"jwks_uri": nil}, "no jwks_uri"},
		{"http endpoint", map[string]any{"token_endpoint": "http://evil.example/token"}, "only loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
			for k, v := range tc.patch {
				if s, ok := v.(string); ok {
					tc.patch[k] = strings.Replace(s, "ISSUER", f.issuer(), 1)
				}
			}
			f.set(func(f *fakeIssuer) { f.discovery = tc.patch })
			_, err := f.client(t).AuthCodeURL(context.Background(), AuthRequest{State: "s", Nonce: "n", Verifier: testVerifier})
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("AuthCodeURL: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestConcurrentFirstUse: callers that arrive while discovery is under way
// share its fetch. Discovery answers only once every caller has looked
// at the cache (each reads the clock there, under its lock, then joins
// the fetch under way or starts one), so a caller that started its own
// fetch would show as a second one.
func TestConcurrentFirstUse(t *testing.T) {
	const callers = 8
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	block := make(chan struct{})
	f.set(func(f *fakeIssuer) { f.discoveryBlock = block })
	var looked atomic.Int64
	c := f.client(t, func(cfg *Config) {
		cfg.Now = func() time.Time {
			looked.Add(1)
			return f.clock.Now()
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce)
			errs <- err
		})
	}
	// Until discovery answers, the clock is read only by callers looking
	// at the cache.
	deadline := time.Now().Add(5 * time.Second)
	for looked.Load() < callers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := f.hitsOf("/.well-known/openid-configuration"); d != 1 {
		t.Errorf("discovery fetched %d times for %d callers at once, want 1", d, callers)
	}
	// The key set, fetched once discovery answered, was shared too.
	if k := f.hitsOf("/jwks"); k != 1 {
		t.Errorf("key set fetched %d times, want 1", k)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	block := make(chan struct{})
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) { f.discoveryBlock = block })
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.client(t).AuthCodeURL(ctx, AuthRequest{State: "s", Nonce: "n", Verifier: testVerifier})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("AuthCodeURL: %v", err)
	}
}

// An issuer beside the two URLs (IO's configurations, the issuer taken
// from the authorize URL's origin): the URLs written win over
// discovery's, and discovery still gives the keys, so an ID token still
// verifies.
func TestIssuerWithWrittenEndpoints(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.handle("/written/token", f.serveToken)
	c := f.client(t, func(c *Config) {
		c.AuthorizeURL = "https://login.example.net/authorize"
		c.TokenURL = f.issuer() + "/written/token"
	})
	raw, err := c.AuthCodeURL(t.Context(), AuthRequest{State: "st", Nonce: testNonce, Verifier: testVerifier})
	if err != nil || !strings.HasPrefix(raw, "https://login.example.net/authorize?") {
		t.Fatalf("AuthCodeURL = %q, %v", raw, err)
	}
	g, err := c.Exchange(t.Context(), "code", testVerifier, testNonce)
	if err != nil {
		t.Fatalf("Exchange through the written token URL: %v", err)
	}
	if g.Identity.Subject == "" || f.hitsOf("/written/token") != 1 || f.hitsOf("/token") != 0 {
		t.Fatalf("identity %+v; written token URL hit %d, discovered %d", g.Identity, f.hitsOf("/written/token"), f.hitsOf("/token"))
	}
}
