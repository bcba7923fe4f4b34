package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is what zitadel's provider keeps: the one client, the users,
// sign-ins under way, codes and tokens, signing keys. It is ours rather
// than zitadel's example storage because that one fixes the access token
// lifetime at five minutes, registers clients in a package-level map, and
// reads some maps without its lock (a -race failure once tests run
// requests in parallel).
type storage struct {
	cfg    Config
	client *client

	mu       sync.Mutex
	keys     []*signingKey // the last one signs; all are published
	requests map[string]*authRequest
	codes    map[string]string // code → auth request id
	// usedCodes are codes already exchanged, with the request they were
	// for: a replay revokes what the first exchange issued (RFC 6749
	// §4.1.2).
	usedCodes map[string]string
	access    map[string]*accessToken
	refresh   map[string]*refreshToken
}

// Refresh tokens outlive any test.
const refreshTokenLifetime = 24 * time.Hour

func newStorage(cfg Config) (*storage, error) {
	s := &storage{
		cfg:       cfg,
		client:    &client{cfg: cfg},
		requests:  map[string]*authRequest{},
		codes:     map[string]string{},
		usedCodes: map[string]string{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
	}
	if err := s.rotateKey(); err != nil {
		return nil, err
	}
	return s, nil
}

// rotateKey adds a signing key, which signs from now on; the old ones stay
// in the key set, as an issuer keeps them while its tokens live.
func (s *storage) rotateKey() error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, &signingKey{id: fmt.Sprintf("oidctest-%d", len(s.keys)+1), key: k})
	return nil
}

func (s *storage) user(subject string) (User, bool) {
	for _, u := range s.cfg.Users {
		if u.Subject == subject {
			return u, true
		}
	}
	return User{}, false
}

// checkLogin is the login form's check: on success the auth request is
// done, for the user.
func (s *storage) checkLogin(requestID, username, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[requestID]
	if !ok {
		return errors.New("this sign-in has expired or is unknown; start again from the application")
	}
	for _, u := range s.cfg.Users {
		if u.Username == username && subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1 {
			req.subject, req.done, req.authTime = u.Subject, true, time.Now()
			return nil
		}
	}
	return errors.New("wrong username or password")
}

func (s *storage) hasRequest(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.requests[id]
	return ok
}

// CreateAuthRequest implements op.Storage.
func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if len(r.Prompt) == 1 && r.Prompt[0] == oidc.PromptNone {
		return nil, oidc.ErrLoginRequired()
	}
	id := randomID()
	req := &authRequest{
		id:           id,
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		state:        r.State,
		nonce:        r.Nonce,
		scopes:       slices.Clone([]string(r.Scopes)),
		responseType: r.ResponseType,
		responseMode: r.ResponseMode,
		subject:      userID,
	}
	if s.cfg.RefreshWithoutOfflineAccess && !slices.Contains(req.scopes, oidc.ScopeOfflineAccess) {
		req.scopes = append(req.scopes, oidc.ScopeOfflineAccess)
	}
	if r.CodeChallenge != "" {
		req.challenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[id] = req
	return req.snapshot(), nil
}

// AuthRequestByID implements op.Storage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req.snapshot(), nil
}

// AuthRequestByCode implements op.Storage. A code used before revokes the
// tokens its first exchange issued.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reqID, used := s.usedCodes[code]; used {
		s.revokeRequestLocked(reqID)
		return nil, errors.New("code already used; its tokens are revoked")
	}
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("code invalid or expired")
	}
	req, ok := s.requests[id]
	if !ok {
		return nil, errors.New("code invalid or expired")
	}
	return req.snapshot(), nil
}

// SaveAuthCode implements op.Storage.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.Storage: called once the code is
// exchanged, so the code moves to usedCodes.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
			s.usedCodes[code] = id
		}
	}
	return nil
}

func (s *storage) revokeRequestLocked(reqID string) {
	for id, t := range s.access {
		if t.requestID == reqID {
			delete(s.access, id)
		}
	}
	for id, t := range s.refresh {
		if t.requestID == reqID {
			delete(s.refresh, id)
		}
	}
}

