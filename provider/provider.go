// Package provider is an OAuth 2.0 authorization-code client (RFC 6749 with
// PKCE, RFC 7636) for the sign-in providers that are not AT Protocol:
// Google, GitHub, any OpenID Connect issuer. With "openid" among the scopes
// it is an OpenID Connect relying party: the ID token of every code exchange
// is required and verified against the issuer's published keys, so the
// identity a session gets is the one the issuer signed, not one a network
// path could have changed.
//
// A Client does no I/O when it is made: discovery and the key set are
// fetched on first use and cached, so a provider that is down when ioproxy
// starts costs the sign-ins through it, not the start.
package provider

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/ioproxy/ioproxy/internal/endpoint"
)

// Config is one provider's part of ioproxy's configuration.
type Config struct {
	// Name is the provider's name in ioproxy's config ("google"): every
	// error and log line names it, since an operator may configure several.
	Name         string
	ClientID     string
	ClientSecret string

	// Either Issuer, whose OpenID Connect discovery document
	// (<issuer>/.well-known/openid-configuration) gives the endpoints and
	// the key set, or both AuthorizeURL and TokenURL (plain OAuth 2.0
	// providers such as GitHub). OpenID needs Issuer: without it there is
	// no key set to verify an ID token with.
	Issuer       string
	AuthorizeURL string
	TokenURL     string
	// UserinfoURL is where the identity comes from when the scopes lack
	// "openid" (GitHub's https://api.github.com/user). With Issuer it
	// overrides the discovered userinfo_endpoint.
	UserinfoURL string

	Scopes []string
	// AuthorizeParams are added to the authorization request, for what a
	// provider needs beyond the standard (Google's access_type=offline and
	// prompt=consent, which get a refresh token). They may not replace the
	// parameters this package sets.
	AuthorizeParams url.Values
	RedirectURI     string

	// HTTP is the outbound client; nil means one with dial, TLS and
	// overall timeouts that follows no redirects. Every request is bounded
	// by a timeout of its own too, whatever client this is.
	HTTP *http.Client
	// Now is the clock ID tokens are checked against; nil means time.Now.
	Now func() time.Time
	// Logger gets the rare events worth an operator's eye (a key set
	// refetched, a stale discovery document kept); nil means slog.Default().
	Logger *slog.Logger
}

// AuthRequest is what one sign-in attempt keeps between the redirect to the
// provider and the callback: the caller makes the three values (random,
// unguessable) and stores them with the pending sign-in.
type AuthRequest struct {
	State    string
	Nonce    string // sent only with OpenID, where it is required
	Verifier string // the PKCE code_verifier (RFC 7636 §4.1: 43–128 unreserved characters)
}

// Grant is what the token endpoint answered, checked.
type Grant struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	// Scope is what the server said it granted. On Exchange it is the
	// requested scopes when the server said nothing (RFC 6749 §5.1: then
	// they are what it granted); on Refresh it stays empty then (the
	// grant's scope did not change).
	Scope string
	// Expiry is zero when the server gave no expires_in.
	Expiry   time.Time
	Identity Identity
	// IdentityUnchecked: a Refresh's answer had an ID token that could
	// not be checked now (see checkRefreshIDToken), so Identity is empty
	// although the server named one.
	IdentityUnchecked bool
}

// Identity is who signed in: from the verified ID token (OpenID, completed
// from the userinfo endpoint when the token lacks the email or name that
// the scopes asked for) or from the userinfo endpoint alone. It is empty
// when the provider has neither, and on a Refresh whose answer has no ID
// token (or one that could not be checked: see checkRefreshIDToken).
type Identity struct {
	Subject string
	Email   string
	Name    string
	// Issuer is the ID token's iss; without OpenID, the origin of the
	// token endpoint, so that (Issuer, Subject) names one account across
	// providers either way.
	Issuer        string
	EmailVerified bool
}

// Client is one configured provider. It is safe for concurrent use.
type Client struct {
	cfg    Config
	http   *http.Client
	now    func() time.Time
	log    *slog.Logger
	openid bool
	// static are the endpoints of a provider configured without Issuer.
	static *endpoints
	disc   *cache[*endpoints]
	keys   *cache[jwk.Set]
}

// Bounds of the outbound calls.
const (
	requestTimeout = 15 * time.Second
	maxTokenAnswer = 1 << 20
	maxDocument    = 1 << 20 // discovery, JWKS, userinfo
)

// reservedAuthorizeParam reports whether this package sets parameter k of
// the authorization request, which AuthorizeParams may then not replace: a
// second value would let the configuration undo PKCE or the nonce.
func reservedAuthorizeParam(k string) bool {
	switch k {
	case "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
		"code_challenge", "code_challenge_method":
		return true
	}
	return false
}

