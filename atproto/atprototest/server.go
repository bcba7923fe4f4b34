// Package atprototest provides an in-process AT Protocol world for tests,
// in the manner of net/http/httptest: one loopback HTTP server that is at
// once a PLC directory, a handle resolver, a PDS and that PDS's OAuth
// authorization server, behaving like the reference @atproto server where
// a client can tell the difference:
//
//   - PLC: GET /did:plc:… answers a DID document whose atproto_pds service
//     is the server itself (or Account.PDS) and whose alsoKnownAs is
//     at://<handle>.
//   - Handle resolver: GET /xrpc/com.atproto.identity.resolveHandle.
//   - Authorization server: /.well-known/oauth-authorization-server (PAR
//     required, iss parameter, client id metadata documents, ES256 DPoP),
//     PAR, an authorize step driven by the test (Approve, Deny), the token
//     endpoint (authorization_code with PKCE S256, refresh_token with
//     single-use refresh tokens whose replay revokes the whole grant), and
//     revocation. Every request needs a DPoP proof with the current nonce
//     (400 use_dpop_nonce otherwise) and client authentication
//     (private_key_jwt verified against a JWKS, or a public client).
//   - Resource server: /.well-known/oauth-protected-resource and /xrpc/…,
//     which answer 401 with WWW-Authenticate: DPoP error="use_dpop_nonce"
//     for a missing or stale nonce and error="invalid_token" for an unknown
//     or expired token, echo the call as JSON and record it.
//
// The fake is stricter than the reference in one way: only the current
// nonce is accepted (the reference also accepts the previous and next
// ones), so RotateNonce makes the very next proof stale.
//
// It listens on 127.0.0.1 over plain HTTP: clients under test must run
// with their development switch (identity.allow_insecure) on.
package atprototest

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Account is an account of the fake world.
type Account struct {
	// DID is a did:plc; AddAccount makes one up when it is empty.
	DID    string
	Handle string
	// PDS, when set, is the PDS endpoint the DID document names instead of
	// the server itself: an account served by another (fake) server.
	PDS string
}

// Options configures a Server. The zero value is a server with the
// reference server's lifetimes and the wall clock.
type Options struct {
	// Accounts exist from the start.
	Accounts []Account
	// AccessTokenTTL is the access token lifetime (default 1h, as the
	// reference server).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the refresh token lifetime (default 14 days).
	RefreshTokenTTL time.Duration
	// RequestTTL bounds a pushed authorization request until Approve
	// (default 5 minutes).
	RequestTTL time.Duration
	// CodeTTL bounds an authorization code until its exchange (default 1
	// minute).
	CodeTTL time.Duration
	// Now is the clock of token, request and code lifetimes and of client
	// assertions (default time.Now). DPoP proofs are checked against the
	// wall clock, since clients stamp them with it.
	Now func() time.Time
	// ClientHTTP fetches client metadata documents and jwks_uri (default:
	// a client that accepts any TLS certificate).
	ClientHTTP *http.Client
}

// Counts are the server's request counters.
type Counts struct {
	// PAR, Token and Revoke count every request to those endpoints,
	// refused ones included.
	PAR, Token, Revoke int
	// Refresh counts refresh_token grants that passed the DPoP and client
	// checks: each is one attempt to spend a refresh token.
	Refresh int
	// XRPC counts every request under /xrpc/ except resolveHandle.
	XRPC int
	// NonceChallenges counts use_dpop_nonce answers (authorization server
	// and resource server).
	NonceChallenges int
	// InvalidToken counts XRPC answers 401 invalid_token.
	InvalidToken int
	// PLC and ResolveHandle count identity lookups.
	PLC, ResolveHandle int
}

// TokenResponse is a token endpoint answer; SetTokenHook may change it.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	Sub          string `json:"sub"`
	// GrantType is the grant answered: authorization_code or refresh_token.
	GrantType string `json:"-"`
}

// XRPCRequest is one recorded request under /xrpc/.
type XRPCRequest struct {
	Method string
	Path   string
	Query  string
	Body   string
	Header http.Header
	// Authorization is the Authorization header as received.
	Authorization string
	// Nonce is the nonce claim of the DPoP proof, if one was sent.
	Nonce string
	// DID is the account of a valid access token, "" without one.
	DID    string
	Status int
}

