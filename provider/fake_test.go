package provider

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Values the fake issuer and the tests share.
const (
	testClientID     = "ioproxy-client"
	testClientSecret = "s3cret:with/odd+chars"
	testRedirect     = "https://app.example.com/@/callback"
	testNonce        = "nonce-0123456789"
	testCode         = "code-abcdef"
	testSubject      = "user-1"
	// testVerifier is 43 characters, RFC 7636's shortest.
	testVerifier = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
)

// clock is a settable time for the Client under test; the fake issuer
// signs with it too.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testKey is an RSA signing key and its kid.
type testKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// rsaKeys are made once per test binary: 2048-bit generation is slow
// under -race, and every test needs one or two.
var rsaKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
})

// newTestKey is the i-th shared key under kid.
func newTestKey(t testing.TB, i int, kid string) testKey {
	t.Helper()
	keys, err := rsaKeys()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, priv: keys[i]}
}

// signJWT signs claims with alg and key under kid (none when empty).
func signJWT(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// unsignedJWT is a token with "alg": "none", which anyone can write.
func unsignedJWT(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// fakeIssuer is an OpenID provider's endpoints, each replaceable, on
// 127.0.0.1.
type fakeIssuer struct {
	t     *testing.T
	srv   *httptest.Server
	mux   *http.ServeMux
	clock *clock

	mu sync.Mutex
	// published is the JWKS; signer signs the ID tokens it issues.
	published []testKey
	signer    testKey
	// discoveryStatus, when not 200, is what discovery answers.
	discoveryStatus int
	// discoveryBlock, when set, holds discovery until it is closed.
	discoveryBlock chan struct{}
	// discovery overrides fields of the document (nil value: removed).
	discovery map[string]any
	// token, when set, answers the token endpoint instead of the default.
	token http.HandlerFunc
	// claims changes the default ID token's claims.
	claims func(map[string]any)
	// userinfo answers the userinfo endpoint.
	userinfo    map[string]any
	revokeCode  int
	revokeError string

	hits      map[string]int
	forms     []url.Values
	basicAuth [][2]string
	bearers   []string
}

func newFakeIssuer(t *testing.T, key testKey) *fakeIssuer {
	f := &fakeIssuer{
		t:         t,
		clock:     newClock(),
		published: []testKey{key},
		signer:    key,
		hits:      map[string]int{},
		userinfo:  map[string]any{"sub": testSubject, "email": "info@example.com", "email_verified": true, "name": "Info Name"},
	}
	mux := http.NewServeMux()
	f.mux = mux
	mux.HandleFunc("/.well-known/openid-configuration", f.serveDiscovery)
	mux.HandleFunc("/jwks", f.serveJWKS)
	mux.HandleFunc("/token", f.serveToken)
	mux.HandleFunc("/userinfo", f.serveUserinfo)
	mux.HandleFunc("/revoke", f.serveRevoke)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits[r.URL.Path]++
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// handle adds an endpoint.
func (f *fakeIssuer) handle(path string, h http.HandlerFunc) { f.mux.HandleFunc(path, h) }

func (f *fakeIssuer) issuer() string { return f.srv.URL }

// config is a Client configuration for this issuer.
func (f *fakeIssuer) config() Config {
	return Config{
		Name:         "fake",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		Issuer:       f.issuer(),
		Scopes:       []string{"openid", "email", "profile"},
		RedirectURI:  testRedirect,
		Now:          f.clock.Now,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

func (f *fakeIssuer) client(t *testing.T, edit ...func(*Config)) *Client {
	t.Helper()
	cfg := f.config()
	for _, e := range edit {
		e(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeIssuer) hitsOf(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

func (f *fakeIssuer) set(fn func(f *fakeIssuer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeIssuer) lastForm() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.forms) == 0 {
		return nil
	}
	return f.forms[len(f.forms)-1]
}

func (f *fakeIssuer) lastBasic() [2]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.basicAuth) == 0 {
		return [2]string{}
	}
	return f.basicAuth[len(f.basicAuth)-1]
}

func (f *fakeIssuer) lastBearer() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bearers) == 0 {
		return ""
	}
	return f.bearers[len(f.bearers)-1]
}

func (f *fakeIssuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	status, extra, block := f.discoveryStatus, f.discovery, f.discoveryBlock
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if status != 0 && status != http.StatusOK {
		http.Error(w, "down", status)
		return
	}
	base := f.issuer()
	doc := map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + "/authorize",
		"token_endpoint":                        base + "/token",
		"userinfo_endpoint":                     base + "/userinfo",
		"revocation_endpoint":                   base + "/revoke",
		"jwks_uri":                              base + "/jwks",
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	}
	for k, v := range extra {
		if v == nil {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (f *fakeIssuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	keys := append([]testKey(nil), f.published...)
	f.mu.Unlock()
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := jwk.FromRaw(&k.priv.PublicKey)
		if err != nil {
			f.t.Error(err)
			return
		}
		_ = pub.Set(jwk.KeyIDKey, k.kid)
		_ = pub.Set(jwk.AlgorithmKey, jwa.RS256)
		_ = pub.Set(jwk.KeyUsageKey, "sig")
		_ = set.AddKey(pub)
	}
	writeJSON(w, http.StatusOK, set)
}

func (f *fakeIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	user, pass, _ := r.BasicAuth()
	f.mu.Lock()
	f.forms = append(f.forms, r.PostForm)
	f.basicAuth = append(f.basicAuth, [2]string{user, pass})
	h := f.token
	f.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	writeJSON(w, http.StatusOK, f.tokenAnswer(r.PostForm))
}

// tokenAnswer is the default answer: tokens, and an ID token for the
// nonce this test sends.
func (f *fakeIssuer) tokenAnswer(form url.Values) map[string]any {
	ans := map[string]any{
		"access_token":  "at-1",
		"token_type":    "Bearer",
		"expires_in":    3600,
		"refresh_token": "rt-1",
		"scope":         "openid email profile",
	}
	if form.Get("grant_type") == "refresh_token" {
		ans["access_token"] = "at-2"
		delete(ans, "refresh_token")
		ans["id_token"] = f.idToken(false, "at-2")
		return ans
	}
	ans["id_token"] = f.idToken(true, "at-1")
	return ans
}

// defaultClaims are an ID token's claims that verify.
func (f *fakeIssuer) defaultClaims(withNonce bool, accessToken string) map[string]any {
	now := f.clock.Now()
	c := map[string]any{
		"iss":            f.issuer(),
		"aud":            testClientID,
		"sub":            testSubject,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          "alice@example.com",
		"email_verified": true,
		"name":           "Alice",
		"at_hash":        atHash(accessToken),
	}
	if withNonce {
		c["nonce"] = testNonce
	}
	return c
}

func (f *fakeIssuer) idToken(withNonce bool, accessToken string) string {
	c := f.defaultClaims(withNonce, accessToken)
	f.mu.Lock()
	edit, signer := f.claims, f.signer
	f.mu.Unlock()
	if edit != nil {
		edit(c)
	}
	return signJWT(f.t, jwa.RS256, signer.priv, signer.kid, c)
}

func (f *fakeIssuer) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.bearers = append(f.bearers, r.Header.Get("Authorization"))
	info := f.userinfo
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, info)
}

func (f *fakeIssuer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	user, pass, _ := r.BasicAuth()
	f.mu.Lock()
	f.forms = append(f.forms, r.PostForm)
	f.basicAuth = append(f.basicAuth, [2]string{user, pass})
	code, e := f.revokeCode, f.revokeError
	f.mu.Unlock()
	if code == 0 {
		code = http.StatusOK
	}
	if e != "" {
		writeJSON(w, code, map[string]any{"error": e})
		return
	}
	w.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
