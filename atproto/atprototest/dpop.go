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

// refuse is a proofError that is not a nonce challenge.
func refuse(msg string) *proofError { return &proofError{msg: msg} }

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
//
// The checks run in that order and the first failure is the answer. Only
// a proof that passes every stateless check reaches admitProof, so a bad
// proof neither uses up its jti nor counts as a nonce challenge.
func (s *Server) checkProof(r *http.Request, accessToken string) (*proof, *proofError) {
	raw, perr := proofHeader(r)
	if perr != nil {
		return nil, perr
	}
	key, payload, perr := verifyProofJWS(raw)
	if perr != nil {
		return nil, perr
	}
	c, perr := decodeProofClaims(payload)
	if perr != nil {
		return nil, perr
	}
	// Stricter than the reference: htu must be exactly the request URL
	// without query, as a correct client writes it.
	if perr := c.check(r.Method, s.URL+r.URL.EscapedPath(), accessToken); perr != nil {
		return nil, perr
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, refuse("DPoP jwk thumbprint: " + err.Error())
	}
	if perr := s.admitProof(c); perr != nil {
		return nil, perr
	}
	return &proof{jkt: base64.RawURLEncoding.EncodeToString(tp), nonce: *c.Nonce}, nil
}

// proofHeader is the one DPoP proof of r.
func proofHeader(r *http.Request) ([]byte, *proofError) {
	vals := r.Header.Values("DPoP")
	if len(vals) == 0 || vals[0] == "" {
		return nil, refuse("DPoP proof required")
	}
	if len(vals) > 1 {
		return nil, refuse("DPoP header must contain a single proof")
	}
	return []byte(vals[0]), nil
}

// verifyProofJWS checks the proof's JWS headers and signature and returns
// the embedded key and the verified payload.
func verifyProofJWS(raw []byte) (jwk.Key, []byte, *proofError) {
	msg, err := jws.Parse(raw)
	if err != nil {
		return nil, nil, refuse("DPoP proof is not a JWS: " + err.Error())
	}
	if len(msg.Signatures()) != 1 {
		return nil, nil, refuse("DPoP proof must have one signature")
	}
	key, perr := proofKey(msg.Signatures()[0].ProtectedHeaders())
	if perr != nil {
		return nil, nil, perr
	}
	payload, err := jws.Verify(raw, jws.WithKey(jwa.ES256, key))
	if err != nil {
		return nil, nil, refuse("DPoP proof signature does not verify: " + err.Error())
	}
	return key, payload, nil
}

// proofKey is the public P-256 key in the protected header of a proof
// whose typ and alg are those of DPoP with ES256.
func proofKey(hdr jws.Headers) (jwk.Key, *proofError) {
	if hdr.Type() != "dpop+jwt" {
		return nil, refuse(`DPoP proof typ must be "dpop+jwt"`)
	}
	if hdr.Algorithm() != jwa.ES256 {
		return nil, refuse("DPoP proof alg must be ES256")
	}
	key := hdr.JWK()
	if key == nil {
		return nil, refuse("DPoP proof has no jwk header")
	}
	if priv, _ := jwk.IsPrivateKey(key); priv {
		return nil, refuse("DPoP proof jwk is a private key")
	}
	ec, ok := key.(jwk.ECDSAPublicKey)
	if !ok || ec.Crv() != jwa.P256 {
		return nil, refuse("DPoP proof jwk must be a P-256 public key")
	}
	return key, nil
}

// proofClaims are the claims of a DPoP proof. Pointers tell a missing
// claim from an empty one.
type proofClaims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	Nonce *string  `json:"nonce"`
	ATH   *string  `json:"ath"`
}

func decodeProofClaims(payload []byte) (*proofClaims, *proofError) {
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, refuse("DPoP proof claims are not JSON: " + err.Error())
	}
	return &c, nil
}

// check holds the claims against the request they came with: its method
// and URL (htu), the time, and the access token it presents ("" for
// requests to the authorization server, which must carry no ath).
func (c *proofClaims) check(method, htu, accessToken string) *proofError {
	if c.JTI == "" {
		return refuse(`DPoP "jti" missing`)
	}
	if c.HTM != method {
		return refuse(`DPoP "htm" mismatch`)
	}
	if c.HTU != htu {
		return refuse(`DPoP "htu" mismatch: got ` + c.HTU + ", want " + htu)
	}
	if c.IAT == nil {
		return refuse(`DPoP "iat" missing`)
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if d := time.Since(iat); d > time.Minute || d < -time.Minute {
		return refuse(`DPoP "iat" is too far from now`)
	}
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		if c.ATH == nil || *c.ATH != base64.RawURLEncoding.EncodeToString(h[:]) {
			return refuse(`DPoP "ath" mismatch`)
		}
	} else if c.ATH != nil {
		return refuse(`DPoP "ath" claim not allowed`)
	}
	return nil
}

// admitProof does the checks that need the server's state, under one hold
// of s.mu so that concurrent proofs see each other: the jti is recorded
// (unless AllowProofReuse is on), the nonce is rotated when every
// request gets a new one, and a proof without the current nonce is
// answered with a nonce challenge and counted.
func (s *Server) admitProof(c *proofClaims) *proofError {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.proofReuse {
		if _, seen := s.proofJTIs[c.JTI]; seen {
			return refuse("DPoP proof replayed (jti seen before)")
		}
		pruneLocked(s.proofJTIs, now)
		s.proofJTIs[c.JTI] = now
	}
	if s.nonceEveryReq {
		s.nonce = randomString(16)
	}
	var msg string
	switch {
	case c.Nonce == nil || *c.Nonce == "":
		msg = "Authorization server requires nonce in DPoP proof"
	case *c.Nonce != s.nonce:
		msg = `DPoP "nonce" mismatch`
	default:
		return nil
	}
	s.counts.NonceChallenges++
	return &proofError{nonce: true, msg: msg}
}
