// Package sessions is what ioproxy keeps of each sign-in: pending sign-ins
// between /@/signin and /@/callback, signed-in sessions with their
// tokens, and a few named secrets (the OAuth client key). The Store
// interface says what a store must do; boltstore (one file in the data
// dir, the default) and redisstore (shared by several replicas) do it,
// and storetest checks that they do it alike.
package sessions

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
)

// Errors returned by stores.
var (
	ErrNotFound = errors.New("not found")
	ErrExpired  = errors.New("expired")
	// ErrTooLarge means a session field is over its limit.
	ErrTooLarge = errors.New("too large")
	// ErrFull means the store holds as many sessions (or sign-ins in
	// progress) as it may.
	ErrFull = errors.New("the session store is full")
	// ErrUnavailable means a shared store could not be reached: the
	// request may succeed in a moment (a 503, not a 500).
	ErrUnavailable = errors.New("the session store is not reachable")
)

// Session is one signed-in browser. It holds the user's tokens, so it never
// leaves ioproxy: backends see only DID, handle and ProxyKey.
type Session struct {
	// ID is the cookie value: 256 random bits.
	ID string `json:"id"`
	// ProxyKey is what the backend receives as Proxy-Session and passes to
	// the calling port; distinct from ID so the cookie never reaches a
	// backend.
	ProxyKey string `json:"proxy_key"`
	// Host is the ingress host the session was made on; it is valid there only.
	Host   string `json:"host"`
	DID    string `json:"did"`
	Handle string `json:"handle"`
	PDS    string `json:"pds"`
	// Issuer is the authorization server that issued the tokens.
	Issuer string `json:"issuer"`
	// ClientID is the OAuth client the tokens belong to; refreshes use it.
	ClientID string `json:"client_id"`
	// Scope is what the authorization server granted; Asked is what the
	// host's configuration asked for at sign-in. A re-consent is offered
	// only when the host asks for more than Asked: a server that grants
	// less than asked is not asked again and again.
	Scope        string `json:"scope"`
	Asked        string `json:"asked,omitempty"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	// TokenExpiry is when the access token expires.
	TokenExpiry time.Time `json:"token_expiry"`
	// DPoPKey is the session's private DPoP key, stored as a JWK and
	// parsed once, when the session is loaded or made.
	DPoPKey *dpop.Key `json:"dpop_key"`
	// AuthServerNonce and PDSNonce are the last DPoP nonces seen, so a
	// restart does not cost a round trip per server.
	AuthServerNonce string    `json:"as_nonce,omitempty"`
	PDSNonce        string    `json:"pds_nonce,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	RefreshedAt     time.Time `json:"refreshed_at,omitzero"`
	// HandleCheckedAt is when Handle was last verified against the DID
	// (both ways): at sign-in, at each refresh, and at each recheck, even
	// when the refresh that followed the check failed.
	HandleCheckedAt time.Time `json:"handle_checked_at,omitzero"`
	// Expiry ends the session even if its tokens could still be refreshed;
	// each refresh extends it.
	Expiry time.Time `json:"expiry"`

	// Provider is empty for an AT Protocol session. For a session with
	// another OAuth provider (a host's oauth "<name>" block) it is the
	// provider's name, and the account is Subject there: DID, Handle,
	// PDS, DPoPKey and the nonces stay empty, and Issuer and ClientID are
	// the provider's.
	Provider string `json:"provider,omitempty"`
	// Subject is the provider's stable id of the account (the ID token's
	// sub, or the userinfo answer's).
	Subject string `json:"subject,omitempty"`
	// Email is the account's email as the provider verified it; empty
	// when the provider gave none, or one it had not verified.
	Email string `json:"email,omitempty"`
	// Name is the account's display name at the provider, if it gave one.
	Name string `json:"name,omitempty"`
	// UncheckedRefreshes counts the refreshes in a row whose ID token
	// could not be checked (ProviderTokens.IdentityUnchecked).
	UncheckedRefreshes int `json:"unchecked_refreshes,omitempty"`
}

// Account names the account a session belongs to, for the limit of
// sessions per account: its DID, or for another provider's session the
// provider and the subject there.
func (s Session) Account() string {
	if s.Provider == "" {
		return s.DID
	}
	return s.Provider + ":" + s.Subject
}

// DefaultLifetime is how long a session lives without a token refresh;
// each refresh extends it by as much.
const DefaultLifetime = 30 * 24 * time.Hour

// HandleRecheck is how often a session in use has its handle checked
// again: access rules that name handles admit a session only while its
// last check is recent (access.DefaultHandleMaxAge, twice this).
const HandleRecheck = time.Hour

// HandleChecked is when the session's handle was last verified. Sessions
// stored before HandleCheckedAt existed were verified at their last
// refresh, or at sign-in.
func (s Session) HandleChecked() time.Time {
	switch {
	case !s.HandleCheckedAt.IsZero():
		return s.HandleCheckedAt
	case !s.RefreshedAt.IsZero():
		return s.RefreshedAt
	}
	return s.CreatedAt
}

// Stale reports whether the session needs a visit to its servers: its
// access token has expired, or its handle is due for a recheck.
func (s Session) Stale(now time.Time) bool {
	if s.Provider != "" {
		return now.After(s.TokenExpiry) // no handle to check
	}
	return now.After(s.TokenExpiry) || now.Sub(s.HandleChecked()) >= HandleRecheck
}

