package provider

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// TestIDTokenRefused: every way an ID token can be wrong fails the
// exchange with ErrIDToken, and never as a passing error.
func TestIDTokenRefused(t *testing.T) {
	k1 := newTestKey(t, 0, "k1")
	other := newTestKey(t, 1, "k1") // same kid, another key: a forged signature
	for _, tc := range []struct {
		name string
		// token makes the id_token from verifying claims; "" leaves it out.
		token func(f *fakeIssuer, claims map[string]any) string
		want  string
	}{
		{"missing id_token", func(*fakeIssuer, map[string]any) string { return "" }, "has no id_token"},
		{"wrong iss", edit(func(c map[string]any) { c["iss"] = "https://evil.example" }), `"iss" not satisfied`},
		{"iss with trailing slash", func(f *fakeIssuer, c map[string]any) string {
			c["iss"] = f.issuer() + "/"
			return signJWT(t, jwa.RS256, k1.priv, k1.kid, c)
		}, `"iss" not satisfied`},
		{"wrong aud", edit(func(c map[string]any) { c["aud"] = "another-client" }), `"aud" not satisfied`},
		{"several aud without azp", edit(func(c map[string]any) { c["aud"] = []string{testClientID, "another-client"} }), "azp"},
		{"several aud, azp another", edit(func(c map[string]any) {
			c["aud"] = []string{testClientID, "another-client"}
			c["azp"] = "another-client"
		}), "azp"},
		{"azp another", edit(func(c map[string]any) { c["azp"] = "another-client" }), "azp"},
		{"expired", edit(func(c map[string]any) { c["exp"] = c["iat"].(int64) - 61 }), `"exp" not satisfied`},
		{"issued in the future", edit(func(c map[string]any) { c["iat"] = c["iat"].(int64) + 120 }), `"iat" not satisfied`},
		{"no exp", edit(func(c map[string]any) { delete(c, "exp") }), `"exp"`},
		{"no iat", edit(func(c map[string]any) { delete(c, "iat") }), `"iat"`},
		{"no sub", edit(func(c map[string]any) { delete(c, "sub") }), `"sub"`},
		{"empty sub", edit(func(c map[string]any) { c["sub"] = "" }), "sub"},
		{"nonce mismatch", edit(func(c map[string]any) { c["nonce"] = "another-nonce" }), "nonce"},
		{"no nonce", edit(func(c map[string]any) { delete(c, "nonce") }), "nonce"},
		{"at_hash mismatch", edit(func(c map[string]any) { c["at_hash"] = atHash("another-token") }), "at_hash"},
		{"bad signature", func(f *fakeIssuer, c map[string]any) string {
			return signJWT(t, jwa.RS256, other.priv, other.kid, c)
		}, "verif"},
		{"alg none", func(f *fakeIssuer, c map[string]any) string { return unsignedJWT(t, c) }, `"none"`},
		{"HS256 with the client secret", func(f *fakeIssuer, c map[string]any) string {
			return signJWT(t, jwa.HS256, []byte(testClientSecret), k1.kid, c)
		}, `"HS256"`},
		{"HS256 without kid", func(f *fakeIssuer, c map[string]any) string {
			return signJWT(t, jwa.HS256, []byte(testClientSecret), "", c)
		}, `"HS256"`},
		{"unknown kid", func(f *fakeIssuer, c map[string]any) string {
			return signJWT(t, jwa.RS256, other.priv, "k-unknown", c)
		}, "does not hold"},
		{"not a JWT", func(*fakeIssuer, map[string]any) string { return "not-a-jwt" }, "compact"},
		{"encrypted", func(*fakeIssuer, map[string]any) string { return "a.b.c.d.e" }, "compact"},
		{"garbage segments", func(*fakeIssuer, map[string]any) string { return "e30.e30.e30" }, "ID token refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIssuer(t, k1)
			f.set(func(f *fakeIssuer) {
				f.token = func(w http.ResponseWriter, r *http.Request) {
					ans := map[string]any{"access_token": "at-1", "token_type": "Bearer"}
					if tok := tc.token(f, f.defaultClaims(true, "at-1")); tok != "" {
						ans["id_token"] = tok
					}
					writeJSON(w, http.StatusOK, ans)
				}
			})
			_, err := f.client(t).Exchange(context.Background(), testCode, testVerifier, testNonce)
			if !errors.Is(err, ErrIDToken) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidGrant) {
				t.Fatalf("Exchange: %v, want ErrIDToken", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Exchange: %v, want %q in it", err, tc.want)
			}
			if strings.Contains(err.Error(), testNonce) {
				t.Errorf("error %v tells the nonce", err)
			}
		})
	}
}