// New checks cfg and makes a Client; it does no network I/O.
func New(cfg Config) (*Client, error) {
	if cfg.Name == "" {
		return nil, errors.New("provider: name is empty")
	}
	if err := checkRequest(cfg); err != nil {
		return nil, fmt.Errorf("provider %q: %w", cfg.Name, err)
	}
	c := &Client{
		cfg:    cfg,
		http:   cfg.HTTP,
		now:    cfg.Now,
		log:    cfg.Logger,
		openid: slices.Contains(cfg.Scopes, "openid"),
	}
	c.cfg.Scopes = slices.Clone(cfg.Scopes)
	c.cfg.AuthorizeParams = cloneValues(cfg.AuthorizeParams)
	if c.http == nil {
		c.http = defaultHTTPClient()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("provider", cfg.Name)
	if err := c.setEndpoints(cfg); err != nil {
		return nil, fmt.Errorf("provider %q: %w", cfg.Name, err)
	}
	return c, nil
}

// checkRequest checks what the authorization request is made of: the
// client id, the redirect URI, the scopes and the extra parameters.
func checkRequest(cfg Config) error {
	if cfg.ClientID == "" {
		return errors.New("client_id is empty")
	}
	if cfg.RedirectURI == "" {
		return errors.New("redirect_uri is empty")
	}
	if u, err := url.Parse(cfg.RedirectURI); err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("redirect_uri %q is not an absolute URL without a fragment", cfg.RedirectURI)
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return fmt.Errorf("scope %q is empty or has a space, quote or backslash (RFC 6749 §3.3)", s)
		}
	}
	for k := range cfg.AuthorizeParams {
		if reservedAuthorizeParam(k) {
			return fmt.Errorf("authorize parameter %q is set by ioproxy itself; remove it", k)
		}
	}
	if cfg.UserinfoURL != "" {
		if _, err := checkEndpoint(cfg.UserinfoURL); err != nil {
			return fmt.Errorf("userinfo_url: %w", err)
		}
	}
	return nil
}

// setEndpoints checks where the provider is: an issuer, whose discovery
// names the endpoints and keys (fetched at first use), or the two URLs of
// a plain OAuth 2.0 provider.
func (c *Client) setEndpoints(cfg Config) error {
	switch {
	case cfg.Issuer != "":
		if (cfg.AuthorizeURL == "") != (cfg.TokenURL == "") {
			return errors.New("with issuer, set both authorize_url and token_url (they replace the ones discovery gives) or neither")
		}
		for _, e := range []string{cfg.AuthorizeURL, cfg.TokenURL} {
			if e == "" {
				continue
			}
			if _, err := checkEndpoint(e); err != nil {
				return fmt.Errorf("endpoint: %w", err)
			}
		}
		u, err := checkEndpoint(cfg.Issuer)
		if err != nil {
			return fmt.Errorf("issuer: %w", err)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return fmt.Errorf("issuer %q has a query; an issuer is a scheme, host and optional path (OpenID Connect Discovery §2)", cfg.Issuer)
		}
		c.disc = newCache[*endpoints](discoveryMaxAge, discoveryRetryAfter, c.now)
		c.keys = newCache[jwk.Set](keysMaxAge, keysRefetchAfter, c.now)
		return nil
	case cfg.AuthorizeURL == "" || cfg.TokenURL == "":
		return errors.New("set issuer, or both authorize_url and token_url")
	case c.openid:
		return errors.New(`scope "openid" needs issuer: ID tokens are verified with the keys its discovery document names`)
	}
	if _, err := checkEndpoint(cfg.AuthorizeURL); err != nil {
		return fmt.Errorf("authorize_url: %w", err)
	}
	tu, err := checkEndpoint(cfg.TokenURL)
	if err != nil {
		return fmt.Errorf("token_url: %w", err)
	}
	c.static = &endpoints{
		authorize: cfg.AuthorizeURL,
		token:     cfg.TokenURL,
		userinfo:  cfg.UserinfoURL,
		issuer:    tu.Scheme + "://" + tu.Host,
	}
	return nil
}

// defaultHTTPClient bounds every phase of a request, since a provider that
// hangs must not hold a sign-in (or a refresh under the session's lock)
// forever, and follows no redirects: no endpoint we call should redirect,
// and following one would re-send a token request somewhere else.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// OpenID reports whether "openid" is among the scopes: then every sign-in
// is an OpenID Connect authentication whose ID token is verified.
func (c *Client) OpenID() bool { return c.openid }

