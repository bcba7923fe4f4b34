package provider

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// How the key set is kept: fetched again after keysMaxAge, so a key the
// issuer withdrew stops verifying (a failed refetch keeps the old keys,
// and is retried after keysRefetchAfter); and at once for a token that
// names a key we do not have (a rotation), but then not again for such a
// token before keysRefetchAfter, so a run of them cannot make us hammer
// the issuer.
const (
	keysMaxAge       = time.Hour
	keysRefetchAfter = 10 * time.Second
	// leeway is the clock skew allowed on exp and iat.
	leeway = 60 * time.Second
	// minRSABits: shorter RSA keys are forgeable in practice.
	minRSABits = 2048
)

// errNoKeys is a key set without a usable signing key.
var errNoKeys = errors.New("no usable signing key")

// errUnknownKey is a token signed with a key that the set we hold lacks
// even after the refetch keysRefetchAfter allowed: most likely a rotation
// we have not caught up with yet, which says nothing of the token.
var errUnknownKey = errors.New("unknown signing key")

// errUnverified is a token without a kid whose signature no key held
// verifies, even after a refetch of the set: a rotation not yet caught up
// with, as errUnknownKey is for a token with one.
var errUnverified = errors.New("no key held verifies the signature")

// errClock is a token issued, or valid only, after our clock's now
// (beyond the leeway): the provider's clock is ahead of ours. Every other
// check passed at the token's own time (verifyIDToken returns its claims
// with it). An expired one is refused, as at sign-in.
var errClock = errors.New("its times are ahead of our clock")

// uncheckable reports whether a refresh's ID token failed for a reason
// that says nothing of the token's account (see checkRefreshIDToken).
func uncheckable(err error) bool {
	return errors.Is(err, errUnknownKey) || errors.Is(err, errUnverified)
}

// allowedAlg reports whether alg is one that ID tokens may be signed with:
// asymmetric only. "none" would let anyone write a token, and HS* would
// make the client secret (which the provider and every client operator
// hold) a signing key.
func allowedAlg(alg string) bool {
	switch jwa.SignatureAlgorithm(alg) {
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512,
		jwa.ES256, jwa.ES384, jwa.ES512, jwa.EdDSA:
		return true
	}
	return false
}

// idClaims are the verified claims of an ID token that ioproxy uses.
type idClaims struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
}

func (c idClaims) identity() Identity {
	return Identity{Subject: c.Subject, Email: c.Email, Name: c.Name, Issuer: c.Issuer, EmailVerified: c.EmailVerified}
}