// Echo is the JSON body the resource server answers with, unless a handler
// was set with HandleXRPC.
type Echo struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Body   string `json:"body"`
	// DID is the account the access token belongs to; "" for a call
	// without credentials.
	DID string `json:"did"`
	// ServiceProxy is the Atproto-Proxy header the call carried.
	ServiceProxy string `json:"service_proxy,omitempty"`
}

// Assertion is a verified client assertion, as the server saw it.
type Assertion struct {
	Endpoint string // "par", "token" or "revoke"
	ClientID string
	KeyID    string
	Alg      string
	Issuer   string
	Subject  string
	Audience []string
	JTI      string
	IssuedAt time.Time
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL: http://127.0.0.1:port. It is the PLC directory
	// URL, the handle resolver URL, the PDS endpoint and the issuer.
	URL string

	srv  *httptest.Server
	opts Options

	mu            sync.Mutex
	accounts      map[string]Account // by DID
	handles       map[string]string  // handle → DID
	nonce         string
	nonceEveryReq bool
	proofReuse    bool
	proofJTIs     map[string]time.Time
	assertionJTIs map[string]time.Time
	requests      map[string]*parRequest // by request_uri
	codes         map[string]*authCode
	usedCodes     map[string]string // code → grant id it produced
	grants        map[string]*grant
	byAccess      map[string]*grant
	byRefresh     map[string]*grant
	oldRefresh    map[string]string // rotated refresh token → grant id
	clients       map[string]registeredClient
	editMeta      func(map[string]any)
	editResource  func(map[string]any)
	intercept     func(http.ResponseWriter, *http.Request) bool
	tokenHook     func(*TokenResponse)
	callbackIss   func(string) string
	tokenDelay    time.Duration
	accessTTL     time.Duration
	xrpcHandlers  map[string]http.Handler
	xrpcLog       []XRPCRequest
	assertions    []Assertion
	revoked       []string
	counts        Counts
}

// New starts a server and closes it when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := NewServer(opts)
	tb.Cleanup(s.Close)
	return s
}

// NewServer starts a server; call Close when done.
func NewServer(opts Options) *Server {
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = time.Hour
	}
	if opts.RefreshTokenTTL <= 0 {
		opts.RefreshTokenTTL = 14 * 24 * time.Hour
	}
	if opts.RequestTTL <= 0 {
		opts.RequestTTL = 5 * time.Minute
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ClientHTTP == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // test servers use self-signed certificates
		opts.ClientHTTP = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	s := &Server{
		opts:          opts,
		accounts:      map[string]Account{},
		handles:       map[string]string{},
		nonce:         randomString(16),
		proofJTIs:     map[string]time.Time{},
		assertionJTIs: map[string]time.Time{},
		requests:      map[string]*parRequest{},
		codes:         map[string]*authCode{},
		usedCodes:     map[string]string{},
		grants:        map[string]*grant{},
		byAccess:      map[string]*grant{},
		byRefresh:     map[string]*grant{},
		oldRefresh:    map[string]string{},
		clients:       map[string]registeredClient{},
		accessTTL:     opts.AccessTokenTTL,
		xrpcHandlers:  map[string]http.Handler{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	for _, a := range opts.Accounts {
		s.AddAccount(a)
	}
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Issuer is the authorization server's issuer: the server's URL.
func (s *Server) Issuer() string { return s.URL }

// NewDID returns a random, well-formed did:plc.
func NewDID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return "did:plc:" + strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// AddAccount adds or replaces an account (keyed by DID) and returns it,
// with its DID filled in. Replacing an account with another PDS moves it.
func (s *Server) AddAccount(a Account) Account {
	if a.DID == "" {
		a.DID = NewDID()
	}
	a.Handle = strings.ToLower(a.Handle)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.accounts[a.DID]; ok && s.handles[old.Handle] == a.DID {
		delete(s.handles, old.Handle)
	}
	s.accounts[a.DID] = a
	if a.Handle != "" {
		s.handles[a.Handle] = a.DID
	}
	return a
}

// RotateNonce replaces the DPoP nonce: the next proof with the old one is
// answered use_dpop_nonce.
func (s *Server) RotateNonce() {
	s.mu.Lock()
	s.nonce = randomString(16)
	s.mu.Unlock()
}

// Nonce returns the current DPoP nonce.
func (s *Server) Nonce() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nonce
}

// SetNonceEveryRequest, when on, rotates the nonce before checking every
// proof, so every proof is stale: a client must give up after one retry.
func (s *Server) SetNonceEveryRequest(on bool) {
	s.mu.Lock()
	s.nonceEveryReq = on
	s.mu.Unlock()
}

// AllowProofReuse, when on, stops refusing DPoP proofs whose jti was seen
// before. Benchmarks use it to call the resource server with one prepared
// proof; tests should leave it off.
func (s *Server) AllowProofReuse(on bool) {
	s.mu.Lock()
	s.proofReuse = on
	s.mu.Unlock()
}

// ExpireAccessTokens makes every access token issued so far expired.
func (s *Server) ExpireAccessTokens() {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		g.accessExpiry = now.Add(-time.Second)
	}
}

// SetAccessTokenTTL changes the lifetime of access tokens issued from now on.
func (s *Server) SetAccessTokenTTL(d time.Duration) {
	s.mu.Lock()
	s.accessTTL = d
	s.mu.Unlock()
}

// SetTokenDelay makes the token endpoint wait d before answering, to widen
// refresh races.
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	s.tokenDelay = d
	s.mu.Unlock()
}

