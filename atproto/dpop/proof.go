package dpop

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// ProofParams describes the request a proof is made for.
type ProofParams struct {
	// Method is the HTTP method (htm), e.g. "POST".
	Method string
	// URL is the request URL; htu is derived from it without query and
	// fragment (see HTU).
	URL string
	// Nonce is the latest DPoP-Nonce of the server, if any.
	Nonce string
	// AccessToken, when set, adds `ath`: the proof is for a resource request
	// made with this DPoP-bound access token.
	AccessToken string
	// Issuer, when set, adds `iss` (the client id), as the reference
	// TypeScript client does. Servers do not require it.
	Issuer string
	// IssuedAt is the `iat` claim; the zero value means now.
	IssuedAt time.Time
}

// proofClaims is marshalled with encoding/json, so field order is fixed and
// nonce/ath/iss are omitted when empty.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce,omitempty"`
	ATH   string `json:"ath,omitempty"`
	ISS   string `json:"iss,omitempty"`
}

// Proof returns a signed DPoP proof JWT for one request: header
// {typ: dpop+jwt, alg: ES256, jwk}, claims jti (random), htm, htu, iat and
// the optional nonce, ath and iss. A proof must not be reused.
//
// The JWT is assembled and signed with crypto/ecdsa directly rather than
// through jwx: see BenchmarkProof for the difference.
func (k *Key) Proof(p ProofParams) (string, error) {
	if k == nil || k.priv == nil {
		return "", errors.New("DPoP proof: no key")
	}
	if p.Method == "" || strings.ContainsAny(p.Method, " \t\r\n") {
		return "", fmt.Errorf("DPoP proof: invalid HTTP method %q", p.Method)
	}
	htu, err := HTU(p.URL)
	if err != nil {
		return "", fmt.Errorf("DPoP proof: %w", err)
	}
	jti, err := newJTI()
	if err != nil {
		return "", fmt.Errorf("DPoP proof: %w", err)
	}
	iat := p.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	c := proofClaims{
		JTI:   jti,
		HTM:   p.Method,
		HTU:   htu,
		IAT:   iat.Unix(),
		Nonce: p.Nonce,
		ISS:   p.Issuer,
	}
	if p.AccessToken != "" {
		c.ATH = AccessTokenHash(p.AccessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("DPoP proof: encode claims: %w", err)
	}
	return k.sign(payload)
}

// sign builds header.payload.signature with an ES256 (r||s) signature.
func (k *Key) sign(payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	n := len(k.header) + 1 + enc.EncodedLen(len(payload)) + 1 + enc.EncodedLen(64)
	buf := make([]byte, 0, n)
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	digest := sha256.Sum256(buf)
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("DPoP proof: sign: %w", err)
	}
	// JWS wants r||s, each left-padded to 32 bytes (RFC 7518 §3.4).
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// newJTI returns 128 random bits, base64url encoded: servers reject a
// repeated jti, so it must never collide.
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// AccessTokenHash is the `ath` claim: base64url(SHA-256(token)).
func AccessTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// HTU returns the `htu` claim for a request URL: the URL without query and
// fragment (RFC 9449 §4.2), with the scheme and host lowercased, the default
// port dropped and an empty path written as "/", which is how servers
// normalize the URL they compare against (RFC 3986 §6.2.2 and §6.2.3).
func HTU(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("invalid request URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("request URL %q is not an absolute http(s) URL", redact(u))
	}
	host, err := normalHost(scheme, u.Host, false)
	if err != nil {
		return "", fmt.Errorf("request URL %q: %w", redact(u), err)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// Origin returns the normalized origin of a URL as scheme://host:port, with
// the port always written out, so that https://pds.example and
// https://PDS.example:443/xrpc share one nonce.
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("invalid URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("URL %q is not an absolute http(s) URL", redact(u))
	}
	host, err := normalHost(scheme, u.Host, true)
	if err != nil {
		return "", fmt.Errorf("URL %q: %w", redact(u), err)
	}
	return scheme + "://" + host, nil
}

// normalHost lowercases the host and writes the port explicitly (withPort)
// or only when it is not the scheme's default.
func normalHost(scheme, hostport string, withPort bool) (string, error) {
	if hostport == "" {
		return "", errors.New("no host")
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	host = strings.ToLower(host)
	if host == "" || host == "[]" {
		return "", errors.New("no host")
	}
	// Brackets belong only around an IPv6 address, as a pair: "evil]"
	// would lose its bracket below and become another host.
	if strings.ContainsAny(host, "[]") && !(strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") && strings.Count(host, "[") == 1 && strings.Count(host, "]") == 1) {
		return "", fmt.Errorf("invalid host %q", host)
	}
	def := "443"
	if scheme == "http" {
		def = "80"
	}
	if port == "" {
		port = def
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("invalid port %q", port)
		}
	}
	if !withPort && port == def {
		return host, nil
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.JoinHostPort(bare, port), nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}
