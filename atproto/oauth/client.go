// Package oauth is ioproxy's AT Protocol OAuth client: discovery from a
// handle, DID or server URL to the authorization server, pushed
// authorization requests with PKCE and DPoP, the code exchange with the
// identity checks the profile requires, refresh and revocation.
//
// It keeps no sessions itself: callers store what Authorize and Exchange
// return (ingress puts it in the session store), and pass it back.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
	"github.com/ioproxy/ioproxy/internal/textutil"
)

// Resolver is the identity lookup the client needs; *identity.Resolver
// implements it.
type Resolver interface {
	Lookup(ctx context.Context, input string) (*identity.Identity, error)
	LookupDIDFresh(ctx context.Context, did syntax.DID) (*identity.Identity, error)
}

// Config configures a Client: one OAuth client, i.e. one ingress host.
type Config struct {
	// ClientID is the client metadata URL (https://host/@/client-metadata.json)
	// or, for the localhost client, http://localhost?redirect_uri=…&scope=….
	ClientID    string
	RedirectURI string
	Scope       string
	// Keys sign client assertions (private_key_jwt): the ring's signer
	// at the time of each request. Nil for a public client.
	Keys *ClientKeys
	// HTTP is the SSRF-guarded client for every request to servers.
	HTTP     *http.Client
	Identity Resolver
	// Nonces is shared by all clients: DPoP nonces are per server.
	Nonces *dpop.Nonces
	// AllowInsecure is the development switch (http:// servers).
	AllowInsecure bool
	// OnNonceRetry, when set, is called each time a request is sent again
	// with a new DPoP nonce (for metrics).
	OnNonceRetry func()
	// RequestLifetime bounds a sign-in between Authorize and Exchange.
	RequestLifetime time.Duration
	Now             func() time.Time
}

