package dpop

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifyProof checks a proof the way a server does: with the key embedded
// in its own header, then returns header and claims.
func verifyProof(t *testing.T, proof string) (jws.Headers, map[string]any) {
	t.Helper()
	msg, err := jws.Parse([]byte(proof))
	if err != nil {
		t.Fatalf("jws.Parse: %v", err)
	}
	if n := len(msg.Signatures()); n != 1 {
		t.Fatalf("%d signatures", n)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if hdr.Type() != "dpop+jwt" {
		t.Errorf("typ = %q", hdr.Type())
	}
	if hdr.Algorithm() != jwa.ES256 {
		t.Errorf("alg = %q", hdr.Algorithm())
	}
	embedded := hdr.JWK()
	if embedded == nil {
		t.Fatal("no jwk header")
	}
	if isPriv, _ := jwk.IsPrivateKey(embedded); isPriv {
		t.Fatal("jwk header carries the private key")
	}
	if _, ok := embedded.Get("d"); ok {
		t.Fatal("jwk header has a d member")
	}
	payload, err := jws.Verify([]byte(proof), jws.WithKey(jwa.ES256, embedded))
	if err != nil {
		t.Fatalf("jws.Verify: %v", err)
	}
	// jwt.Parse validates iat and the signature once more.
	if _, err := jwt.Parse([]byte(proof), jwt.WithKey(jwa.ES256, embedded), jwt.WithValidate(true), jwt.WithAcceptableSkew(time.Minute)); err != nil {
		t.Fatalf("jwt.Parse: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return hdr, claims
}

func TestProofVerifies(t *testing.T) {
	k := mustKey(t)
	now := time.Now()
	proof, err := k.Proof(ProofParams{Method: "POST", URL: "https://PDS.example.com:443/xrpc/com.atproto.repo.createRecord?x=1#frag", Nonce: "n-1", AccessToken: "at-123", IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	hdr, c := verifyProof(t, proof)
	if !jwk.Equal(hdr.JWK(), k.PublicJWK()) {
		t.Error("header jwk is not the key's public JWK")
	}
	want := map[string]any{
		"htm":   "POST",
		"htu":   "https://pds.example.com/xrpc/com.atproto.repo.createRecord",
		"iat":   float64(now.Unix()),
		"nonce": "n-1",
		"ath":   AccessTokenHash("at-123"),
	}
	for name, v := range want {
		if c[name] != v {
			t.Errorf("claim %s = %v, want %v", name, c[name], v)
		}
	}
	sum := sha256.Sum256([]byte("at-123"))
	if c["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("ath = %v", c["ath"])
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		t.Errorf("jti = %q, want at least 16 chars", jti)
	}
	if _, ok := c["iss"]; ok {
		t.Error("iss present without Issuer")
	}
}

func TestProofOptionalClaims(t *testing.T) {
	k := mustKey(t)
	proof, err := k.Proof(ProofParams{Method: "GET", URL: "https://as.example/oauth/par"})
	if err != nil {
		t.Fatal(err)
	}
	_, c := verifyProof(t, proof)
	for _, name := range []string{"nonce", "ath", "iss"} {
		if _, ok := c[name]; ok {
			t.Errorf("claim %s present, want omitted", name)
		}
	}
	if iat := int64(c["iat"].(float64)); time.Since(time.Unix(iat, 0)) > time.Minute {
		t.Errorf("iat = %d, not now", iat)
	}
	proof, err = k.Proof(ProofParams{Method: "POST", URL: "https://as.example/oauth/token", Issuer: "https://app.example/client-metadata.json"})
	if err != nil {
		t.Fatal(err)
	}
	if _, c := verifyProof(t, proof); c["iss"] != "https://app.example/client-metadata.json" {
		t.Errorf("iss = %v", c["iss"])
	}
}

func TestProofUniqueJTI(t *testing.T) {
	k := mustKey(t)
	seen := map[string]bool{}
	for range 200 {
		proof, err := k.Proof(ProofParams{Method: "GET", URL: "https://pds.example/"})
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[1])
		var c proofClaims
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		if seen[c.JTI] {
			t.Fatalf("jti %q repeated", c.JTI)
		}
		seen[c.JTI] = true
	}
}

func TestProofErrors(t *testing.T) {
	k := mustKey(t)
	for _, p := range []ProofParams{
		{Method: "", URL: "https://a.example/"},
		{Method: "GET X", URL: "https://a.example/"},
		{Method: "GET", URL: "/relative"},
		{Method: "GET", URL: "ftp://a.example/"},
		{Method: "GET", URL: "https:///nohost"},
		{Method: "GET", URL: "https://a.example:xx/"},
		{Method: "GET", URL: "::bad"},
	} {
		if _, err := k.Proof(p); err == nil {
			t.Errorf("Proof(%+v) succeeded, want error", p)
		}
	}
	var nilKey *Key
	if _, err := nilKey.Proof(ProofParams{Method: "GET", URL: "https://a.example/"}); err == nil {
		t.Error("nil key: want error")
	}
}

func TestHTU(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://pds.example.com/xrpc/foo", "https://pds.example.com/xrpc/foo"},
		{"https://pds.example.com/xrpc/foo?a=b&c=d", "https://pds.example.com/xrpc/foo"},
		{"https://pds.example.com/xrpc/foo#frag", "https://pds.example.com/xrpc/foo"},
		{"https://pds.example.com/xrpc/foo?a=b#frag", "https://pds.example.com/xrpc/foo"},
		{"https://pds.example.com/xrpc/foo?", "https://pds.example.com/xrpc/foo"},
		{"HTTPS://PDS.Example.COM/XRPC/Foo", "https://pds.example.com/XRPC/Foo"},
		{"https://pds.example.com:443/x", "https://pds.example.com/x"},
		{"https://pds.example.com:8443/x", "https://pds.example.com:8443/x"},
		{"http://localhost:80/x", "http://localhost/x"},
		{"http://localhost:2583/oauth/par", "http://localhost:2583/oauth/par"},
		{"http://localhost:443/x", "http://localhost:443/x"},
		{"https://pds.example.com", "https://pds.example.com/"},
		{"https://pds.example.com?x=1", "https://pds.example.com/"},
		{"https://user:pw@pds.example.com/x", "https://pds.example.com/x"},
		{"https://pds.example.com/a%20b/c", "https://pds.example.com/a%20b/c"},
		{"https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"},
		{"https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/x"},
		{"https://127.0.0.1:8080/x", "https://127.0.0.1:8080/x"},
	}
	for _, tt := range tests {
		got, err := HTU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("HTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://pds.example.com/xrpc/foo?x", "https://pds.example.com:443"},
		{"https://PDS.example.com:443", "https://pds.example.com:443"},
		{"HTTP://localhost:2583/oauth/token", "http://localhost:2583"},
		{"http://localhost/", "http://localhost:80"},
		{"https://[::1]/x", "https://[::1]:443"},
	}
	for _, tt := range tests {
		got, err := Origin(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Origin(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "/x", "mailto:a@b.example", "https://"} {
		if _, err := Origin(bad); err == nil {
			t.Errorf("Origin(%q): want error", bad)
		}
	}
}

func TestKeyJSONRoundTrip(t *testing.T) {
	k := mustKey(t)
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["kty"] != "EC" || m["crv"] != "P-256" || m["d"] == nil || m["alg"] != "ES256" {
		t.Fatalf("stored JWK = %s", b)
	}
	k2, err := ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.priv.Equal(k.priv) || k2.Thumbprint() != k.Thumbprint() {
		t.Fatal("round trip changed the key")
	}
	// As a field of a stored struct.
	type session struct {
		DPoPKey *Key `json:"dpop_key"`
	}
	sb, err := json.Marshal(session{DPoPKey: k})
	if err != nil {
		t.Fatal(err)
	}
	var s session
	if err := json.Unmarshal(sb, &s); err != nil {
		t.Fatal(err)
	}
	if !s.DPoPKey.priv.Equal(k.priv) {
		t.Fatal("struct round trip changed the key")
	}
	proof, err := s.DPoPKey.Proof(ProofParams{Method: "GET", URL: "https://pds.example/"})
	if err != nil {
		t.Fatal(err)
	}
	verifyProof(t, proof)
}

func TestParseKeyErrors(t *testing.T) {
	k := mustKey(t)
	pub, _ := json.Marshal(k.PublicJWK())
	for name, in := range map[string]string{
		"garbage":   "not json",
		"empty":     "{}",
		"public":    string(pub),
		"rsa":       `{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
		"oct":       `{"kty":"oct","k":"AAAA"}`,
		"wrong crv": `{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA","d":"AAAA"}`,
	} {
		if _, err := ParseKey([]byte(in)); err == nil {
			t.Errorf("%s: ParseKey succeeded, want error", name)
		}
	}
}

func TestThumbprint(t *testing.T) {
	k := mustKey(t)
	tp, err := k.PublicJWK().Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if k.Thumbprint() != base64.RawURLEncoding.EncodeToString(tp) {
		t.Error("thumbprint mismatch")
	}
}

func TestNoncesConcurrent(t *testing.T) {
	var n Nonces
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				u := fmt.Sprintf("https://pds%d.example.com/xrpc/x", i%10)
				n.Set(u, fmt.Sprintf("nonce-%d-%d", g, i))
				_ = n.Get(u)
			}
		}()
	}
	wg.Wait()
	if n.Len() != 10 {
		t.Errorf("Len = %d, want 10", n.Len())
	}
}

func TestNonces(t *testing.T) {
	var n Nonces
	if n.Get("https://as.example/oauth/par") != "" {
		t.Fatal("empty store returned a nonce")
	}
	if !n.Set("https://AS.example:443/oauth/par", "a") {
		t.Error("first Set: changed = false")
	}
	if got := n.Get("https://as.example/oauth/token?x"); got != "a" {
		t.Errorf("same origin: got %q", got)
	}
	if n.Set("https://as.example/oauth/token", "a") {
		t.Error("same nonce: changed = true")
	}
	if !n.Set("https://as.example/oauth/token", "b") {
		t.Error("new nonce: changed = false")
	}
	if got := n.Get("https://as.example:8443/"); got != "" {
		t.Errorf("other port shares nonce: %q", got)
	}
	if got := n.Get("http://as.example/"); got != "" {
		t.Errorf("other scheme shares nonce: %q", got)
	}
	if n.Set("https://as.example/", "") || n.Set("::bad", "x") {
		t.Error("empty nonce or bad URL: changed = true")
	}

	small := Nonces{Max: 3}
	for i := range 10 {
		small.Set(fmt.Sprintf("https://h%d.example/", i), "x")
	}
	if small.Len() > 3 {
		t.Errorf("Len = %d, want ≤ 3", small.Len())
	}
	if small.Get("https://h9.example/") != "x" {
		t.Error("latest entry evicted")
	}
}

// proofJWX is the same proof made through jwx, kept to compare costs.
func proofJWX(k *Key, p ProofParams) (string, error) {
	htu, err := HTU(p.URL)
	if err != nil {
		return "", err
	}
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	tok := jwt.New()
	tok.Set(jwt.JwtIDKey, jti)
	tok.Set("htm", p.Method)
	tok.Set("htu", htu)
	tok.Set(jwt.IssuedAtKey, time.Now())
	if p.Nonce != "" {
		tok.Set("nonce", p.Nonce)
	}
	if p.AccessToken != "" {
		tok.Set("ath", AccessTokenHash(p.AccessToken))
	}
	hdr := jws.NewHeaders()
	hdr.Set(jws.TypeKey, "dpop+jwt")
	hdr.Set(jws.JWKKey, k.public)
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, k.priv, jws.WithProtectedHeaders(hdr)))
	return string(b), err
}

func TestProofJWXEquivalent(t *testing.T) {
	k := mustKey(t)
	proof, err := proofJWX(k, ProofParams{Method: "GET", URL: "https://pds.example/x", Nonce: "n", AccessToken: "t"})
	if err != nil {
		t.Fatal(err)
	}
	verifyProof(t, proof)
}

var benchParams = ProofParams{
	Method:      "POST",
	URL:         "https://pds.example.com/xrpc/com.atproto.repo.createRecord",
	Nonce:       "4Rn1G0wS8n5yWsyE0mE5IF0o0TXGzBbz6dYrNfUDh5Q",
	AccessToken: "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NksifQ.eyJzY29wZSI6ImF0cHJvdG8ifQ.c2lnbmF0dXJl",
}

// BenchmarkProof measures one proof as Proof makes it (crypto/ecdsa
// directly) and, for comparison, through jwx's jwt.Sign.
func BenchmarkProof(b *testing.B) {
	k := mustKey(b)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Proof(benchParams); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proofJWX(k, benchParams); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestNoncesRefuseHugeValues(t *testing.T) {
	var n Nonces
	if n.Set("https://as.example/", strings.Repeat("x", MaxNonceLength+1)) || n.Len() != 0 {
		t.Fatal("a nonce over MaxNonceLength was kept")
	}
	if !n.Set("https://as.example/", strings.Repeat("x", MaxNonceLength)) {
		t.Fatal("a nonce of MaxNonceLength was refused")
	}
}