// Size limits of what a session stores. Tokens and URLs come from servers
// that anyone can run; without limits one sign-in could store megabytes
// for a month. Real ones are far below: the reference server's access
// tokens are about 1 KB, its refresh tokens 50 bytes.
const (
	MaxTokenBytes  = 8 << 10
	MaxScopeBytes  = 4 << 10
	MaxURLBytes    = 2 << 10
	MaxDIDBytes    = 2 << 10 // the DID syntax's own limit
	MaxHandleBytes = 253     // the handle syntax's own limit
	// MaxNonceBytes bounds a DPoP nonce; real ones are a few dozen bytes.
	MaxNonceBytes = 1 << 10
	// MaxProviderBytes bounds a provider's name (config allows 32).
	MaxProviderBytes = 64
	// MaxSubjectBytes is OpenID Connect's own limit of sub (255 ASCII).
	MaxSubjectBytes = 255
	// MaxEmailBytes is the longest address SMTP carries (RFC 5321).
	MaxEmailBytes = 254
	// MaxNameBytes bounds a display name.
	MaxNameBytes = 512
	// MaxRecordBytes bounds a session as stored (EncodeSession). The
	// field limits bound what one server may send; this bounds what a
	// session costs to keep, and a session of printable ASCII fields at
	// their limits fits in it, but one whose fields escape (" \ < > &)
	// may not, and is refused (ErrTooLarge).
	MaxRecordBytes = 32 << 10
)

// CheckSizes reports the first field of the session over its limit.
func (s Session) CheckSizes() error {
	for _, f := range []struct {
		name  string
		value string
		limit int
	}{
		{"access token", s.AccessToken, MaxTokenBytes},
		{"refresh token", s.RefreshToken, MaxTokenBytes},
		{"scope", s.Scope, MaxScopeBytes},
		{"scope asked for", s.Asked, MaxScopeBytes},
		{"DID", s.DID, MaxDIDBytes},
		{"handle", s.Handle, MaxHandleBytes},
		{"PDS URL", s.PDS, MaxURLBytes},
		{"issuer", s.Issuer, MaxURLBytes},
		{"client id", s.ClientID, MaxURLBytes},
		{"authorization server nonce", s.AuthServerNonce, MaxNonceBytes},
		{"PDS nonce", s.PDSNonce, MaxNonceBytes},
		{"provider", s.Provider, MaxProviderBytes},
		{"subject", s.Subject, MaxSubjectBytes},
		{"email", s.Email, MaxEmailBytes},
		{"name", s.Name, MaxNameBytes},
	} {
		if len(f.value) > f.limit {
			return fmt.Errorf("the session's %s is %d bytes, over the limit of %d: %w", f.name, len(f.value), f.limit, ErrTooLarge)
		}
	}
	// Tokens and scope are printable ASCII (RFC 6749, appendix A), and
	// nonces too (RFC 9449, section 8.1): other bytes are stored as
	// escapes six times their size.
	for _, f := range []struct{ name, value string }{
		{"access token", s.AccessToken}, {"refresh token", s.RefreshToken}, {"scope", s.Scope},
		{"authorization server nonce", s.AuthServerNonce}, {"PDS nonce", s.PDSNonce},
	} {
		if i := strings.IndexFunc(f.value, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
			return fmt.Errorf("the session's %s holds a byte that is not printable ASCII at %d: %w", f.name, i, ErrTooLarge)
		}
	}
	return nil
}

// EncodeSession is the session as stores keep it (JSON), refused with
// ErrTooLarge when over its size limits.
func EncodeSession(s *Session) ([]byte, error) {
	if err := s.CheckSizes(); err != nil {
		return nil, err
	}
	v, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	if len(v) > MaxRecordBytes {
		return nil, fmt.Errorf("the session is %d bytes stored, over the limit of %d: %w", len(v), MaxRecordBytes, ErrTooLarge)
	}
	return v, nil
}

// DecodeSession reads a session that EncodeSession wrote.
func DecodeSession(v []byte) (Session, error) {
	var s Session
	if err := json.Unmarshal(v, &s); err != nil {
		return Session{}, fmt.Errorf("decode session: %w", err)
	}
	return s, nil
}

// Pending is an authorization request between /@/signin and /@/callback.
type Pending struct {
	State    string `json:"state"`
	Host     string `json:"host"`
	ClientID string `json:"client_id"`
	Issuer   string `json:"issuer"`
	// ExpectedDID is set when the user typed a handle or DID; the token's
	// sub must equal it.
	ExpectedDID string `json:"expected_did,omitempty"`
	// Handle is the verified handle for ExpectedDID.
	Handle string `json:"handle,omitempty"`
	// PDS is set when the user typed a handle or DID.
	PDS          string    `json:"pds,omitempty"`
	PKCEVerifier string    `json:"pkce_verifier"`
	DPoPKey      *dpop.Key `json:"dpop_key"`
	// Redirect is the same-site path to return to after sign-in.
	Redirect string `json:"redirect"`
	// Client is the address the sign-in was started from (as the rate
	// limits count it), for its share of the sign-ins in progress.
	Client string `json:"client,omitempty"`
	// Binding is the random value of the browser's state cookie: only the
	// browser that started the sign-in can finish it.
	Binding string `json:"binding"`
	// Replaces is the id of the session a re-consent started from (the
	// host asks for more than it was granted): that session stays until
	// the new grant arrives, and ends then; declined, it stays as it was.
	Replaces string `json:"replaces,omitempty"`
	// Provider is set for a sign-in with another OAuth provider (empty
	// for AT Protocol); Nonce is the OpenID Connect nonce its ID token
	// must carry.
	Provider  string    `json:"provider,omitempty"`
	Nonce     string    `json:"nonce,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Expiry    time.Time `json:"expiry"`
}

// NewToken returns 256 random bits, base64url-encoded: session ids, proxy
// keys, states.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// WellFormedToken reports whether s has the shape of NewToken's tokens
// (43 base64url characters), so that junk costs no lookup at all.
func WellFormedToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
