package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// maxSubject bounds a subject: longer is no account id (OpenID Connect
// Core §2 says 255 ASCII characters at most).
const maxSubject = 255

// userinfo asks the userinfo endpoint (OpenID Connect Core §5.3, or a
// plain OAuth provider's profile API such as GitHub's /user) who the
// access token's owner is.
func (c *Client) userinfo(ctx context.Context, ep *endpoints, accessToken string) (Identity, error) {
	const op = "userinfo"
	a, err := c.do(ctx, http.MethodGet, ep.userinfo, nil, maxDocument, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+accessToken)
	})
	if err != nil {
		return Identity{}, c.errorf("%s: %w", op, err)
	}
	if a.status != http.StatusOK {
		return Identity{}, c.answerError(a, op)
	}
	if !a.isJSON() {
		// A signed or encrypted userinfo answer (application/jwt) is
		// opt-in at registration; ioproxy does not register for it.
		return Identity{}, c.errorf("%s %s: answered %s, not JSON", op, ep.userinfo, a.describe())
	}
	id, err := parseUserinfo(a.body)
	if err != nil {
		return Identity{}, c.errorf("%s %s: %w", op, ep.userinfo, err)
	}
	return id, nil
}

// parseUserinfo reads a userinfo answer: OpenID Connect's sub, email,
// email_verified and name, or GitHub's numeric id and login.
func parseUserinfo(body []byte) (Identity, error) {
	var raw struct {
		Sub           json.RawMessage `json:"sub"`
		ID            json.RawMessage `json:"id"`
		Email         any             `json:"email"`
		EmailVerified any             `json:"email_verified"`
		Name          any             `json:"name"`
		Login         any             `json:"login"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Identity{}, fmt.Errorf("not a JSON object: %w", jsonError(err))
	}
	sub, err := subjectOf(raw.Sub)
	if err != nil {
		return Identity{}, fmt.Errorf("sub: %w", err)
	}
	if sub == "" {
		if sub, err = subjectOf(raw.ID); err != nil {
			return Identity{}, fmt.Errorf("id: %w", err)
		}
	}
	if sub == "" {
		return Identity{}, errors.New("the answer has neither sub nor id")
	}
	id := Identity{Subject: sub}
	id.Email, _ = raw.Email.(string)
	id.EmailVerified = truthy(raw.EmailVerified)
	id.Name, _ = raw.Name.(string)
	if id.Name == "" {
		id.Name, _ = raw.Login.(string)
	}
	return id, nil
}

// subjectOf reads a subject that is a string or (GitHub) an integer, kept
// as its decimal text so that a large id does not lose digits in a float.
func subjectOf(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New("not a JSON string")
		}
	} else {
		for _, ch := range raw {
			if ch < '0' || ch > '9' {
				return "", errors.New("neither a string nor a non-negative integer")
			}
		}
		s = string(raw)
	}
	if len(s) > maxSubject {
		return "", fmt.Errorf("longer than %d bytes", maxSubject)
	}
	return s, nil
}

// completeIdentity fills in what the scopes asked for and the ID token
// left out from the userinfo endpoint, as OpenID Connect Core §5.4 lets a
// provider do (claims of "email" and "profile" go only to userinfo when an
// access token is issued). Its sub must be the token's (§5.3.2), or the
// answer is someone else's.
func (c *Client) completeIdentity(ctx context.Context, ep *endpoints, g *Grant) error {
	id := &g.Identity
	wantEmail := id.Email == "" && slices.Contains(c.cfg.Scopes, "email")
	wantName := id.Name == "" && slices.Contains(c.cfg.Scopes, "profile")
	if ep.userinfo == "" || (!wantEmail && !wantName) {
		return nil
	}
	info, err := c.userinfo(ctx, ep, g.AccessToken)
	if err != nil {
		return err
	}
	if info.Subject != id.Subject {
		return c.errorf("userinfo: %w: its sub is not the ID token's", ErrIDToken)
	}
	if wantEmail {
		id.Email, id.EmailVerified = info.Email, info.EmailVerified
	}
	if wantName {
		id.Name = info.Name
	}
	return nil
}
