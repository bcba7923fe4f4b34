// Package oidctest runs a real OpenID Connect provider on loopback for
// tests: zitadel's OpenID-certified provider (github.com/zitadel/oidc/v3,
// package op) with discovery, a login page of its own, the authorization
// code flow with PKCE, refresh tokens, userinfo, revocation and a JWKS, on
// 127.0.0.1 with an http:// issuer. A test signs in through it with a
// headless browser (the form is plain HTML) or with SignIn (plain HTTP),
// then exchanges the code with the client under test.
//
// Tokens: an access token lives Config.AccessTokenLifetime; refresh tokens
// are issued when the scopes include offline_access (OpenID Connect Core
// §11), or always with Config.RefreshWithoutOfflineAccess (as Google does
// for access_type=offline), and rotate on every use, so a refresh token
// used twice is invalid_grant, as is a code used twice (whose first tokens
// are then revoked).
package oidctest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/net/html"
	"golang.org/x/text/language"
)

// Config is the provider's one client and its users.
type Config struct {
	ClientID     string
	ClientSecret string
	RedirectURIs []string
	Users        []User
	// AccessTokenLifetime is short in refresh tests; 5 minutes when zero.
	// zitadel answers expires_in in whole seconds, so give at least 2s.
	AccessTokenLifetime time.Duration
	// ClaimsInIDToken puts the email and profile claims in the ID token
	// even though an access token is issued too (Google's way). Without
	// it they are only at the userinfo endpoint, as OpenID Connect Core
	// §5.4 says.
	ClaimsInIDToken bool
	// RefreshWithoutOfflineAccess issues a refresh token on every code
	// exchange, offline_access or not.
	RefreshWithoutOfflineAccess bool
}

// User is an account that can sign in on the login page.
type User struct {
	Username      string
	Password      string
	Email         string
	EmailVerified bool
	// Subject is the sub of the user's tokens; "sub-" + Username when
	// empty.
	Subject string
	// Name is the name claim (scope profile); Username when empty.
	Name string
}

// Provider is a running provider.
type Provider struct {
	// Issuer is the provider's issuer, http://127.0.0.1:<port>, where
	// /.well-known/openid-configuration is.
	Issuer string

	store *storage
	op    *op.Provider
	srv   *http.Server
	login *template.Template

	mu       sync.Mutex
	tokens   map[string]int // token endpoint requests by grant_type
	requests map[string]int // requests by path
}

// Paths and names of the login page, for a browser test to fill it: the
// inputs #username and #password, the button #submit, an error in #error.
const (
	loginPath        = "/login"
	authRequestParam = "authRequestID"
)