// Client is one OAuth client. It is safe for concurrent use.
type Client struct {
	cfg  Config
	disc *discovery
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.ClientID == "" || cfg.RedirectURI == "" || cfg.Scope == "" {
		return nil, errors.New("oauth client: client id, redirect URI and scope are required")
	}
	if cfg.HTTP == nil || cfg.Identity == nil || cfg.Nonces == nil {
		return nil, errors.New("oauth client: HTTP client, identity resolver and nonce store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RequestLifetime == 0 {
		cfg.RequestLifetime = 10 * time.Minute
	}
	return &Client{cfg: cfg, disc: &discovery{http: cfg.HTTP, allowHTTP: cfg.AllowInsecure, ttl: 5 * time.Minute, now: cfg.Now}}, nil
}

// ClientID returns the client's id.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Confidential reports whether the client authenticates with a key.
func (c *Client) Confidential() bool { return c.cfg.Keys != nil }

// LocalhostClientID builds the client id of the localhost client exception
// for a loopback redirect URI.
func LocalhostClientID(redirectURI, scope string) string {
	q := url.Values{"redirect_uri": {redirectURI}, "scope": {scope}}
	return "http://localhost?" + q.Encode()
}

// Request is an authorization request in flight: what Exchange needs, to
// be stored by the caller under State.
type Request struct {
	State  string
	Issuer string
	// ExpectedDID, Handle and PDS are set when the user named an account.
	ExpectedDID  string
	Handle       string
	PDS          string
	PKCEVerifier string
	DPoPKey      *dpop.Key
	Expiry       time.Time
}

// Authorize starts a sign-in for input (a handle, a DID, or the URL of a
// PDS or entryway). It returns the request to keep and the URL to send the
// browser to. The browser URL carries only client_id and request_uri: all
// parameters went to the server in the pushed request.
func (c *Client) Authorize(ctx context.Context, input string) (*Request, string, error) {
	req := &Request{Expiry: c.cfg.Now().Add(c.cfg.RequestLifetime)}
	var loginHint string
	input = strings.TrimSpace(input)
	if strings.HasPrefix(input, "https://") || strings.HasPrefix(input, "http://") {
		issuer, err := c.issuerForServer(ctx, input)
		if err != nil {
			return nil, "", err
		}
		req.Issuer = issuer
	} else {
		id, err := c.cfg.Identity.Lookup(ctx, input)
		if err != nil {
			return nil, "", &UserError{Message: identity.UserMessage(err), Err: err}
		}
		issuer, err := c.disc.authServerFor(ctx, id.PDS)
		if err != nil {
			return nil, "", &UserError{Message: "Your account's server does not support OAuth sign-in, or is not reachable.", Err: err}
		}
		req.Issuer, req.ExpectedDID, req.Handle, req.PDS = issuer, id.DID.String(), id.Handle.String(), id.PDS
		loginHint = strings.TrimPrefix(input, "@")
	}
	meta, err := c.disc.server(ctx, req.Issuer)
	if err != nil {
		return nil, "", &UserError{Message: "Your account's authorization server is not reachable or not usable for sign-in.", Err: err}
	}
	key, err := dpop.GenerateKey()
	if err != nil {
		return nil, "", err
	}
	req.DPoPKey = key
	req.State = randomToken(32)
	req.PKCEVerifier = randomToken(48)
	challenge := sha256.Sum256([]byte(req.PKCEVerifier))
	form := url.Values{
		"client_id":             {c.cfg.ClientID},
		"response_type":         {"code"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
		"state":                 {req.State},
		"redirect_uri":          {c.cfg.RedirectURI},
		"scope":                 {c.cfg.Scope},
	}
	if loginHint != "" {
		form.Set("login_hint", loginHint)
	}
	var par struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int    `json:"expires_in"`
	}
	if err := c.post(ctx, meta, meta.PushedAuthorizationRequestEndpoint, form, key, &par); err != nil {
		return nil, "", &UserError{Message: "The authorization server refused to start the sign-in.", Err: fmt.Errorf("pushed authorization request to %s: %w", req.Issuer, err)}
	}
	if par.RequestURI == "" {
		return nil, "", &UserError{Message: "The authorization server refused to start the sign-in.", Err: errors.New("pushed authorization request: no request_uri in response")}
	}
	u, err := url.Parse(meta.AuthorizationEndpoint)
	if err != nil {
		return nil, "", fmt.Errorf("authorization endpoint: %w", err)
	}
	q := u.Query()
	q.Set("client_id", c.cfg.ClientID)
	q.Set("request_uri", par.RequestURI)
	u.RawQuery = q.Encode()
	return req, u.String(), nil
}

// issuerForServer finds the issuer for a PDS or entryway URL: through its
// protected-resource document, or the URL is itself an authorization server.
func (c *Client) issuerForServer(ctx context.Context, raw string) (string, error) {
	o, err := origin(strings.TrimSuffix(raw, "/"))
	if err != nil {
		return "", &UserError{Message: "That address is not a server address such as https://bsky.social.", Err: err}
	}
	if err := checkURL(o, c.cfg.AllowInsecure); err != nil {
		return "", &UserError{Message: "Only https:// server addresses are allowed.", Err: err}
	}
	issuer, prErr := c.disc.authServerFor(ctx, o)
	if prErr == nil {
		return issuer, nil
	}
	if _, err := c.disc.server(ctx, o); err == nil {
		return o, nil
	}
	return "", &UserError{Message: "That server does not offer AT Protocol sign-in.", Err: prErr}
}

// Grant is the outcome of a sign-in or refresh: tokens bound to DPoPKey,
// for an account whose identity has been checked.
type Grant struct {
	DID          string
	Handle       string
	PDS          string
	Issuer       string
	Scope        string
	AccessToken  string
	RefreshToken string
	Expiry       time.Time
	// AuthServerNonce is the authorization server's DPoP nonce as the
	// grant came: kept with the session, it spares the replica that
	// refreshes next a refused first request.
	AuthServerNonce string
}

// maxTokenLifetime bounds the lifetime a server may give an access
// token: past it the token is refreshed anyway, and a huge expires_in
// would overflow a time.Duration.
const maxTokenLifetime = 24 * time.Hour

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	Sub          string `json:"sub"`
}

