// Package dpop implements the client side of OAuth 2.0 Demonstrating
// Proof of Possession (RFC 9449) as the AT Protocol OAuth profile uses it:
// one ES256 key per session, a fresh proof JWT for every request, and server
// nonces remembered per origin.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Key is a session's DPoP key: an ECDSA P-256 private key. It is safe for
// concurrent use. Its JSON form is a private JWK, meant for the session store.
type Key struct {
	priv *ecdsa.PrivateKey
	// public is the bare public JWK (kty, crv, x, y) embedded in every proof.
	public jwk.Key
	// header is base64url(protected header): it depends only on the key,
	// so it is encoded once instead of on every proof.
	header string
	jkt    string
}

// GenerateKey creates a new random ES256 key.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate DPoP key: %w", err)
	}
	return NewKey(priv)
}

// NewKey wraps an existing P-256 private key.
func NewKey(priv *ecdsa.PrivateKey) (*Key, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errors.New("DPoP key must be an ECDSA P-256 private key")
	}
	pub, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("DPoP public JWK: %w", err)
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return nil, fmt.Errorf("encode DPoP public JWK: %w", err)
	}
	hdr, err := json.Marshal(struct {
		Typ string          `json:"typ"`
		Alg string          `json:"alg"`
		JWK json.RawMessage `json:"jwk"`
	}{"dpop+jwt", "ES256", pubJSON})
	if err != nil {
		return nil, fmt.Errorf("encode DPoP header: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("DPoP key thumbprint: %w", err)
	}
	return &Key{
		priv:   priv,
		public: pub,
		header: base64.RawURLEncoding.EncodeToString(hdr),
		jkt:    base64.RawURLEncoding.EncodeToString(tp),
	}, nil
}

// ParseKey reads a key stored with MarshalJSON (a private EC P-256 JWK).
func ParseKey(data []byte) (*Key, error) {
	k, err := jwk.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse DPoP key: %w", err)
	}
	if _, ok := k.(jwk.ECDSAPrivateKey); !ok {
		return nil, errors.New("parse DPoP key: the JWK is not an EC private key (no private part)")
	}
	var priv ecdsa.PrivateKey
	if err := k.Raw(&priv); err != nil {
		return nil, fmt.Errorf("parse DPoP key: not an EC private key: %w", err)
	}
	key, err := NewKey(&priv)
	if err != nil {
		return nil, fmt.Errorf("parse DPoP key: %w", err)
	}
	return key, nil
}

// MarshalJSON encodes the private key as a JWK. The result is a secret.
func (k *Key) MarshalJSON() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("encode DPoP key: empty key")
	}
	jk, err := jwk.FromRaw(k.priv)
	if err != nil {
		return nil, fmt.Errorf("encode DPoP key: %w", err)
	}
	if err := jk.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		return nil, fmt.Errorf("encode DPoP key: %w", err)
	}
	return json.Marshal(jk)
}

// UnmarshalJSON lets a Key be a field of a stored session struct.
func (k *Key) UnmarshalJSON(data []byte) error {
	nk, err := ParseKey(data)
	if err != nil {
		return err
	}
	*k = *nk
	return nil
}

// PublicJWK returns the public key as a JWK (kty, crv, x, y).
func (k *Key) PublicJWK() jwk.Key { return k.public }

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of the public key,
// base64url encoded: the value of the `dpop_jkt` parameter and of the `jkt`
// confirmation claim a server binds tokens to.
func (k *Key) Thumbprint() string { return k.jkt }