// edit signs the default claims, edited, with the issuer's key.
func edit(fn func(map[string]any)) func(*fakeIssuer, map[string]any) string {
	return func(f *fakeIssuer, c map[string]any) string {
		fn(c)
		f.mu.Lock()
		k := f.signer
		f.mu.Unlock()
		return signJWT(f.t, jwa.RS256, k.priv, k.kid, c)
	}
}

// TestIDTokenAccepted: what the checks allow.
func TestIDTokenAccepted(t *testing.T) {
	k1 := newTestKey(t, 0, "k1")
	for _, tc := range []struct {
		name  string
		token func(f *fakeIssuer, claims map[string]any) string
	}{
		{"expired within leeway", edit(func(c map[string]any) { c["exp"] = c["iat"].(int64) - 50 })},
		{"issued ahead within leeway", edit(func(c map[string]any) { c["iat"] = c["iat"].(int64) + 50 })},
		{"aud as a list", edit(func(c map[string]any) { c["aud"] = []string{testClientID} })},
		{"several aud, azp ours", edit(func(c map[string]any) {
			c["aud"] = []string{"another-client", testClientID}
			c["azp"] = testClientID
		})},
		{"no at_hash", edit(func(c map[string]any) { delete(c, "at_hash") })},
		{"email_verified as a string", edit(func(c map[string]any) { c["email_verified"] = "true" })},
		{"no kid, one key", func(f *fakeIssuer, c map[string]any) string {
			return signJWT(t, jwa.RS256, k1.priv, "", c)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIssuer(t, k1)
			f.set(func(f *fakeIssuer) {
				f.token = func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, http.StatusOK, map[string]any{
						"access_token": "at-1", "token_type": "Bearer", "id_token": tc.token(f, f.defaultClaims(true, "at-1")),
					})
				}
			})
			g, err := f.client(t).Exchange(context.Background(), testCode, testVerifier, testNonce)
			if err != nil {
				t.Fatal(err)
			}
			if g.Identity.Subject != testSubject || g.Identity.Email != "alice@example.com" || !g.Identity.EmailVerified {
				t.Errorf("identity %+v", g.Identity)
			}
		})
	}
}

// TestIDTokenOtherAlgorithms: EC and Ed25519 keys verify too, with the
// key set's keys that carry no alg (the algorithm is inferred and must
// match the token's).
func TestIDTokenOtherAlgorithms(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg  jwa.SignatureAlgorithm
		priv any
		pub  any
	}{
		{jwa.ES256, ec, &ec.PublicKey},
		{jwa.EdDSA, ed, ed.Public()},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
			pub, err := jwk.FromRaw(tc.pub)
			if err != nil {
				t.Fatal(err)
			}
			_ = pub.Set(jwk.KeyIDKey, "other")
			set := jwk.NewSet()
			_ = set.AddKey(pub)
			jwks, _ := json.Marshal(set)
			f.set(func(f *fakeIssuer) {
				f.discovery = map[string]any{"jwks_uri": f.issuer() + "/jwks-other"}
				f.token = func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, http.StatusOK, map[string]any{
						"access_token": "at-1", "token_type": "Bearer",
						"id_token": signJWT(t, tc.alg, tc.priv, "other", f.defaultClaims(true, "at-1")),
					})
				}
			})
			f.handle("/jwks-other", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(jwks)
			})
			if _, err := f.client(t).Exchange(context.Background(), testCode, testVerifier, testNonce); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKeyRotation: a token that names a key the cached set lacks makes