// CreateAccessToken implements op.Storage.
func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.newAccessLocked(grantOf(r), "")
	if err != nil {
		return "", time.Time{}, err
	}
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens implements op.Storage: a code exchange
// makes a refresh token, a refresh replaces the one it used (rotation, so
// a replayed refresh token is invalid_grant).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := grantOf(r)
	if current != "" {
		old, ok := s.refresh[current]
		if !ok || time.Now().After(old.expiry) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token invalid, used or expired")
		}
		delete(s.refresh, current)
		delete(s.access, old.accessID)
		g = old.grant
		g.scopes = slices.Clone(r.GetScopes())
	}
	rtID := randomID()
	at, err := s.newAccessLocked(g, rtID)
	if err != nil {
		return "", "", time.Time{}, err
	}
	s.refresh[rtID] = &refreshToken{id: rtID, grant: g, expiry: time.Now().Add(refreshTokenLifetime), accessID: at.id}
	return at.id, rtID, at.expiry, nil
}

func (s *storage) newAccessLocked(g grant, refreshID string) (*accessToken, error) {
	id := randomID()
	t := &accessToken{id: id, grant: g, refreshID: refreshID, expiry: time.Now().Add(s.cfg.AccessTokenLifetime)}
	s.access[id] = t
	return t, nil
}

// TokenRequestByRefreshToken implements op.Storage.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[token]
	if !ok || time.Now().After(t.expiry) {
		return nil, errors.New("refresh token invalid, used or expired")
	}
	g := t.grant
	g.scopes = slices.Clone(g.scopes)
	return &refreshRequest{grant: g}, nil
}

// TerminateSession implements op.Storage.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.access {
		if t.subject == userID && t.clientID == clientID {
			delete(s.access, id)
		}
	}
	for id, t := range s.refresh {
		if t.subject == userID && t.clientID == clientID {
			delete(s.refresh, id)
		}
	}
	return nil
}

// RevokeToken implements op.Storage (RFC 7009: an unknown token is no
// error).
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.access[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.access, tokenOrID)
		return nil
	}
	if t, ok := s.refresh[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refresh, tokenOrID)
		delete(s.access, t.accessID)
	}
	return nil
}

// GetRefreshTokenInfo implements op.Storage.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.subject, t.id, nil
}

// SigningKey implements op.Storage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1], nil
}

// SignatureAlgorithms implements op.Storage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.Storage.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]op.Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, publicKey{k})
	}
	return out, nil
}

// GetClientByClientID implements op.Storage.
func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	if clientID != s.cfg.ClientID {
		return nil, fmt.Errorf("client %q not found", clientID)
	}
	return s.client, nil
}

// AuthorizeClientIDSecret implements op.Storage.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, secret string) error {
	if clientID != s.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		return errors.New("wrong client id or secret")
	}
	return nil
}

// SetUserinfoFromScopes implements op.Storage; SetUserinfoFromRequest
// does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest: the ID
// token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, r.GetSubject(), scopes)
}

// SetUserinfoFromToken implements op.Storage: the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	t, ok := s.access[tokenID]
	var g grant
	if ok {
		g = t.grant
	}
	live := ok && time.Now().Before(t.expiry)
	s.mu.Unlock()
	if !live {
		return errors.New("access token invalid or expired")
	}
	return s.setUserinfo(info, g.subject, g.scopes)
}

// SetIntrospectionFromToken implements op.Storage.
func (s *storage) SetIntrospectionFromToken(_ context.Context, r *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	s.mu.Lock()
	t, ok := s.access[tokenID]
	var g grant
	var exp time.Time
	if ok {
		g, exp = t.grant, t.expiry
	}
	s.mu.Unlock()
	if !ok || time.Now().After(exp) || g.clientID != clientID {
		return errors.New("access token invalid or expired")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, g.subject, g.scopes); err != nil {
		return err
	}
	r.SetUserInfo(info)
	r.Scope, r.ClientID, r.Expiration = g.scopes, g.clientID, oidc.FromTime(exp)
	return nil
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.user(subject)
	if !ok {
		return fmt.Errorf("user %q not found", subject)
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeOpenID:
			info.Subject = u.Subject
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, oidc.Bool(u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name, info.PreferredUsername = u.Name, u.Username
		}
	}
	return nil
}