// AuthCodeURL is the authorization request to send the browser to. It may
// fetch discovery, hence the context.
func (c *Client) AuthCodeURL(ctx context.Context, a AuthRequest) (string, error) {
	if a.State == "" {
		return "", c.errorf("authorization request: state is empty")
	}
	if err := checkVerifier(a.Verifier); err != nil {
		return "", c.errorf("authorization request: %w", err)
	}
	if c.openid && a.Nonce == "" {
		return "", c.errorf("authorization request: nonce is empty, and OpenID sign-ins need one")
	}
	ep, err := c.endpoints(ctx)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(ep.authorize)
	if err != nil {
		return "", c.errorf("authorization endpoint %q: %w", ep.authorize, err)
	}
	q := u.Query()
	for k, vs := range c.cfg.AuthorizeParams {
		q[k] = slices.Clone(vs)
	}
	q.Set("response_type", "code")
	q.Set("client_id", c.cfg.ClientID)
	q.Set("redirect_uri", c.cfg.RedirectURI)
	if len(c.cfg.Scopes) > 0 {
		q.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	q.Set("state", a.State)
	q.Set("code_challenge", codeChallenge(a.Verifier))
	q.Set("code_challenge_method", "S256")
	if c.openid {
		q.Set("nonce", a.Nonce)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Exchange trades the callback's code for a grant (RFC 6749 §4.1.3, with
// the PKCE verifier). With OpenID the answer must carry an ID token, which
// is verified with nonce; without it, the identity comes from the userinfo
// endpoint when there is one.
func (c *Client) Exchange(ctx context.Context, code, verifier, nonce string) (*Grant, error) {
	if code == "" {
		return nil, c.errorf("code exchange: code is empty")
	}
	if err := checkVerifier(verifier); err != nil {
		return nil, c.errorf("code exchange: %w", err)
	}
	if c.openid && nonce == "" {
		return nil, c.errorf("code exchange: nonce is empty, and OpenID sign-ins need one")
	}
	ep, err := c.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.cfg.RedirectURI},
		"code_verifier": {verifier},
	}
	ans, err := c.tokenRequest(ctx, ep, form, "code exchange")
	if err != nil {
		return nil, err
	}
	g := ans.grant(c.now())
	if g.Scope == "" {
		g.Scope = strings.Join(c.cfg.Scopes, " ")
	}
	switch {
	case c.openid:
		if ans.IDToken == "" {
			return nil, c.errorf("code exchange: %w: the token answer has no id_token, and the scopes include openid", ErrIDToken)
		}
		claims, err := c.verifyIDToken(ctx, ep, "code exchange", ans.IDToken, nonce, g.AccessToken)
		if err != nil {
			return nil, err
		}
		g.Identity = claims.identity()
		if err := c.completeIdentity(ctx, ep, g); err != nil {
			return nil, err
		}
	case ep.userinfo != "":
		id, err := c.userinfo(ctx, ep, g.AccessToken)
		if err != nil {
			return nil, err
		}
		id.Issuer = ep.issuer
		g.Identity = id
	}
	return g, nil
}

// RefreshSubject uses a refresh token (RFC 6749 §6) for the session of
// subject. A server that rotates refresh tokens answers a new one; one
// that does not answers none, and the grant keeps the old. An ID token in
// the answer is verified (without a nonce: there was no authorization
// request) and must name the same subject (OpenID Connect Core §12.2);
// an empty subject skips the comparison. See checkRefreshIDToken for
// what a token that fails does.
func (c *Client) RefreshSubject(ctx context.Context, refreshToken, subject string) (*Grant, error) {
	if refreshToken == "" {
		return nil, c.errorf("refresh: refresh token is empty")
	}
	ep, err := c.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	}
	ans, err := c.tokenRequest(ctx, ep, form, "refresh")
	if err != nil {
		return nil, err
	}
	g := ans.grant(c.now())
	if g.RefreshToken == "" {
		g.RefreshToken = refreshToken
	}
	if ans.IDToken != "" && c.openid {
		if err := c.checkRefreshIDToken(ctx, ep, ans.IDToken, subject, g); err != nil {
			if g.RefreshToken != refreshToken && ep.revocation != "" {
				// The server rotated the refresh token before we refused
				// its answer: the new one must not outlive the session.
				if rerr := c.revoke(ctx, ep, g.RefreshToken); rerr != nil {
					c.log.WarnContext(ctx, "provider refresh: the refused answer's refresh token could not be revoked", "err", rerr)
				}
			}
			return nil, err
		}
	}
	return g, nil
}