// one refetch at once, and then none for such tokens before
// keysRefetchAfter.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	k1, k2, k3 := newTestKey(t, 0, "k1"), newTestKey(t, 1, "k2"), newTestKey(t, 2, "k3")
	f := newFakeIssuer(t, k1)
	c := f.client(t)
	exchange := func() error {
		_, err := c.Exchange(ctx, testCode, testVerifier, testNonce)
		return err
	}
	if err := exchange(); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOf("/jwks"); n != 1 {
		t.Fatalf("%d key set fetches", n)
	}

	// Right after the first fetch: a rotation is refetched for at once.
	f.set(func(f *fakeIssuer) { f.published, f.signer = []testKey{k1, k2}, k2 })
	if err := exchange(); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := exchange(); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOf("/jwks"); n != 2 {
		t.Fatalf("%d key set fetches after rotation, want 2", n)
	}

	// A key the issuer never published: one refetch, then none until
	// keysRefetchAfter has passed.
	f.set(func(f *fakeIssuer) { f.signer = k3 })
	f.clock.Advance(keysRefetchAfter)
	for range 3 {
		if err := exchange(); !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), `"k3"`) {
			t.Fatalf("unpublished key: %v", err)
		}
	}
	if n := f.hitsOf("/jwks"); n != 3 {
		t.Fatalf("%d key set fetches, want 3", n)
	}
	f.clock.Advance(keysRefetchAfter)
	_ = exchange()
	if n := f.hitsOf("/jwks"); n != 4 {
		t.Fatalf("%d key set fetches, want 4", n)
	}

	// An hour on, the set is fetched again for a known kid too.
	f.set(func(f *fakeIssuer) { f.signer = k2 })
	if err := exchange(); err != nil || f.hitsOf("/jwks") != 4 {
		t.Fatalf("known key: %v, %d fetches", err, f.hitsOf("/jwks"))
	}
	f.clock.Advance(keysMaxAge)
	if err := exchange(); err != nil || f.hitsOf("/jwks") != 5 {
		t.Fatalf("old set: %v, %d fetches", err, f.hitsOf("/jwks"))
	}
}

// TestKeySetDownAtFirstUse: no keys is a passing failure, retried on the
// next call.
func TestKeySetDownAtFirstUse(t *testing.T) {
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	f.set(func(f *fakeIssuer) { f.discovery = map[string]any{"jwks_uri": f.issuer() + "/jwks-down"} })
	down := true
	f.handle("/jwks-down", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		d := down
		f.mu.Unlock()
		if d {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		f.serveJWKS(w, r)
	})
	c := f.client(t)
	_, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("key set down: %v", err)
	}
	f.set(func(*fakeIssuer) { down = false })
	if _, err := c.Exchange(context.Background(), testCode, testVerifier, testNonce); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeySet(t *testing.T) {
	rsaKey := newTestKey(t, 0, "k1").priv
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(raw any, fields map[string]any) jwk.Key {
		k, err := jwk.FromRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range fields {
			if err := k.Set(name, v); err != nil {
				t.Fatal(err)
			}
		}
		return k
	}
	set := jwk.NewSet()
	for _, k := range []jwk.Key{
		mk([]byte("client-secret"), map[string]any{"kid": "oct"}),
		mk(&small.PublicKey, map[string]any{"kid": "small"}),
		mk(&rsaKey.PublicKey, map[string]any{"kid": "enc", "use": "enc"}),
		mk(&rsaKey.PublicKey, map[string]any{"kid": "hs", "alg": "HS256"}),
		mk(rsaKey, map[string]any{"kid": "private"}), // kept, as its public part
		mk(&rsaKey.PublicKey, map[string]any{"kid": "good", "alg": "RS256"}),
	} {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := json.Marshal(set)
	got, err := parseKeySet(body)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for i := range got.Len() {
		k, _ := got.Key(i)
		kids = append(kids, k.KeyID())
		if _, ok := k.(jwk.RSAPrivateKey); ok {
			t.Errorf("key %s kept private", k.KeyID())
		}
	}
	if strings.Join(kids, ",") != "private,good" {
		t.Errorf("kept %v", kids)
	}
	if _, err := parseKeySet([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)); !errors.Is(err, errNoKeys) {
		t.Errorf("only a symmetric key: %v", err)
	}
	if _, err := parseKeySet([]byte(`<html>`)); err == nil {
		t.Error("HTML taken for a key set")
	}
}

func TestCheckATHash(t *testing.T) {
	for _, alg := range []string{"RS256", "PS384", "ES512", "EdDSA"} {
		if err := checkATHash(alg, "x", "token"); (err == nil) != (alg == "EdDSA") {
			t.Errorf("%s: %v", alg, err)
		}
	}
	if err := checkATHash("RS256", atHash("token"), "token"); err != nil {
		t.Error(err)
	}
}
