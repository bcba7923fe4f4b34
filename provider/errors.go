package provider

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ioproxy/ioproxy/internal/textutil"
)

// The three kinds of failure a caller acts on differently. Test with
// errors.Is; anything else (a misconfigured client: invalid_client,
// unauthorized_client; a malformed answer) is none of them, and will not
// pass by itself.
var (
	// ErrInvalidGrant: the server answered invalid_grant, so the refresh
	// token (or the code) is dead: used, revoked or expired. The caller
	// ends the session, or fails the sign-in.
	ErrInvalidGrant = errors.New("invalid_grant")
	// ErrUnavailable: the provider could not be reached, timed out or
	// answered 5xx or 429 (temporarily_unavailable, server_error). It
	// passes; the session stays and the caller tries again later.
	ErrUnavailable = errors.New("provider unavailable")
	// ErrIDToken: an ID token was missing or failed verification
	// (signature, iss, aud, azp, exp, iat, nonce, sub). A sign-in with it
	// must fail: the answer cannot be trusted to name the user. On a
	// refresh such an error is ErrInvalidGrant too: the session ends.
	ErrIDToken = errors.New("ID token refused")
	// ErrSubjectChanged: a refresh answered an ID token for another
	// subject than the session's. Such an error is ErrInvalidGrant too.
	ErrSubjectChanged = errors.New("subject changed")
)

// Bounds of what an OAuthError keeps of the server's answer, which goes to
// logs and pages.
const (
	maxErrorCode        = 64
	maxErrorDescription = 300
)

// OAuthError is an endpoint's error answer: RFC 6749 §5.2's error and
// error_description, clipped, or only the HTTP status when the body was
// not such an answer. It never holds the request (codes, secrets, tokens).
type OAuthError struct {
	Provider    string // the provider's name in the configuration
	Operation   string // "code exchange", "refresh", "revocation", "userinfo"
	Status      int    // the HTTP status
	Code        string // error ("invalid_grant"); empty when the body had none
	Description string // error_description
	// Body says what the body was when it held no error code
	// ("text/html, 1532 bytes"), never its content: a server may echo the
	// request.
	Body string
}

func (e *OAuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider %q: %s: HTTP %d", e.Provider, e.Operation, e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
		if e.Description != "" {
			fmt.Fprintf(&b, ": %q", e.Description)
		}
	} else if e.Body != "" {
		fmt.Fprintf(&b, " (%s)", e.Body)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidGrant) and errors.Is(err,
// ErrUnavailable) work on an *OAuthError.
func (e *OAuthError) Is(target error) bool {
	switch target {
	case ErrInvalidGrant:
		return isDeadGrant(e.Code)
	case ErrUnavailable:
		if isDeadGrant(e.Code) {
			return false
		}
		return e.Status >= 500 || e.Status == 429 ||
			e.Code == "temporarily_unavailable" || e.Code == "server_error"
	}
	return false
}

// isDeadGrant: invalid_grant is RFC 6749's word for a dead code or refresh
// token; GitHub answers its own words (with HTTP 200) for the same thing.
func isDeadGrant(code string) bool {
	switch code {
	case "invalid_grant", "bad_verification_code", "bad_refresh_token":
		return true
	}
	return false
}

// cleanText clips what a server said and drops control characters, so an
// answer cannot forge log lines or fill a page.
func cleanText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return textutil.Clip(strings.TrimSpace(s), n)
}