// SetTokenHook lets a test change token responses (claim another sub,
// drop atproto from the scope, …) before they are sent. The grant itself
// is unchanged. Nil removes the hook.
func (s *Server) SetTokenHook(f func(*TokenResponse)) {
	s.mu.Lock()
	s.tokenHook = f
	s.mu.Unlock()
}

// SetCallbackIss makes Approve and Deny put f(issuer) in the callback's
// iss parameter instead of the issuer; "" leaves iss out. Nil restores the
// issuer.
func (s *Server) SetCallbackIss(f func(issuer string) string) {
	s.mu.Lock()
	s.callbackIss = f
	s.mu.Unlock()
}

// EditMetadata lets a test change the authorization server metadata
// document before it is served. Nil removes the edit.
func (s *Server) EditMetadata(f func(map[string]any)) {
	s.mu.Lock()
	s.editMeta = f
	s.mu.Unlock()
}

// EditProtectedResource lets a test change the protected resource
// document before it is served. Nil removes the edit.
func (s *Server) EditProtectedResource(f func(map[string]any)) {
	s.mu.Lock()
	s.editResource = f
	s.mu.Unlock()
}

// SetIntercept sets f to see every request first: when it returns true it
// has answered the request itself, as a failing server would (a 5xx from
// the token endpoint, metadata that cannot be fetched, a PLC that is
// down). Nil removes it. Intercepted requests are not counted.
func (s *Server) SetIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.intercept = f
	s.mu.Unlock()
}

// HandleXRPC serves one method (an NSID such as
// com.atproto.repo.createRecord) with h instead of the echo, after the
// credentials, if any, passed. DIDFromContext tells h whose they were.
func (s *Server) HandleXRPC(nsid string, h http.Handler) {
	s.mu.Lock()
	s.xrpcHandlers[nsid] = h
	s.mu.Unlock()
}

// RevokeAccount deletes every grant of an account, as a user revoking the
// app at their server would: its access and refresh tokens stop working.
func (s *Server) RevokeAccount(did string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.did == did {
			s.deleteGrantLocked(g)
		}
	}
}

// Counts returns a snapshot of the counters.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// XRPCRequests returns every request received under /xrpc/ (except
// resolveHandle), oldest first.
func (s *Server) XRPCRequests() []XRPCRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]XRPCRequest(nil), s.xrpcLog...)
}

// Assertions returns every client assertion the server verified.
func (s *Server) Assertions() []Assertion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Assertion(nil), s.assertions...)
}

// Revoked returns the tokens sent to the revocation endpoint that matched
// a grant.
func (s *Server) Revoked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.revoked...)
}

