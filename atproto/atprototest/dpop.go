package atprototest

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// proofError is a refused DPoP proof. nonce marks the use_dpop_nonce case.
type proofError struct {
	nonce bool
	msg   string
}

func (e *proofError) Error() string { return e.msg }

// proof is what a verified DPoP proof tells the server.
type proof struct {
	jkt   string
	nonce string
}

// checkProof verifies the DPoP header of r as RFC 9449 §4.3 and the
// reference server do: one proof, typ dpop+jwt, alg ES256, an embedded
// public P-256 jwk that verifies the signature, htm and htu of this very
// request, a recent iat, a jti never seen before, the current nonce, and
// ath for resource requests (and no ath elsewhere).
func (s *Server) checkProof(r *http.Request, accessToken string) (*proof, *proofError) {
	bad := func(msg string) (*proof, *proofError) { return nil, &proofError{msg: msg} }
	vals := r.Header.Values("DPoP")
	if len(vals) == 0 || vals[0] == "" {
		return bad("DPoP proof required")
	}
	if len(vals) > 1 {
		return bad("DPoP header must contain a single proof")
	}
	raw := []byte(vals[0])
	msg, err := jws.Parse(raw)
	if err != nil {
		return bad("DPoP proof is not a JWS: " + err.Error())
	}
	if len(msg.Signatures()) != 1 {
		return bad("DPoP proof must have one signature")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if hdr.Type() != "dpop+jwt" {
		return bad(`DPoP proof typ must be "dpop+jwt"`)
	}
	if hdr.Algorithm() != jwa.ES256 {
		return bad("DPoP proof alg must be ES256")
	}
	key := hdr.JWK()
	if key == nil {
		return bad("DPoP proof has no jwk header")
	}
	if priv, _ := jwk.IsPrivateKey(key); priv {
		return bad("DPoP proof jwk is a private key")
	}
	ec, ok := key.(jwk.ECDSAPublicKey)
	if !ok || ec.Crv() != jwa.P256 {
		return bad("DPoP proof jwk must be a P-256 public key")
	}
	payload, err := jws.Verify(raw, jws.WithKey(jwa.ES256, key))
	if err != nil {
		return bad("DPoP proof signature does not verify: " + err.Error())
	}
	var c struct {
		JTI   string   `json:"jti"`
		HTM   string   `json:"htm"`
		HTU   string   `json:"htu"`
		IAT   *float64 `json:"iat"`
		Nonce *string  `json:"nonce"`
		ATH   *string  `json:"ath"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return bad("DPoP proof claims are not JSON: " + err.Error())
	}
	if c.JTI == "" {
		return bad(`DPoP "jti" missing`)
	}
	if c.HTM != r.Method {
		return bad(`DPoP "htm" mismatch`)
	}
	// Stricter than the reference: htu must be exactly the request URL
	// without query, as a correct client writes it.
	if want := s.URL + r.URL.EscapedPath(); c.HTU != want {
		return bad(`DPoP "htu" mismatch: got ` + c.HTU + ", want " + want)
	}
	if c.IAT == nil {
		return bad(`DPoP "iat" missing`)
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if d := time.Since(iat); d > time.Minute || d < -time.Minute {
		return bad(`DPoP "iat" is too far from now`)
	}
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		if c.ATH == nil || *c.ATH != base64.RawURLEncoding.EncodeToString(h[:]) {
			return bad(`DPoP "ath" mismatch`)
		}
	} else if c.ATH != nil {
		return bad(`DPoP "ath" claim not allowed`)
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return bad("DPoP jwk thumbprint: " + err.Error())
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.proofReuse {
		if _, seen := s.proofJTIs[c.JTI]; seen {
			return bad("DPoP proof replayed (jti seen before)")
		}
		pruneLocked(s.proofJTIs, now)
		s.proofJTIs[c.JTI] = now
	}
	if s.nonceEveryReq {
		s.nonce = randomString(16)
	}
	if c.Nonce == nil || *c.Nonce == "" {
		s.counts.NonceChallenges++
		return nil, &proofError{nonce: true, msg: "Authorization server requires nonce in DPoP proof"}
	}
	if *c.Nonce != s.nonce {
		s.counts.NonceChallenges++
		return nil, &proofError{nonce: true, msg: `DPoP "nonce" mismatch`}
	}
	return &proof{jkt: base64.RawURLEncoding.EncodeToString(tp), nonce: *c.Nonce}, nil
}