// GetPrivateClaimsFromScopes implements op.Storage.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID implements op.Storage; the JWT profile grant is not
// offered.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// ValidateJWTProfileScopes implements op.Storage.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// grant is what a code or refresh token stands for.
type grant struct {
	requestID string // the auth request it came from
	clientID  string
	subject   string
	scopes    []string
	audience  []string
	authTime  time.Time
	amr       []string
}

// grantOf reads the grant of a token request: an auth request (code
// exchange) or a refresh request.
func grantOf(r op.TokenRequest) grant {
	switch r := r.(type) {
	case *authRequest:
		return grant{
			requestID: r.id, clientID: r.clientID, subject: r.subject, scopes: slices.Clone(r.scopes),
			audience: []string{r.clientID}, authTime: r.authTime, amr: r.GetAMR(),
		}
	case *refreshRequest:
		g := r.grant
		g.scopes = slices.Clone(g.scopes)
		return g
	}
	return grant{subject: r.GetSubject(), scopes: slices.Clone(r.GetScopes()), audience: slices.Clone(r.GetAudience())}
}

type accessToken struct {
	id string
	grant
	refreshID string
	expiry    time.Time
}

type refreshToken struct {
	id string
	grant
	expiry   time.Time
	accessID string
}

// authRequest is a sign-in under way. The storage hands out snapshots, so
// zitadel reads a request while the login form completes it without a
// data race.
type authRequest struct {
	id           string
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	subject      string
	authTime     time.Time
	done         bool
}

func (r *authRequest) snapshot() *authRequest {
	c := *r
	c.scopes = slices.Clone(r.scopes)
	if r.challenge != nil {
		ch := *r.challenge
		c.challenge = &ch
	}
	return &c
}

func (r *authRequest) GetID() string  { return r.id }
func (r *authRequest) GetACR() string { return "" }
func (r *authRequest) GetAudience() []string {
	return []string{r.clientID}
}
func (r *authRequest) GetAuthTime() time.Time                { return r.authTime }
func (r *authRequest) GetClientID() string                   { return r.clientID }
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return r.challenge }
func (r *authRequest) GetNonce() string                      { return r.nonce }
func (r *authRequest) GetRedirectURI() string                { return r.redirectURI }
func (r *authRequest) GetResponseType() oidc.ResponseType    { return r.responseType }
func (r *authRequest) GetResponseMode() oidc.ResponseMode    { return r.responseMode }
func (r *authRequest) GetScopes() []string                   { return r.scopes }
func (r *authRequest) GetState() string                      { return r.state }
func (r *authRequest) GetSubject() string                    { return r.subject }
func (r *authRequest) Done() bool                            { return r.done }
func (r *authRequest) GetAMR() []string {
	if r.done {
		return []string{"pwd"}
	}
	return nil
}

// refreshRequest is a refresh token's grant, as zitadel wants it.
type refreshRequest struct{ grant }

func (r *refreshRequest) GetAMR() []string                 { return r.amr }
func (r *refreshRequest) GetAudience() []string            { return r.audience }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshRequest) GetClientID() string              { return r.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.scopes }
func (r *refreshRequest) GetSubject() string               { return r.subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// signingKey is one RSA key of the provider.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is a signing key as the key set publishes it.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

// client is the one registered client: a web application with a secret,
// allowed http redirect URIs (DevMode) since tests run on loopback.
type client struct{ cfg Config }

func (c *client) GetID() string                       { return c.cfg.ClientID }
func (c *client) RedirectURIs() []string              { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string {
	return loginPath + "?" + authRequestParam + "=" + url.QueryEscape(id)
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return time.Hour }
func (c *client) DevMode() bool                       { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return c.cfg.ClaimsInIDToken }
func (c *client) ClockSkew() time.Duration             { return 0 }
