package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// ClientKey is a confidential client's ES256 signing key. Its public half
// is published at /@/jwks.json; authorization servers check client
// assertions against it.
type ClientKey struct {
	private jwk.Key
	public  jwk.Key
}

// GenerateClientKey makes a new P-256 key and returns its private JWK,
// ready to store.
func GenerateClientKey() ([]byte, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate client key: %w", err)
	}
	k, err := jwk.FromRaw(priv)
	if err != nil {
		return nil, fmt.Errorf("generate client key: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("client key thumbprint: %w", err)
	}
	// The kid is fixed at creation so that it stays the same across
	// restarts, and is unique per key so that a rotated key gets a new one.
	if err := k.Set(jwk.KeyIDKey, base64.RawURLEncoding.EncodeToString(tp)[:16]); err != nil {
		return nil, fmt.Errorf("client key id: %w", err)
	}
	if err := k.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		return nil, fmt.Errorf("client key alg: %w", err)
	}
	return json.Marshal(k)
}

// ParseClientKey reads a key made by GenerateClientKey.
func ParseClientKey(data []byte) (*ClientKey, error) {
	k, err := jwk.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse client key: %w", err)
	}
	if k.KeyType() != "EC" || k.KeyID() == "" {
		return nil, fmt.Errorf("parse client key: want an EC key with a kid")
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("client public key: %w", err)
	}
	for _, f := range []struct {
		name string
		val  any
	}{{jwk.KeyUsageKey, "sig"}, {jwk.AlgorithmKey, jwa.ES256}} {
		if err := pub.Set(f.name, f.val); err != nil {
			return nil, fmt.Errorf("client public key: %w", err)
		}
	}
	return &ClientKey{private: k, public: pub}, nil
}

// KeyID returns the kid published in the JWKS.
func (k *ClientKey) KeyID() string { return k.private.KeyID() }

// Assertion returns a fresh client assertion JWT (RFC 7523) for audience,
// the authorization server's issuer.
func (k *ClientKey) Assertion(clientID, audience string, now time.Time) (string, error) {
	tok, err := jwt.NewBuilder().
		Issuer(clientID).
		Subject(clientID).
		Audience([]string{audience}).
		JwtID(randomToken(16)).
		IssuedAt(now).
		Expiration(now.Add(time.Minute)).
		Build()
	if err != nil {
		return "", fmt.Errorf("build client assertion: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, k.KeyID()); err != nil {
		return "", fmt.Errorf("client assertion header: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, k.private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return string(signed), nil
}

// randomToken returns n random bytes, base64url encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}