// verifyIDToken verifies raw (OpenID Connect Core §3.1.3.7): signed by a
// key of the issuer's set with an asymmetric algorithm; iss the issuer;
// aud holding our client id, and azp ours when present or when there are
// several audiences; exp ahead and iat not ahead (with leeway); sub set;
// nonce the one sent, when one was (Exchange); at_hash matching the access
// token, when present.
func (c *Client) verifyIDToken(ctx context.Context, ep *endpoints, op, raw, nonce, accessToken string) (*idClaims, error) {
	fail := func(format string, args ...any) error {
		return c.errorf("%s: %w: "+format, append([]any{op, ErrIDToken}, args...)...)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fail("not a signed JWT in compact form (an encrypted or JSON-serialized token is not accepted)")
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil {
		return nil, fail("%w", err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return nil, fail("%d signatures; one is expected", len(sigs))
	}
	hdr := sigs[0].ProtectedHeaders()
	alg := hdr.Algorithm().String()
	if !allowedAlg(alg) {
		return nil, fail("signed with %q; only RS*, PS*, ES* and EdDSA are accepted", cleanText(alg, 32))
	}
	kid := hdr.KeyID()
	set, err := c.keySet(ctx, ep, kid, false)
	if err != nil {
		return nil, err
	}
	if _, ok := set.LookupKeyID(kid); kid != "" && !ok {
		return nil, fail("signed with key %q, which the issuer's key set %s does not hold (%w)", cleanText(kid, 64), ep.jwks, errUnknownKey)
	}
	tok, ahead, err := c.verifiedToken(ctx, ep, set, raw, kid)
	if err != nil {
		return nil, fail("%w", err)
	}
	if tok.Subject() == "" {
		return nil, fail("sub is empty")
	}
	if err := c.checkPrivateClaims(tok, alg, nonce, accessToken); err != nil {
		return nil, fail("%w", err)
	}
	claims := tok.PrivateClaims()
	out := &idClaims{Issuer: tok.Issuer(), Subject: tok.Subject()}
	out.Email, _ = claims["email"].(string)
	out.Name, _ = claims["name"].(string)
	out.EmailVerified = truthy(claims["email_verified"])
	if ahead != nil {
		// Every check passed at the token's own time: the claims are
		// the caller's to use if our clock may be behind (a refresh),
		// and the error is a sign-in's to refuse.
		return out, fail("%s: %w (%w)", c.claimsProblem(ahead, raw, ep.issuer), ahead, errClock)
	}
	return out, nil
}

// verifiedToken is raw verified with set and its registered claims
// validated. A kid-less token that no key verifies has the set fetched
// again first (without a kid nothing says the set lacks the key: a
// rotation shows only as a signature no key verifies); one still
// unverified is errUnverified. A token from our future (iat or nbf ahead
// beyond the leeway) is validated again at its own time, so that every
// other check still runs, and ahead is the error of our time.
func (c *Client) verifiedToken(ctx context.Context, ep *endpoints, set jwk.Set, raw, kid string) (tok jwt.Token, ahead, err error) {
	tok, err = c.parseIDToken(set, raw, kid, ep.issuer, c.now)
	if err != nil && kid == "" && jws.IsVerificationError(err) {
		if set2, serr := c.keySet(ctx, ep, kid, true); serr == nil {
			set = set2
			tok, err = c.parseIDToken(set, raw, kid, ep.issuer, c.now)
		}
	}
	if err != nil && clockProblem(err) {
		if at, ok := tokenTime(raw); ok {
			ahead = err
			tok, err = c.parseIDToken(set, raw, kid, ep.issuer, func() time.Time { return at })
		}
	}
	switch {
	case err != nil && jws.IsVerificationError(err) && kid == "":
		return nil, nil, fmt.Errorf("%s: %w (%w)", c.claimsProblem(err, raw, ep.issuer), err, errUnverified)
	case err != nil:
		// A bad signature under a kid the set holds is no rotation.
		return nil, nil, fmt.Errorf("%s: %w", c.claimsProblem(err, raw, ep.issuer), err)
	}
	return tok, ahead, nil
}

// tokenTime is the later of raw's iat and nbf, read without verifying
// (verifiedToken has verified the signature by then).
func tokenTime(raw string) (time.Time, bool) {
	tok, err := jwt.ParseInsecure([]byte(raw))
	if err != nil {
		return time.Time{}, false
	}
	at := tok.IssuedAt()
	if nbf := tok.NotBefore(); nbf.After(at) {
		at = nbf
	}
	return at, !at.IsZero()
}

// parseIDToken verifies raw's signature with set and validates its
// registered claims at now.
func (c *Client) parseIDToken(set jwk.Set, raw, kid, issuer string, now func() time.Time) (jwt.Token, error) {
	return jwt.Parse([]byte(raw),
		jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true), jws.WithRequireKid(kid != "")),
		jwt.WithValidate(true),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(c.cfg.ClientID),
		jwt.WithAcceptableSkew(leeway),
		jwt.WithClock(jwt.ClockFunc(now)),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
	)
}

// clockProblem reports whether jwx refused a token for being from our
// future alone (errClock).
func clockProblem(err error) bool {
	return errors.Is(err, jwt.ErrInvalidIssuedAt()) || errors.Is(err, jwt.ErrTokenNotYetValid())
}

// checkPrivateClaims checks the claims of a verified token that jwx does
// not: azp when present or when there are several audiences, nonce when
// one was sent, at_hash when present.
func (c *Client) checkPrivateClaims(tok jwt.Token, alg, nonce, accessToken string) error {
	claims := tok.PrivateClaims()
	azp, _ := claims["azp"].(string)
	if _, present := claims["azp"]; present || len(tok.Audience()) > 1 {
		if azp == "" {
			return errors.New("aud names several clients and there is no azp to say which the token was issued to")
		}
		if azp != c.cfg.ClientID {
			return fmt.Errorf("azp is %q, not our client id (the token was issued to another client)", cleanText(azp, 128))
		}
	}
	if nonce != "" {
		got, _ := claims["nonce"].(string)
		if !equalSecret(got, nonce) {
			return errors.New("nonce is not the one this sign-in sent (a replayed or injected token)")
		}
	}
	if h, ok := claims["at_hash"].(string); ok && accessToken != "" {
		return checkATHash(alg, h, accessToken)
	}
	return nil
}

