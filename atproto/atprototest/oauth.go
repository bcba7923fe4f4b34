package atprototest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientMetadata is the part of a client metadata document the server
// checks.
type ClientMetadata struct {
	ClientID                    string          `json:"client_id"`
	ApplicationType             string          `json:"application_type"`
	GrantTypes                  []string        `json:"grant_types"`
	ResponseTypes               []string        `json:"response_types"`
	RedirectURIs                []string        `json:"redirect_uris"`
	Scope                       string          `json:"scope"`
	TokenEndpointAuthMethod     string          `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg string          `json:"token_endpoint_auth_signing_alg"`
	JWKS                        json.RawMessage `json:"jwks"`
	JWKSURI                     string          `json:"jwks_uri"`
	DPoPBoundAccessTokens       bool            `json:"dpop_bound_access_tokens"`
	ClientURI                   string          `json:"client_uri"`
}

type registeredClient struct {
	meta ClientMetadata
	jwks []byte
}

// RegisterClient makes the server use metadata (a client metadata
// document) for its client_id instead of fetching it, and jwks (a JWK set,
// may be nil for a public client or when the metadata carries jwks or
// jwks_uri) to verify its client assertions.
func (s *Server) RegisterClient(metadata, jwks []byte) error {
	var m ClientMetadata
	if err := json.Unmarshal(metadata, &m); err != nil {
		return fmt.Errorf("client metadata: %w", err)
	}
	if err := validateClientMetadata(m.ClientID, &m); err != nil {
		return err
	}
	if jwks != nil {
		if _, err := jwk.Parse(jwks); err != nil {
			return fmt.Errorf("client jwks: %w", err)
		}
	}
	s.mu.Lock()
	s.clients[m.ClientID] = registeredClient{meta: m, jwks: jwks}
	s.mu.Unlock()
	return nil
}

// oauthError is an OAuth error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func invalidRequest(format string, args ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

func invalidGrant(format string, args ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", fmt.Sprintf(format, args...)}
}

func invalidClient(format string, args ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_client", fmt.Sprintf(format, args...)}
}

// writeAS answers from the authorization server; every answer carries the
// current nonce, as the reference server's do.
func (s *Server) writeAS(w http.ResponseWriter, status int, v any) {
	w.Header().Set("DPoP-Nonce", s.Nonce())
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, v)
}

func (s *Server) writeOAuthError(w http.ResponseWriter, e *oauthError) {
	s.writeAS(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

func (s *Server) writeProofError(w http.ResponseWriter, e *proofError) {
	if e.nonce {
		s.writeOAuthError(w, &oauthError{http.StatusBadRequest, "use_dpop_nonce", e.msg})
		return
	}
	s.writeOAuthError(w, &oauthError{http.StatusBadRequest, "invalid_dpop_proof", e.msg})
}

// readForm parses an application/x-www-form-urlencoded POST body.
func readForm(r *http.Request) (url.Values, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, invalidRequest("method %s not allowed", r.Method)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded, not %q", r.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, invalidRequest("read body: %v", err)
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, invalidRequest("form: %v", err)
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, invalidRequest("parameter %s repeated", k)
		}
	}
	return form, nil
}

// clientAuth is an authenticated client.
type clientAuth struct {
	id     string
	meta   ClientMetadata
	method string // "none" or "private_key_jwt"
	kid    string
}

// authenticateClient finds the client's metadata (registered, the
// localhost client's virtual document, or fetched from the client id) and
// checks its authentication.
func (s *Server) authenticateClient(ctx context.Context, form url.Values, endpoint string) (*clientAuth, *oauthError) {
	id := form.Get("client_id")
	if id == "" {
		return nil, invalidRequest("client_id required")
	}
	meta, jwks, oerr := s.client(ctx, id)
	if oerr != nil {
		return nil, oerr
	}
	ca := &clientAuth{id: id, meta: *meta, method: meta.TokenEndpointAuthMethod}
	switch meta.TokenEndpointAuthMethod {
	case "none":
		if form.Get("client_assertion") != "" {
			return nil, invalidClient("client %s is public but sent a client assertion", id)
		}
		return ca, nil
	case "private_key_jwt":
	default:
		return nil, invalidClient("unsupported token_endpoint_auth_method %q", meta.TokenEndpointAuthMethod)
	}
	if form.Get("client_assertion_type") != assertionType {
		return nil, invalidClient("client_assertion_type must be %s", assertionType)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, invalidClient("client_assertion required for %s", id)
	}
	if jwks == nil {
		switch {
		case len(meta.JWKS) > 0:
			jwks = meta.JWKS
		case meta.JWKSURI != "":
			b, err := s.fetchJSON(ctx, meta.JWKSURI)
			if err != nil {
				return nil, invalidClient("fetch jwks_uri of %s: %v", id, err)
			}
			jwks = b
		}
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, invalidClient("client jwks: %v", err)
	}
	a, oerr := s.verifyAssertion(assertion, id, set)
	if oerr != nil {
		return nil, oerr
	}
	a.Endpoint = endpoint
	s.mu.Lock()
	s.assertions = append(s.assertions, *a)
	s.mu.Unlock()
	ca.kid = a.KeyID
	return ca, nil
}

// verifyAssertion checks an RFC 7523 client assertion: ES256, a kid naming
// a key of the client's set, iss = sub = client_id, aud = issuer, a recent
// iat and a jti never seen before.
func (s *Server) verifyAssertion(assertion, clientID string, set jwk.Set) (*Assertion, *oauthError) {
	msg, err := jws.Parse([]byte(assertion))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, invalidClient("client assertion is not a JWS")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if hdr.Algorithm() != jwa.ES256 {
		return nil, invalidClient("client assertion alg %q, want ES256", hdr.Algorithm())
	}
	kid := hdr.KeyID()
	if kid == "" {
		return nil, invalidClient("client assertion has no kid")
	}
	key, ok := set.LookupKeyID(kid)
	if !ok {
		return nil, invalidClient("client assertion kid %q is not in the client's JWKS", kid)
	}
	now := s.opts.Now()
	tok, err := jwt.Parse([]byte(assertion),
		jwt.WithKey(jwa.ES256, key),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(time.Minute),
		jwt.WithIssuer(clientID),
		jwt.WithSubject(clientID),
		jwt.WithAudience(s.URL),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
		jwt.WithRequiredClaim(jwt.JwtIDKey),
	)
	if err != nil {
		return nil, invalidClient("client assertion: %v", err)
	}
	if now.Sub(tok.IssuedAt()) > 5*time.Minute {
		return nil, invalidClient("client assertion is too old")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.assertionJTIs[tok.JwtID()]; seen {
		return nil, invalidClient("client assertion replayed (jti seen before)")
	}
	pruneLocked(s.assertionJTIs, now)
	s.assertionJTIs[tok.JwtID()] = now
	return &Assertion{
		ClientID: clientID, KeyID: kid, Alg: hdr.Algorithm().String(),
		Issuer: tok.Issuer(), Subject: tok.Subject(), Audience: tok.Audience(),
		JTI: tok.JwtID(), IssuedAt: tok.IssuedAt(),
	}, nil
}

// client returns the metadata of a client id, and the JWKS the test
// registered for it, if any.
func (s *Server) client(ctx context.Context, id string) (*ClientMetadata, []byte, *oauthError) {
	s.mu.Lock()
	rc, ok := s.clients[id]
	s.mu.Unlock()
	if ok {
		m := rc.meta
		return &m, rc.jwks, nil
	}
	u, err := url.Parse(id)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, invalidClient("client_id %q is not a URL", id)
	}
	if u.Scheme == "http" && u.Host == "localhost" {
		m, err := localhostClient(u)
		if err != nil {
			return nil, nil, invalidClient("%v", err)
		}
		return m, nil, nil
	}
	b, err := s.fetchJSON(ctx, id)
	if err != nil {
		return nil, nil, invalidClient("fetch client metadata %s: %v", id, err)
	}
	var m ClientMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, invalidClient("client metadata %s: %v", id, err)
	}
	if err := validateClientMetadata(id, &m); err != nil {
		return nil, nil, &oauthError{http.StatusBadRequest, "invalid_client_metadata", err.Error()}
	}
	return &m, nil, nil
}

// localhostClient is the virtual metadata of the localhost client id
// exception: http://localhost (no port, no path), redirect_uri and scope
// from the query, a public client.
func localhostClient(u *url.URL) (*ClientMetadata, error) {
	if u.Port() != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("loopback client_id %q must be http://localhost with only a query", u.String())
	}
	q := u.Query()
	m := &ClientMetadata{
		ClientID: u.String(), ApplicationType: "native",
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		RedirectURIs: q["redirect_uri"], Scope: q.Get("scope"),
		TokenEndpointAuthMethod: "none", DPoPBoundAccessTokens: true,
	}
	if len(m.RedirectURIs) == 0 {
		m.RedirectURIs = []string{"http://127.0.0.1/", "http://[::1]/"}
	}
	for _, r := range m.RedirectURIs {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || (ru.Hostname() != "127.0.0.1" && ru.Hostname() != "::1") {
			return nil, fmt.Errorf("loopback client redirect_uri %q must be http://127.0.0.1 or http://[::1]", r)
		}
	}
	if m.Scope == "" {
		m.Scope = "atproto"
	}
	return m, nil
}

// validateClientMetadata applies the AT Protocol profile's rules to a
// client metadata document.
func validateClientMetadata(id string, m *ClientMetadata) error {
	switch {
	case m.ClientID != id:
		return fmt.Errorf("client_id %q in the document differs from the URL it was fetched from (%s)", m.ClientID, id)
	case !m.DPoPBoundAccessTokens:
		return errors.New("dpop_bound_access_tokens must be true")
	case len(m.RedirectURIs) == 0:
		return errors.New("redirect_uris required")
	case !slices.Contains(m.GrantTypes, "authorization_code"):
		return errors.New("grant_types must include authorization_code")
	case !slices.Contains(m.ResponseTypes, "code"):
		return errors.New("response_types must include code")
	case !slices.Contains(strings.Fields(m.Scope), "atproto"):
		return errors.New("scope must include atproto")
	case m.ApplicationType != "" && m.ApplicationType != "web" && m.ApplicationType != "native":
		return fmt.Errorf("application_type %q", m.ApplicationType)
	}
	switch m.TokenEndpointAuthMethod {
	case "none":
		if len(m.JWKS) > 0 || m.JWKSURI != "" {
			return errors.New("a public client must not publish keys")
		}
	case "private_key_jwt":
		if m.TokenEndpointAuthSigningAlg != "ES256" {
			return fmt.Errorf("token_endpoint_auth_signing_alg %q, want ES256", m.TokenEndpointAuthSigningAlg)
		}
		if (len(m.JWKS) > 0) == (m.JWKSURI != "") {
			return errors.New("exactly one of jwks and jwks_uri is required")
		}
	default:
		return fmt.Errorf("token_endpoint_auth_method %q", m.TokenEndpointAuthMethod)
	}
	if m.ClientURI != "" {
		cu, err1 := url.Parse(m.ClientURI)
		iu, err2 := url.Parse(id)
		if err1 != nil || err2 != nil || !strings.EqualFold(cu.Hostname(), iu.Hostname()) {
			return fmt.Errorf("client_uri %q is not on the client id's host", m.ClientURI)
		}
	}
	return nil
}

// fetchJSON gets a JSON document the way the reference server does: 200,
// application/json, no redirects, small.
func (s *Server) fetchJSON(ctx context.Context, rawURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	c := *s.opts.ClientHTTP
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("Content-Type %q, want application/json", resp.Header.Get("Content-Type"))
	}
	return io.ReadAll(io.LimitReader(resp.Body, 256<<10))
}

type parRequest struct {
	uri         string
	client      clientAuth
	redirectURI string
	scope       string
	state       string
	challenge   string
	jkt         string
	loginHint   string
	expiry      time.Time
}

type authCode struct {
	code   string
	req    *parRequest
	did    string
	expiry time.Time
}

// grant is a session at the server: one chain of tokens.
type grant struct {
	id            string
	clientID      string
	method, kid   string
	did           string
	scope         string
	jkt           string
	access        string
	accessExpiry  time.Time
	refresh       string
	refreshExpiry time.Time
}

// clientRequest reads what PAR and the token endpoint both start with: the
// form, a valid DPoP proof and an authenticated client. It answers the
// error itself when one is missing.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request, endpoint string) (url.Values, *proof, *clientAuth, bool) {
	form, oerr := readForm(r)
	if oerr != nil {
		s.writeOAuthError(w, oerr)
		return nil, nil, nil, false
	}
	pr, perr := s.checkProof(r, "")
	if perr != nil {
		s.writeProofError(w, perr)
		return nil, nil, nil, false
	}
	ca, oerr := s.authenticateClient(r.Context(), form, endpoint)
	if oerr != nil {
		s.writeOAuthError(w, oerr)
		return nil, nil, nil, false
	}
	return form, pr, ca, true
}

func (s *Server) par(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.PAR++
	s.mu.Unlock()
	form, pr, ca, ok := s.clientRequest(w, r, "par")
	if !ok {
		return
	}
	req := &parRequest{
		uri: "urn:ietf:params:oauth:request_uri:req-" + randomString(16), client: *ca,
		redirectURI: form.Get("redirect_uri"), scope: form.Get("scope"), state: form.Get("state"),
		challenge: form.Get("code_challenge"), jkt: pr.jkt, loginHint: form.Get("login_hint"),
		expiry: s.opts.Now().Add(s.opts.RequestTTL),
	}
	var oerr *oauthError
	switch {
	case form.Get("response_type") != "code":
		oerr = invalidRequest("response_type must be code")
	case form.Has("request_uri") || form.Has("request"):
		oerr = invalidRequest("request and request_uri are not allowed in a pushed request")
	case req.redirectURI == "":
		oerr = invalidRequest("redirect_uri required")
	case !slices.Contains(ca.meta.RedirectURIs, req.redirectURI):
		oerr = invalidRequest("redirect_uri %q is not one of the client's", req.redirectURI)
	case form.Get("code_challenge_method") != "S256" || len(req.challenge) != 43:
		oerr = invalidRequest("PKCE S256 code_challenge required")
	case req.state == "":
		oerr = invalidRequest("state required")
	case form.Has("dpop_jkt") && form.Get("dpop_jkt") != pr.jkt:
		oerr = invalidRequest("dpop_jkt does not match the DPoP proof's key")
	case !slices.Contains(strings.Fields(req.scope), "atproto"):
		oerr = &oauthError{http.StatusBadRequest, "invalid_scope", "scope must include atproto"}
	}
	if oerr == nil {
		allowed := strings.Fields(ca.meta.Scope)
		for _, sc := range strings.Fields(req.scope) {
			if !slices.Contains(allowed, sc) {
				oerr = &oauthError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not in the client's metadata", sc)}
			}
		}
	}
	if oerr != nil {
		s.writeOAuthError(w, oerr)
		return
	}
	s.mu.Lock()
	s.requests[req.uri] = req
	s.mu.Unlock()
	s.writeAS(w, http.StatusCreated, map[string]any{"request_uri": req.uri, "expires_in": int(s.opts.RequestTTL.Seconds())})
}

// authorizePage stands in for the sign-in and consent pages, which tests
// skip with Approve.
func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	uri := r.URL.Query().Get("request_uri")
	s.mu.Lock()
	_, ok := s.requests[uri]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "unknown request_uri"})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, "<!doctype html><title>atprototest</title><p>The test approves this request with Server.Approve.")
}

// Approve signs did in and consents to the pushed request requestURI, as
// a user would on the server's pages. It returns the callback URL the
// browser would be sent to: redirect_uri?code=…&state=…&iss=….
func (s *Server) Approve(requestURI, did string) (string, error) {
	return s.finish(requestURI, "", did, false)
}

// ApproveURL is Approve for the authorization URL a client sends the
// browser to (…/oauth/authorize?client_id=…&request_uri=…).
func (s *Server) ApproveURL(authorizeURL, did string) (string, error) {
	uri, clientID, err := s.parseAuthorizeURL(authorizeURL)
	if err != nil {
		return "", err
	}
	return s.finish(uri, clientID, did, false)
}

// Deny declines the pushed request, as a user pressing "Deny" would: the
// callback carries error=access_denied.
func (s *Server) Deny(authorizeURL string) (string, error) {
	uri, clientID, err := s.parseAuthorizeURL(authorizeURL)
	if err != nil {
		return "", err
	}
	return s.finish(uri, clientID, "", true)
}

func (s *Server) parseAuthorizeURL(raw string) (requestURI, clientID string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("authorize URL: %w", err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != s.URL+"/oauth/authorize" {
		return "", "", fmt.Errorf("authorize URL %s is not this server's authorization endpoint", got)
	}
	q := u.Query()
	for k := range q {
		if k != "client_id" && k != "request_uri" {
			return "", "", fmt.Errorf("authorize URL carries %q: only client_id and request_uri belong there", k)
		}
	}
	return q.Get("request_uri"), q.Get("client_id"), nil
}

func (s *Server) finish(requestURI, clientID, did string, deny bool) (string, error) {
	now := s.opts.Now()
	s.mu.Lock()
	req, ok := s.requests[requestURI]
	delete(s.requests, requestURI)
	_, known := s.accounts[did]
	issHook := s.callbackIss
	var code string
	if ok && !deny && known && !now.After(req.expiry) && (clientID == "" || clientID == req.client.id) {
		code = "cod-" + randomString(24)
		s.codes[code] = &authCode{code: code, req: req, did: did, expiry: now.Add(s.opts.CodeTTL)}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		return "", fmt.Errorf("request_uri %q is unknown or was used already", requestURI)
	case clientID != "" && clientID != req.client.id:
		return "", fmt.Errorf("authorize URL names client %q, the request was pushed by %q", clientID, req.client.id)
	case now.After(req.expiry):
		return "", fmt.Errorf("request %s expired", requestURI)
	case !deny && !known:
		return "", fmt.Errorf("no account %s on this server", did)
	}
	iss := s.URL
	if issHook != nil {
		iss = issHook(iss)
	}
	u, err := url.Parse(req.redirectURI)
	if err != nil {
		return "", err
	}
	q := u.Query()
	if deny {
		q.Set("error", "access_denied")
		q.Set("error_description", "Access denied")
	} else {
		q.Set("code", code)
	}
	q.Set("state", req.state)
	if iss != "" {
		q.Set("iss", iss)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// RequestLoginHint returns the login_hint of a pushed request that is
// still pending, for tests that check what the client sent.
func (s *Server) RequestLoginHint(authorizeURL string) (string, bool) {
	uri, _, err := s.parseAuthorizeURL(authorizeURL)
	if err != nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[uri]
	if !ok {
		return "", false
	}
	return req.loginHint, true
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Token++
	delay := s.tokenDelay
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	form, pr, ca, ok := s.clientRequest(w, r, "token")
	if !ok {
		return
	}
	var (
		resp *TokenResponse
		oerr *oauthError
	)
	switch form.Get("grant_type") {
	case "authorization_code":
		resp, oerr = s.codeGrant(form, ca, pr)
	case "refresh_token":
		resp, oerr = s.refreshGrant(form, ca, pr)
	default:
		oerr = &oauthError{http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q", form.Get("grant_type"))}
	}
	if oerr != nil {
		s.writeOAuthError(w, oerr)
		return
	}
	s.mu.Lock()
	hook := s.tokenHook
	s.mu.Unlock()
	if hook != nil {
		hook(resp)
	}
	s.writeAS(w, http.StatusOK, resp)
}

func (s *Server) codeGrant(form url.Values, ca *clientAuth, pr *proof) (*TokenResponse, *oauthError) {
	now := s.opts.Now()
	code := form.Get("code")
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	if !ok {
		if gid, used := s.usedCodes[code]; used {
			// As the reference server: a replayed code revokes what the
			// code produced.
			if g, live := s.grants[gid]; live {
				s.deleteGrantLocked(g)
			}
			return nil, invalidGrant("Code replayed")
		}
		return nil, invalidGrant("Invalid code")
	}
	delete(s.codes, code)
	s.usedCodes[code] = ""
	req := c.req
	switch {
	case now.After(c.expiry):
		return nil, invalidGrant("Code expired")
	case ca.id != req.client.id:
		return nil, invalidGrant("code was issued to another client")
	case ca.method != req.client.method || ca.kid != req.client.kid:
		return nil, invalidGrant("client authentication differs from the pushed request's")
	case form.Get("redirect_uri") != req.redirectURI:
		return nil, invalidGrant("redirect_uri differs from the pushed request's")
	case pr.jkt != req.jkt:
		return nil, &oauthError{http.StatusBadRequest, "invalid_dpop_key_binding", "DPoP key differs from the one of the pushed request"}
	}
	verifier := form.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	if verifier == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != req.challenge {
		return nil, invalidGrant("PKCE code_verifier does not match the code_challenge")
	}
	g := &grant{
		id: randomString(12), clientID: ca.id, method: ca.method, kid: ca.kid, did: c.did,
		scope: req.scope, jkt: req.jkt, refreshExpiry: now.Add(s.opts.RefreshTokenTTL),
	}
	s.usedCodes[code] = g.id
	s.grants[g.id] = g
	return s.issueLocked(g, now, "authorization_code"), nil
}

func (s *Server) refreshGrant(form url.Values, ca *clientAuth, pr *proof) (*TokenResponse, *oauthError) {
	now := s.opts.Now()
	rt := form.Get("refresh_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Refresh++
	g, ok := s.byRefresh[rt]
	if !ok {
		if gid, old := s.oldRefresh[rt]; old {
			// As the reference server: a replayed refresh token ends the
			// whole session, the tokens issued since included.
			if g, live := s.grants[gid]; live {
				s.deleteGrantLocked(g)
			}
			return nil, invalidGrant("Refresh token replayed")
		}
		return nil, invalidGrant("Invalid refresh token")
	}
	switch {
	case now.After(g.refreshExpiry):
		s.deleteGrantLocked(g)
		return nil, invalidGrant("Refresh token expired")
	case ca.id != g.clientID:
		return nil, invalidGrant("refresh token was issued to another client")
	case ca.method != g.method || ca.kid != g.kid:
		return nil, invalidGrant("client authentication differs from the one the session started with")
	case pr.jkt != g.jkt:
		return nil, &oauthError{http.StatusBadRequest, "invalid_dpop_key_binding", "DPoP key differs from the session's"}
	}
	s.oldRefresh[g.refresh] = g.id
	delete(s.byRefresh, g.refresh)
	delete(s.byAccess, g.access)
	return s.issueLocked(g, now, "refresh_token"), nil
}

// issueLocked gives g a new access and refresh token.
func (s *Server) issueLocked(g *grant, now time.Time, grantType string) *TokenResponse {
	g.access = "at-" + randomString(24)
	g.accessExpiry = now.Add(s.accessTTL)
	g.refresh = "rt-" + randomString(24)
	s.byAccess[g.access] = g
	s.byRefresh[g.refresh] = g
	return &TokenResponse{
		AccessToken: g.access, TokenType: "DPoP", ExpiresIn: int64(s.accessTTL / time.Second),
		RefreshToken: g.refresh, Scope: g.scope, Sub: g.did, GrantType: grantType,
	}
}

func (s *Server) deleteGrantLocked(g *grant) {
	delete(s.grants, g.id)
	delete(s.byAccess, g.access)
	delete(s.byRefresh, g.refresh)
	for rt, id := range s.oldRefresh {
		if id == g.id {
			delete(s.oldRefresh, rt)
		}
	}
}

// revoke is RFC 7009: unknown tokens are not an error.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Revoke++
	s.mu.Unlock()
	form, oerr := readForm(r)
	if oerr != nil {
		s.writeOAuthError(w, oerr)
		return
	}
	if r.Header.Get("DPoP") != "" {
		if _, perr := s.checkProof(r, ""); perr != nil {
			s.writeProofError(w, perr)
			return
		}
	}
	if form.Get("client_id") != "" {
		if _, oerr := s.authenticateClient(r.Context(), form, "revoke"); oerr != nil {
			s.writeOAuthError(w, oerr)
			return
		}
	}
	tok := form.Get("token")
	s.mu.Lock()
	g := s.byAccess[tok]
	if g == nil {
		g = s.byRefresh[tok]
	}
	if g == nil {
		if gid, ok := s.oldRefresh[tok]; ok {
			g = s.grants[gid]
		}
	}
	if g != nil {
		s.deleteGrantLocked(g)
		s.revoked = append(s.revoked, tok)
	}
	s.mu.Unlock()
	s.writeAS(w, http.StatusOK, map[string]any{})
}
