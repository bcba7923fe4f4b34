package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/atproto/oauth"
)

// maxExpiresIn bounds expires_in: a larger value is a broken server, and
// would overflow time.Duration.
const maxExpiresIn = 10 * 365 * 24 * 3600

// tokenAnswer is a token endpoint's successful answer, checked.
type tokenAnswer struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	Scope        string
	IDToken      string
	// ExpiresIn is in seconds; 0 when the server gave none.
	ExpiresIn int64
}

func (a *tokenAnswer) grant(now time.Time) *Grant {
	g := &Grant{
		AccessToken:  a.AccessToken,
		RefreshToken: a.RefreshToken,
		TokenType:    a.TokenType,
		Scope:        a.Scope,
	}
	if a.ExpiresIn > 0 {
		g.Expiry = now.Add(time.Duration(a.ExpiresIn) * time.Second)
	}
	return g
}

// rawTokenAnswer is the JSON of RFC 6749 §5.1 and §5.2, with the fields
// that providers spell differently kept raw: expires_in as a number or a
// string of digits, scope as a string or a list.
type rawTokenAnswer struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	Scope        json.RawMessage `json:"scope"`
	IDToken      string          `json:"id_token"`
	Error        string          `json:"error"`
}

// parseTokenAnswer checks a token endpoint's answer. An error answer (any
// status but 2xx, or GitHub's 200 with "error") is an *OAuthError without
// Provider and Operation, which the caller fills in.
func parseTokenAnswer(a *answer) (*tokenAnswer, error) {
	if a.status < 200 || a.status > 299 {
		return nil, errorAnswer(a)
	}
	if !a.isJSON() {
		return nil, fmt.Errorf("answered HTTP %d with %s, not a JSON token answer", a.status, a.describe())
	}
	var raw rawTokenAnswer
	if err := json.Unmarshal(a.body, &raw); err != nil {
		return nil, fmt.Errorf("answered HTTP %d with %s that is not a JSON token answer: %w", a.status, a.describe(), jsonError(err))
	}
	if raw.Error != "" {
		return nil, errorAnswer(a)
	}
	if raw.AccessToken == "" {
		return nil, errors.New("the token answer has no access_token")
	}
	if raw.TokenType == "" {
		return nil, errors.New("the token answer has no token_type")
	}
	// A DPoP, MAC or N_A token would be refused by the API ioproxy passes
	// it to, or bound to a key we do not hold: better to say so now.
	if !strings.EqualFold(raw.TokenType, "bearer") {
		return nil, fmt.Errorf("the token answer's token_type is %q; ioproxy handles only Bearer tokens", cleanText(raw.TokenType, maxErrorCode))
	}
	exp, err := parseExpiresIn(raw.ExpiresIn)
	if err != nil {
		return nil, err
	}
	scope, err := parseScope(raw.Scope)
	if err != nil {
		return nil, err
	}
	return &tokenAnswer{
		AccessToken:  raw.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: raw.RefreshToken,
		Scope:        scope,
		IDToken:      raw.IDToken,
		ExpiresIn:    exp,
	}, nil
}

// errorAnswer is the *OAuthError of an error answer (any status but 2xx,
// or GitHub's 200 with "error"): its error and error_description as
// atproto/oauth reads them, cleaned of control characters, or only what
// the body was when it held no error code as a string (some APIs answer
// {"error": {"code": …, "message": …}}: only the RFC 6749 form counts).
func errorAnswer(a *answer) *OAuthError {
	se := oauth.ParseServerError(a.status, a.body)
	e := &OAuthError{Status: a.status, Code: cleanText(se.Code, maxErrorCode)}
	if e.Code == "" {
		e.Body = a.describe()
		return e
	}
	e.Description = cleanText(se.Description, maxErrorDescription)
	return e
}

// answerError is errorAnswer's *OAuthError naming this provider and op.
func (c *Client) answerError(a *answer, op string) *OAuthError {
	oe := errorAnswer(a)
	oe.Provider, oe.Operation = c.cfg.Name, op
	return oe
}

// parseExpiresIn reads expires_in, a number of seconds (some providers
// quote it). Absent, null or 0 means the server did not say.
func parseExpiresIn(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("the token answer's expires_in is not a number")
		}
		raw = []byte(strings.TrimSpace(s))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("the token answer's expires_in %q is not a number", cleanText(string(raw), 32))
	}
	if f < 0 {
		return 0, fmt.Errorf("the token answer's expires_in %q is negative", cleanText(string(raw), 32))
	}
	if f > maxExpiresIn {
		return maxExpiresIn, nil
	}
	return int64(f), nil
}

// parseScope reads scope, a space-separated string (RFC 6749 §3.3) or, from
// a few servers, a list of strings.
func parseScope(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return strings.Join(list, " "), nil
	}
	return "", errors.New("the token answer's scope is neither a string nor a list of strings")
}

// jsonError drops what encoding/json quotes of the input (a token could be
// in it) and keeps where it failed.
func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("field %q is a JSON %s, not %s", typ.Field, typ.Value, typ.Type)
	}
	return errors.New("invalid JSON")
}

// tokenRequest posts form to the token endpoint, with the client's
// authentication, and checks the answer.
func (c *Client) tokenRequest(ctx context.Context, ep *endpoints, form url.Values, op string) (*tokenAnswer, error) {
	prepare := c.authenticate(ep, form)
	a, err := c.do(ctx, http.MethodPost, ep.token, form, maxTokenAnswer, prepare)
	if err != nil {
		return nil, c.errorf("%s: %w", op, err)
	}
	ans, err := parseTokenAnswer(a)
	if err != nil {
		var oe *OAuthError
		if errors.As(err, &oe) {
			oe.Provider, oe.Operation = c.cfg.Name, op
			return nil, oe
		}
		return nil, c.errorf("%s: token endpoint %s: %w", op, ep.token, err)
	}
	return ans, nil
}

// authenticate adds the client's credentials to a token or revocation
// request: client_secret_basic unless discovery says the server takes
// only client_secret_post, and only client_id for a public client.
func (c *Client) authenticate(ep *endpoints, form url.Values) func(*http.Request) {
	switch {
	case c.cfg.ClientSecret == "":
		form.Set("client_id", c.cfg.ClientID)
		return nil
	case ep.authPost:
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_secret", c.cfg.ClientSecret)
		return nil
	}
	// RFC 6749 §2.3.1: the id and the secret are form-encoded before
	// they are joined, so a ":" in the id cannot move the split.
	id, secret := url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret)
	return func(r *http.Request) { r.SetBasicAuth(id, secret) }
}

// revoke posts token to the revocation endpoint (RFC 7009).
func (c *Client) revoke(ctx context.Context, ep *endpoints, token string) error {
	const op = "revocation"
	form := url.Values{"token": {token}}
	prepare := c.authenticate(ep, form)
	a, err := c.do(ctx, http.MethodPost, ep.revocation, form, maxDocument, prepare)
	if err != nil {
		return c.errorf("%s: %w", op, err)
	}
	if a.status >= 200 && a.status <= 299 {
		return nil
	}
	oe := c.answerError(a, op)
	// RFC 7009 §2.2 answers 200 for a token that is already invalid;
	// Google answers 400 invalid_token. Either way the token is dead,
	// which is what revoking wanted.
	if oe.Code == "invalid_token" {
		return nil
	}
	return oe
}