// claimsProblem says what a claim that failed validation held, from the
// unverified token: jwx says only which claim failed, and an operator
// needs the value to tell a misconfigured issuer URL from a clock skew.
func (c *Client) claimsProblem(err error, raw, issuer string) string {
	tok, perr := jwt.ParseInsecure([]byte(raw))
	if perr != nil {
		return "unreadable claims"
	}
	now := c.now().UTC().Format(time.RFC3339)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return fmt.Sprintf("iss is %q, not the issuer %q", cleanText(tok.Issuer(), 200), issuer)
	case errors.Is(err, jwt.ErrInvalidAudience()):
		aud := make([]string, 0, len(tok.Audience()))
		for _, a := range tok.Audience() {
			aud = append(aud, cleanText(a, 100))
		}
		return fmt.Sprintf("aud %q does not hold our client id %q", aud, c.cfg.ClientID)
	case errors.Is(err, jwt.ErrTokenExpired()):
		return fmt.Sprintf("expired at %s (now %s, leeway %s)", tok.Expiration().UTC().Format(time.RFC3339), now, leeway)
	case errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return fmt.Sprintf("issued at %s, ahead of now %s by more than %s", tok.IssuedAt().UTC().Format(time.RFC3339), now, leeway)
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return fmt.Sprintf("not valid before %s (now %s)", tok.NotBefore().UTC().Format(time.RFC3339), now)
	}
	return "claims"
}

// checkATHash checks at_hash (OpenID Connect Core §3.1.3.6): the left half
// of the access token's hash, with the hash of the token's algorithm.
// EdDSA names no hash there, so it is not checked.
func checkATHash(alg, want, accessToken string) error {
	var h hash.Hash
	switch alg[2:] {
	case "256":
		h = sha256.New()
	case "384":
		h = sha512.New384()
	case "512":
		h = sha512.New()
	default:
		return nil
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	if !equalSecret(base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]), want) {
		return errors.New("at_hash does not match the access token")
	}
	return nil
}

// truthy reads a boolean claim that some providers send as a string.
func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// keySet returns the issuer's keys, public signing keys only: fetched
// when there are none yet (every call retries until a fetch works), when
// they are older than keysMaxAge, or when kid is not among them or
// refetch asks (see keysRefetchAfter). A failed refetch keeps the keys held before.
func (c *Client) keySet(ctx context.Context, ep *endpoints, kid string, refetch bool) (jwk.Set, error) {
	fetch := func(ctx context.Context) (jwk.Set, error) { return c.fetchKeys(ctx, ep.jwks) }
	lacks := func(set jwk.Set) bool {
		_, known := set.LookupKeyID(kid)
		return refetch || (kid != "" && !known)
	}
	got, err := c.keys.get(ctx, fetch, lacks)
	if err != nil {
		return nil, err
	}
	if got.missed {
		c.log.InfoContext(ctx, "provider key set refetched for a key it did not hold", "kid", cleanText(kid, 64))
	}
	if got.stale != nil {
		c.log.WarnContext(ctx, "provider key set refetch failed; using the keys fetched before", "err", got.stale)
	}
	return got.val, nil
}

func (c *Client) fetchKeys(ctx context.Context, u string) (jwk.Set, error) {
	a, err := c.do(ctx, http.MethodGet, u, nil, maxDocument, nil)
	if err != nil {
		return nil, c.errorf("key set: %w", err)
	}
	if a.status != http.StatusOK {
		return nil, c.answerError(a, "key set "+u)
	}
	set, err := parseKeySet(a.body)
	if err != nil {
		return nil, c.errorf("key set %s: %w", u, err)
	}
	return set, nil
}

// parseKeySet keeps the public part of the set's asymmetric signing keys
// of allowed algorithms, and drops the rest: a symmetric key in an
// issuer's set could only serve a forgery.
func parseKeySet(body []byte) (jwk.Set, error) {
	in, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	out := jwk.NewSet()
	for i := 0; i < in.Len(); i++ {
		k, ok := in.Key(i)
		if !ok {
			continue
		}
		if u := k.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
			continue
		}
		if a := k.Algorithm().String(); a != "" && !allowedAlg(a) {
			continue
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			continue
		}
		switch pub.KeyType() {
		case jwa.RSA:
			var raw rsa.PublicKey
			if err := pub.Raw(&raw); err != nil || raw.N == nil || raw.N.BitLen() < minRSABits {
				continue
			}
		case jwa.EC:
		case jwa.OKP:
			okp, ok := pub.(jwk.OKPPublicKey)
			if !ok || okp.Crv() != jwa.Ed25519 {
				continue
			}
		default:
			continue
		}
		if err := out.AddKey(pub); err != nil {
			continue
		}
	}
	if out.Len() == 0 {
		return nil, errNoKeys
	}
	return out, nil
}