// checkRefreshIDToken verifies the ID token of a refresh's answer and
// sets g's identity from it.
//
// A token that fails its checks (signature, iss, aud, exp…) fails with
// an error that is ErrIDToken, and one that names another subject than
// the session's with ErrSubjectChanged; either is ErrInvalidGrant too,
// as for a dead refresh token: the answer cannot be trusted to be the
// session's account, so the session must not go on, neither with its
// tokens nor with the old ones (which the server may have rotated
// already).
//
// A token that cannot be checked now keeps the answer without an
// identity, marked IdentityUnchecked (the session's owner bounds how
// often in a row): the key set cannot be had, or it lacks the token's
// key even after a refetch (a rotation the cache has not caught up with:
// an unknown kid, or a kid-less token no key verifies). None of that says
// whose token it is, the server has rotated the refresh token already,
// and dropping the answer would spend the session. A token whose times
// are ahead of our clock, and that passes every check at its own time,
// is taken (our clock may be behind).
func (c *Client) checkRefreshIDToken(ctx context.Context, ep *endpoints, raw, subject string, g *Grant) error {
	claims, err := c.verifyIDToken(ctx, ep, "refresh", raw, "", g.AccessToken)
	switch {
	case err == nil:
	case errors.Is(err, errClock) && claims != nil:
		// Checked in full at its own time: only our clocks disagree.
		c.log.WarnContext(ctx, "provider refresh: the new ID token is from ahead of our clock; is this machine's clock behind?", "err", err)
	case errors.Is(err, ErrIDToken) && !uncheckable(err):
		return fmt.Errorf("%w (%w: the session cannot go on)", err, ErrInvalidGrant)
	default:
		c.log.WarnContext(ctx, "provider refresh: the new ID token could not be checked; the answer is kept, its subject checked at the next refresh", "err", err)
		g.IdentityUnchecked = true
		return nil
	}
	if subject != "" && claims.Subject != subject {
		return c.errorf("refresh: %w (%w): the new id_token names another subject", ErrSubjectChanged, ErrInvalidGrant)
	}
	g.Identity = claims.identity()
	return nil
}

// Revoke asks the provider to forget token (RFC 7009), when its discovery
// document names a revocation endpoint; otherwise it does nothing, and the
// token lives until it expires.
func (c *Client) Revoke(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	ep, err := c.endpoints(ctx)
	if err != nil {
		return err
	}
	if ep.revocation == "" {
		return nil
	}
	return c.revoke(ctx, ep, token)
}

// endpoints are the static ones, or discovery's (fetched or cached).
func (c *Client) endpoints(ctx context.Context) (*endpoints, error) {
	if c.static != nil {
		return c.static, nil
	}
	ep, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.UserinfoURL != "" || c.cfg.AuthorizeURL != "" {
		// Endpoints written in the configuration beside the issuer win
		// over discovery's; its keys and issuer still stand.
		cp := *ep
		if c.cfg.UserinfoURL != "" {
			cp.userinfo = c.cfg.UserinfoURL
		}
		if c.cfg.AuthorizeURL != "" {
			cp.authorize, cp.token = c.cfg.AuthorizeURL, c.cfg.TokenURL
		}
		ep = &cp
	}
	return ep, nil
}

// errorf is an error that names the provider.
func (c *Client) errorf(format string, args ...any) error {
	return fmt.Errorf("provider %q: "+format, append([]any{c.cfg.Name}, args...)...)
}

// checkEndpoint accepts https URLs, and http ones only on loopback hosts
// (a provider in a test or beside ioproxy): anything else would send
// codes, secrets and tokens in clear text. The rule is endpoint.Check's,
// as config applies it to what an operator writes.
func checkEndpoint(raw string) (*url.URL, error) {
	u, problem := endpoint.Check(raw)
	switch problem {
	case endpoint.None:
		return u, nil
	case endpoint.UserInfo:
		return nil, fmt.Errorf("%q has credentials in it; the client secret goes in client_secret", raw)
	case endpoint.Fragment:
		return nil, fmt.Errorf("%q has a fragment", raw)
	case endpoint.PlainHTTP:
		return nil, fmt.Errorf("%q is plain http; only loopback hosts may use http, anything else needs https", raw)
	}
	if u != nil && u.IsAbs() && u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%q: scheme %q is neither https nor http", raw, u.Scheme)
	}
	return nil, fmt.Errorf("%q is not an absolute URL", raw)
}

// checkVerifier holds the caller to RFC 7636 §4.1, since a short verifier
// would make the challenge guessable and a provider would refuse it
// anyway, later and with a vaguer message.
func checkVerifier(v string) error {
	if len(v) < 43 || len(v) > 128 {
		return fmt.Errorf("PKCE verifier has %d characters; RFC 7636 wants 43 to 128", len(v))
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			return errors.New("PKCE verifier has a character outside A-Z a-z 0-9 - . _ ~")
		}
	}
	return nil
}

// codeChallenge is the S256 challenge of verifier (RFC 7636 §4.2).
func codeChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// equalSecret compares values an attacker may probe (nonces) in constant
// time.
func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