// Exchange completes a sign-in: it checks the issuer the browser came
// back with, exchanges the code, and verifies that the account (sub) is
// really served by that issuer, so no server can sign in as an account
// it does not host.
func (c *Client) Exchange(ctx context.Context, req *Request, code, iss string) (*Grant, error) {
	if iss == "" || iss != req.Issuer {
		return nil, &UserError{Message: "The sign-in response came from an unexpected server; please try again.", Err: fmt.Errorf("callback iss %q, want %q", iss, req.Issuer)}
	}
	if c.cfg.Now().After(req.Expiry) {
		return nil, &UserError{Message: "The sign-in took too long and expired; please try again.", Err: errors.New("authorization request expired")}
	}
	meta, err := c.disc.server(ctx, req.Issuer)
	if err != nil {
		return nil, &UserError{Message: "Your account's authorization server is not reachable.", Err: err}
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.cfg.RedirectURI},
		"code_verifier": {req.PKCEVerifier},
		"client_id":     {c.cfg.ClientID},
	}
	var tok tokenResponse
	if err := c.post(ctx, meta, meta.TokenEndpoint, form, req.DPoPKey, &tok); err != nil {
		return nil, &UserError{Message: "The authorization server did not accept the sign-in; please try again.", Err: fmt.Errorf("token exchange: %w", err)}
	}
	g, err := c.checkTokens(ctx, &tok, req.Issuer, req.ExpectedDID)
	if err != nil {
		// The tokens are useless to us now; do not leave them live.
		c.revoke(ctx, meta, tok.RefreshToken, req.DPoPKey)
		return nil, &UserError{Message: "The authorization server's answer could not be trusted, so you were not signed in.", Err: err}
	}
	return g, nil
}

// checkTokens validates a token response and binds it to the account.
func (c *Client) checkTokens(ctx context.Context, tok *tokenResponse, issuer, expectedDID string) (*Grant, error) {
	did, err := checkTokenResponse(tok)
	if err != nil {
		return nil, err
	}
	if expectedDID != "" && did.String() != expectedDID {
		return nil, fmt.Errorf("sub %s is not the account that signed in (%s)", did, expectedDID)
	}
	id, err := c.bindAccount(ctx, did, issuer)
	if err != nil {
		return nil, err
	}
	return c.newGrant(tok, id, issuer), nil
}

// checkTokenResponse checks what a token response must say by itself and
// returns its sub.
func checkTokenResponse(tok *tokenResponse) (syntax.DID, error) {
	if !strings.EqualFold(tok.TokenType, "DPoP") {
		return "", fmt.Errorf("token_type %q, want DPoP", tok.TokenType)
	}
	if tok.AccessToken == "" {
		return "", errors.New("no access token")
	}
	if !hasScope(tok.Scope, "atproto") {
		return "", fmt.Errorf("granted scope %q lacks atproto", tok.Scope)
	}
	did, err := syntax.ParseDID(tok.Sub)
	if err != nil {
		return "", fmt.Errorf("sub %q is not a DID: %w", tok.Sub, err)
	}
	return did, nil
}

// errNotServed means the account is definitely not (or no longer) served by
// the issuer: it moved, was deleted, or never was there.
var errNotServed = errors.New("the account is not served by this authorization server")

// bindAccount resolves did afresh (a cached document could name a PDS the
// account has since left) and requires that its PDS names issuer as its
// authorization server. A definite mismatch wraps errNotServed; failures
// to reach the directory or the PDS do not. When the account resolved but
// its PDS could not be asked, the identity is returned with the error.
func (c *Client) bindAccount(ctx context.Context, did syntax.DID, issuer string) (*identity.Identity, error) {
	id, err := c.cfg.Identity.LookupDIDFresh(ctx, did)
	if err != nil {
		if errors.Is(err, identity.ErrDIDNotFound) || errors.Is(err, identity.ErrNoPDS) || errors.Is(err, identity.ErrUnsupportedDID) {
			return nil, fmt.Errorf("resolve %s: %w: %w", did, errNotServed, err)
		}
		return nil, fmt.Errorf("resolve %s: %w", did, err)
	}
	asIssuer, err := c.disc.authServerFor(ctx, id.PDS)
	if err != nil {
		// The account resolved (and its handle was verified both ways),
		// but its server could not say who issues its tokens.
		return id, fmt.Errorf("authorization server of %s: %w", did, err)
	}
	if asIssuer != issuer {
		return nil, fmt.Errorf("%s is served by %s, not by the issuer %s: %w", did, asIssuer, issuer, errNotServed)
	}
	return id, nil
}

func (c *Client) newGrant(tok *tokenResponse, id *identity.Identity, issuer string) *Grant {
	return c.grant(tok, &Account{DID: id.DID.String(), Handle: id.Handle.String(), PDS: id.PDS, Issuer: issuer})
}