// Start runs a provider on 127.0.0.1 until the test ends.
func Start(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := start(cfg)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

func start(cfg Config) (*Provider, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("ClientID and ClientSecret are required")
	}
	if len(cfg.RedirectURIs) == 0 {
		return nil, errors.New("RedirectURIs is empty: zitadel accepts only registered redirect URIs")
	}
	if cfg.AccessTokenLifetime == 0 {
		cfg.AccessTokenLifetime = 5 * time.Minute
	}
	seen := map[string]bool{}
	users := make([]User, len(cfg.Users))
	for i, u := range cfg.Users {
		if u.Username == "" {
			return nil, fmt.Errorf("user %d has no Username", i)
		}
		if u.Subject == "" {
			u.Subject = "sub-" + u.Username
		}
		if u.Name == "" {
			u.Name = u.Username
		}
		if seen[u.Username] || seen["sub:"+u.Subject] {
			return nil, fmt.Errorf("user %q: username or subject used twice", u.Username)
		}
		seen[u.Username], seen["sub:"+u.Subject] = true, true
		users[i] = u
	}
	cfg.Users = users

	store, err := newStorage(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Provider{
		Issuer:   "http://" + ln.Addr().String(),
		store:    store,
		login:    template.Must(template.New("login").Parse(loginPage)),
		tokens:   map[string]int{},
		requests: map[string]int{},
	}

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		ln.Close()
		return nil, err
	}
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
	}, store, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("zitadel provider: %w", err)
	}

	mux := http.NewServeMux()
	interceptor := op.NewIssuerInterceptor(p.op.IssuerFromRequest)
	mux.Handle(loginPath, interceptor.HandlerFunc(p.serveLogin))
	mux.Handle("/", p.op)
	p.srv = &http.Server{Handler: p.count(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// count counts requests by path, and the token endpoint's by grant_type.
// ParseForm leaves the form for zitadel, which parses it again as a no-op.
func (p *Provider) count(next http.Handler) http.Handler {
	tokenPath := p.op.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		grantType, isToken := "", r.URL.Path == tokenPath && r.Method == http.MethodPost
		if isToken && r.ParseForm() == nil {
			grantType = r.PostForm.Get("grant_type")
		}
		p.mu.Lock()
		p.requests[r.URL.Path]++
		if isToken {
			p.tokens[grantType]++
		}
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// Requests is how many requests path ("/userinfo", "/keys",
// "/.well-known/openid-configuration") had.
func (p *Provider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path]
}

// TokenRequests is how many requests the token endpoint had with
// grant_type ("authorization_code", "refresh_token"), answered or refused.
func (p *Provider) TokenRequests(grantType string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[grantType]
}

// RotateKey makes a new signing key, which signs every token from now on;
// the old one stays in the key set.
func (p *Provider) RotateKey(t testing.TB) {
	t.Helper()
	if err := p.store.rotateKey(); err != nil {
		t.Fatalf("oidctest: %v", err)
	}
}

// loginPage is the provider's sign-in form: a native form POST, so a
// browser test fills #username and #password and clicks #submit.
const loginPage = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in – oidctest</title></head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
<form id="login" method="post" action="` + loginPath + `">
<input type="hidden" name="` + authRequestParam + `" value="{{.ID}}">
<p><label for="username">Username</label> <input id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button id="submit" type="submit">Sign in</button></p>
</form>
</body>
</html>
`

func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Form.Get(authRequestParam)
	render := func(status int, msg string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = p.login.Execute(w, struct{ ID, Error string }{id, msg})
	}
	switch r.Method {
	case http.MethodGet:
		if !p.store.hasRequest(id) {
			http.Error(w, "unknown sign-in; start again from the application", http.StatusBadRequest)
			return
		}
		render(http.StatusOK, "")
	case http.MethodPost:
		if err := p.store.checkLogin(id, r.PostForm.Get("username"), r.PostForm.Get("password")); err != nil {
			render(http.StatusUnauthorized, err.Error())
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// maxHops bounds the redirects SignIn follows: authorize → login → (form)
// → callback → redirect_uri is four.
const maxHops = 10

// SignIn signs username in with plain HTTP, as a browser would: it follows
// authURL's redirects to the login page, fills and posts its form, and
// follows the redirects after it until one leaves the provider, which it
// returns without following: the client's redirect_uri with code and state
// (or error). client's cookie jar, if any, is used; its redirect policy is
// not.
func (p *Provider) SignIn(ctx context.Context, client *http.Client, authURL, username, password string) (string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	issuer, err := url.Parse(p.Issuer)
	if err != nil {
		return "", err
	}
	next, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("oidctest: authorization URL: %w", err)
	}
	var form url.Values
	posted := false
	for range maxHops {
		if next.Host != issuer.Host {
			return next.String(), nil
		}
		method, body := http.MethodGet, io.Reader(nil)
		if form != nil {
			method, body = http.MethodPost, strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, next.String(), body)
		if err != nil {
			return "", fmt.Errorf("oidctest: %w", err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		form = nil
		resp, err := c.Do(req)
		if err != nil {
			return "", fmt.Errorf("oidctest: sign-in: %w", err)
		}
		page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("oidctest: sign-in: %s %s: %w", method, next, err)
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return "", fmt.Errorf("oidctest: %s %s answered %d without a Location", method, next.Path, resp.StatusCode)
			}
			next = loc
		case next.Path == loginPath && !posted && resp.StatusCode == http.StatusOK:
			action, values, err := loginForm(page)
			if err != nil {
				return "", fmt.Errorf("oidctest: login page: %w", err)
			}
			values.Set("username", username)
			values.Set("password", password)
			if next, err = next.Parse(action); err != nil {
				return "", fmt.Errorf("oidctest: login form action %q: %w", action, err)
			}
			form, posted = values, true
		default:
			msg := pageError(page)
			return "", fmt.Errorf("oidctest: sign-in: %s %s answered %d: %s", method, next.Path, resp.StatusCode, msg)
		}
	}
	return "", fmt.Errorf("oidctest: sign-in: more than %d redirects", maxHops)
}

// loginForm reads the login page's form: its action and its inputs'
// names and values.
func loginForm(page []byte) (string, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return "", nil, err
	}
	var action string
	found := false
	values := url.Values{}
	var walk func(n *html.Node, inForm bool)
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				if found {
					return
				}
				found, inForm, action = true, true, attr(n, "action")
			case "input":
				if inForm && attr(n, "name") != "" {
					values.Set(attr(n, "name"), attr(n, "value"))
				}
			}
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch, inForm)
		}
	}
	walk(doc, false)
	if !found {
		return "", nil, errors.New("no form")
	}
	return action, values, nil
}

// pageError is what a page says went wrong: the login page's #error, or
// the start of its text.
func pageError(page []byte) string {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return "unreadable page"
	}
	var text strings.Builder
	var errText string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && attr(n, "id") == "error" {
			errText = strings.TrimSpace(textOf(n))
		}
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch)
		}
	}
	walk(doc)
	if errText != "" {
		return errText
	}
	return textutil.Clip(strings.Join(strings.Fields(text.String()), " "), 300)
}

func textOf(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
		b.WriteString(textOf(ch))
	}
	return b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// randomID is an unguessable identifier for requests and tokens.
func randomID() string { return rand.Text() }