// ActiveGrants returns how many grants (sessions at the server) are live.
func (s *Server) ActiveGrants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.grants)
}

// TokenValid reports whether an access token would be accepted now.
func (s *Server) TokenValid(accessToken string) bool {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.byAccess[accessToken]
	return ok && now.Before(g.accessExpiry)
}

type didKey struct{}

// DIDFromContext returns, inside a HandleXRPC handler, the account whose
// access token the call carried ("" for a call without credentials).
func DIDFromContext(ctx context.Context) string {
	d, _ := ctx.Value(didKey{}).(string)
	return d
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	intercept := s.intercept
	s.mu.Unlock()
	if intercept != nil && intercept(w, r) {
		return
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/did:"):
		s.plc(w, r)
	case p == "/.well-known/oauth-protected-resource":
		s.protectedResource(w, r)
	case p == "/.well-known/oauth-authorization-server":
		s.serverMetadata(w, r)
	case p == "/oauth/par":
		s.par(w, r)
	case p == "/oauth/authorize":
		s.authorizePage(w, r)
	case p == "/oauth/token":
		s.token(w, r)
	case p == "/oauth/revoke":
		s.revoke(w, r)
	case p == "/xrpc/com.atproto.identity.resolveHandle":
		s.resolveHandle(w, r)
	case strings.HasPrefix(p, "/xrpc/"):
		s.xrpc(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "NotFound", "message": "no such route on the fake"})
	}
}

func (s *Server) plc(w http.ResponseWriter, r *http.Request) {
	did := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	s.counts.PLC++
	a, ok := s.accounts[did]
	s.mu.Unlock()
	if r.Method != http.MethodGet || !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "DID not registered: " + did})
		return
	}
	pds := a.PDS
	if pds == "" {
		pds = s.URL
	}
	doc := map[string]any{
		"@context": []string{"https://www.w3.org/ns/did/v1"},
		"id":       a.DID,
		"service": []map[string]string{{
			"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds,
		}},
	}
	if a.Handle != "" {
		doc["alsoKnownAs"] = []string{"at://" + a.Handle}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) resolveHandle(w http.ResponseWriter, r *http.Request) {
	h := strings.ToLower(r.URL.Query().Get("handle"))
	s.mu.Lock()
	s.counts.ResolveHandle++
	did, ok := s.handles[h]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "InvalidRequest", "message": "Unable to resolve handle"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"did": did})
}

func (s *Server) protectedResource(w http.ResponseWriter, _ *http.Request) {
	doc := map[string]any{
		"resource":                 s.URL,
		"authorization_servers":    []string{s.URL},
		"scopes_supported":         []string{},
		"bearer_methods_supported": []string{"header"},
	}
	s.mu.Lock()
	edit := s.editResource
	s.mu.Unlock()
	if edit != nil {
		edit(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	doc := map[string]any{
		"issuer":                                           s.URL,
		"authorization_endpoint":                           s.URL + "/oauth/authorize",
		"token_endpoint":                                   s.URL + "/oauth/token",
		"pushed_authorization_request_endpoint":            s.URL + "/oauth/par",
		"revocation_endpoint":                              s.URL + "/oauth/revoke",
		"require_pushed_authorization_requests":            true,
		"authorization_response_iss_parameter_supported":   true,
		"client_id_metadata_document_supported":            true,
		"dpop_signing_alg_values_supported":                []string{"RS256", "ES256"},
		"scopes_supported":                                 []string{"atproto", "transition:generic", "transition:chat.bsky"},
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query", "fragment", "form_post"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"none", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"},
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  true,
		"protected_resources":                              []string{s.URL},
	}
	s.mu.Lock()
	edit := s.editMeta
	s.mu.Unlock()
	if edit != nil {
		edit(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pruneLocked drops replay-cache entries older than ten minutes: proofs
// and assertions that old are refused by their iat anyway.
func pruneLocked(m map[string]time.Time, now time.Time) {
	if len(m) < 4096 {
		return
	}
	for k, t := range m {
		if now.Sub(t) > 10*time.Minute {
			delete(m, k)
		}
	}
}