func (c *Client) grant(tok *tokenResponse, acct *Account) *Grant {
	lifetime := 300 * time.Second
	if tok.ExpiresIn > 0 {
		lifetime = time.Duration(min(tok.ExpiresIn, int64(maxTokenLifetime/time.Second))) * time.Second
	}
	return &Grant{
		DID:             acct.DID,
		Handle:          acct.Handle,
		PDS:             acct.PDS,
		Issuer:          acct.Issuer,
		Scope:           tok.Scope,
		AccessToken:     tok.AccessToken,
		RefreshToken:    tok.RefreshToken,
		Expiry:          c.cfg.Now().Add(lifetime),
		AuthServerNonce: c.cfg.Nonces.Get(acct.Issuer),
	}
}

// Account is an account whose authorization server has just been
// verified, with its current handle (verified both ways, or
// handle.invalid) and PDS.
type Account struct {
	DID    string
	Handle string
	PDS    string
	Issuer string
}

// CheckAccount verifies that the account is still served by issuer,
// resolving it afresh, and finds its current handle and PDS. It is done
// before each refresh. An account that moved away (or a DID that is gone)
// is a *UserError: the session must end. A directory or PDS that cannot be
// reached is a plain error; when the account itself resolved and only its
// PDS could not be asked, the Account is returned with the error, holding
// the handle just verified (and no PDS, which is not bound to the issuer).
func (c *Client) CheckAccount(ctx context.Context, did, issuer string) (*Account, error) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return nil, &UserError{Message: "The session names no valid account.", Err: err}
	}
	id, err := c.bindAccount(ctx, d, issuer)
	switch {
	case errors.Is(err, errNotServed):
		return nil, &UserError{Message: "Your account is no longer served by the server you signed in with; please sign in again.", Err: err}
	case err != nil && id != nil:
		return &Account{DID: id.DID.String(), Handle: id.Handle.String(), Issuer: issuer}, fmt.Errorf("check account %s: %w", did, err)
	case err != nil:
		return nil, fmt.Errorf("check account %s: %w", did, err)
	}
	return &Account{DID: id.DID.String(), Handle: id.Handle.String(), PDS: id.PDS, Issuer: issuer}, nil
}

// Refresh trades a refresh token for new tokens, for an account that
// CheckAccount has just verified: the refresh token is spent only for an
// account still served by its issuer. Refresh tokens are single use:
// callers must serialize refreshes of one session and save the result
// before releasing other callers.
func (c *Client) Refresh(ctx context.Context, acct *Account, refreshToken string, key *dpop.Key) (*Grant, error) {
	if refreshToken == "" {
		return nil, &ServerError{Code: "invalid_grant", Description: "the session has no refresh token"}
	}
	did, issuer := acct.DID, acct.Issuer
	meta, err := c.disc.server(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("refresh tokens of %s: %w", did, err)
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {c.cfg.ClientID},
	}
	var tok tokenResponse
	if err := c.post(ctx, meta, meta.TokenEndpoint, form, key, &tok); err != nil {
		return nil, fmt.Errorf("refresh tokens of %s: %w", did, err)
	}
	if tok.Sub == "" {
		tok.Sub = did
	}
	sub, err := checkTokenResponse(&tok)
	if err == nil && sub.String() != did {
		err = fmt.Errorf("the server answered for %s", sub)
	}
	if err != nil {
		// The old refresh token is spent; the new tokens are not to be
		// trusted, so the session cannot go on.
		c.revoke(ctx, meta, tok.RefreshToken, key)
		return nil, &UserError{Message: "The authorization server's answer could not be trusted; please sign in again.", Err: fmt.Errorf("refresh tokens of %s: %w", did, err)}
	}
	return c.grant(&tok, acct), nil
}

// Revoke asks the server to revoke a token (best effort: a server without a
// revocation endpoint, or an error, is not fatal to signing out).
func (c *Client) Revoke(ctx context.Context, issuer, token string, key *dpop.Key) {
	meta, err := c.disc.server(ctx, issuer)
	if err != nil {
		return
	}
	c.revoke(ctx, meta, token, key)
}

func (c *Client) revoke(ctx context.Context, meta *ServerMetadata, token string, key *dpop.Key) {
	if meta.RevocationEndpoint == "" || token == "" {
		return
	}
	_ = c.post(ctx, meta, meta.RevocationEndpoint, url.Values{"token": {token}, "client_id": {c.cfg.ClientID}}, key, nil)
}

// post sends a form to an authorization server endpoint with a DPoP proof
// and, for a confidential client, a client assertion. A use_dpop_nonce
// answer is retried once, and only when the nonce changed.
func (c *Client) post(ctx context.Context, meta *ServerMetadata, endpoint string, form url.Values, key *dpop.Key, out any) error {
	for attempt := 0; ; attempt++ {
		if c.cfg.Keys != nil {
			now := c.cfg.Now()
			assertion, err := c.cfg.Keys.Ring().Signer(now).Assertion(c.cfg.ClientID, meta.Issuer, now)
			if err != nil {
				return err
			}
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", assertion)
		}
		sent := c.cfg.Nonces.Get(endpoint)
		proof, err := key.Proof(dpop.ProofParams{Method: http.MethodPost, URL: endpoint, Nonce: sent})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return fmt.Errorf("build request to %s: %w", endpoint, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("DPoP", proof)
		resp, err := c.cfg.HTTP.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", endpoint, err)
		}
		nonce, isChallenge := dpop.NonceChallenge(resp)
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			c.cfg.Nonces.Set(endpoint, n)
		}
		// Retry once, and only with a nonce other than the one just
		// refused, so a server that keeps refusing cannot loop us.
		if isChallenge && attempt == 0 && nonce != sent {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if c.cfg.OnNonceRetry != nil {
				c.cfg.OnNonceRetry()
			}
			continue
		}
		body, err := safehttp.ReadBody(resp.Body, metadataLimit)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("POST %s: %w", endpoint, err)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			se := ParseServerError(resp.StatusCode, body)
			if se.Code == "" {
				se.Code = "server_error"
			}
			return se
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decode answer of %s: %w", endpoint, err)
		}
		return nil
	}
}

// Bounds of what a ServerError keeps of the server's answer.
const (
	maxErrorCodeBytes        = 64
	maxErrorDescriptionBytes = 300
)

// ServerError is an OAuth error answer ({"error", "error_description"}),
// its fields clipped to the bounds above.
type ServerError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

// ParseServerError reads an OAuth error answer's body (RFC 6749 §5.2).
// The server is anyone's: what it says goes to logs and pages, so only so
// much of it is kept. Code is empty when the body holds no error code as
// a string (not JSON, or another shape).
func ParseServerError(status int, body []byte) *ServerError {
	se := &ServerError{Status: status}
	_ = json.Unmarshal(body, se)
	se.Code = textutil.Clip(se.Code, maxErrorCodeBytes)
	se.Description = textutil.Clip(se.Description, maxErrorDescriptionBytes)
	return se
}

func (e *ServerError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Description)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
}

// IsInvalidGrant reports whether err means the refresh token is no longer
// valid (used, revoked or expired): the session cannot be saved. Nothing
// else is: invalid_client, in particular, says the server could not
// check our client (fetching our metadata or key set failed, or the key
// is new to it), which passes, and says nothing of this session.
func IsInvalidGrant(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == "invalid_grant"
}

// IsUnknownClientKey reports whether err is an authorization server
// refusing our client assertion because the key that signed it is not in
// the key set it holds for us: it cached an older /@/jwks.json (a lost
// data dir, a replica that made its own key, a careless migration), and
// refuses every sign-in until its cache expires. The reference server
// says "invalid_client" with "no applicable key found in the JSON Web Key
// Set".
func IsUnknownClientKey(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == "invalid_client" && strings.Contains(strings.ToLower(se.Description), "no applicable key")
}

// UserError carries a message fit to show the person signing in; Err is
// for the logs.
type UserError struct {
	Message string
	Err     error
}

func (e *UserError) Error() string { return e.Message + ": " + e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }

// hasScope reports whether want is one of scope's tokens, which RFC 6749
// (3.3) separates with single spaces: "a\tatproto" is one token, not two.
func hasScope(scope, want string) bool {
	for _, s := range strings.Split(scope, " ") {
		if s == want {
			return true
		}
	}
	return false
}
