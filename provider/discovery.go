package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// How long a discovery document is used before it is fetched again, and
// how long after a failed refetch the stale one is used before the next
// try: endpoints move rarely, and a provider that is down must not be
// asked on every sign-in while an old copy works.
const (
	discoveryMaxAge     = time.Hour
	discoveryRetryAfter = time.Minute
)

// endpoints are where a provider's parts are, from the configuration or
// from discovery.
type endpoints struct {
	issuer     string // the exact iss of its ID tokens (with OpenID); Identity.Issuer
	authorize  string
	token      string
	userinfo   string
	revocation string
	jwks       string
	// authPost: the server takes client_secret_post and not
	// client_secret_basic (which is the default, RFC 8414 §2).
	authPost bool
}

// discoveryDocument is the part of OpenID Connect Discovery 1.0 §3 (and
// RFC 8414 §2) that ioproxy uses.
type discoveryDocument struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
}

// parseDiscovery checks a discovery document for issuer, the configured
// issuer: OpenID Connect Discovery §4.3 requires its issuer to be exactly
// the one asked for, or an attacker who can publish a document elsewhere
// could name its own token endpoint and keys. The key set is required
// when the client verifies ID tokens (needKeys).
func parseDiscovery(body []byte, issuer string, needKeys bool) (*endpoints, error) {
	var d discoveryDocument
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("not a JSON discovery document: %w", jsonError(err))
	}
	if d.Issuer != issuer {
		return nil, fmt.Errorf("the document's issuer is %q, not %q as configured; they must be the same, byte for byte", cleanText(d.Issuer, 200), issuer)
	}
	ep := &endpoints{issuer: issuer}
	for _, f := range []struct {
		name     string
		value    string
		dst      *string
		required bool
	}{
		{"authorization_endpoint", d.AuthorizationEndpoint, &ep.authorize, true},
		{"token_endpoint", d.TokenEndpoint, &ep.token, true},
		{"jwks_uri", d.JWKSURI, &ep.jwks, needKeys},
		{"userinfo_endpoint", d.UserinfoEndpoint, &ep.userinfo, false},
		{"revocation_endpoint", d.RevocationEndpoint, &ep.revocation, false},
	} {
		if f.value == "" {
			if f.required {
				return nil, fmt.Errorf("the document has no %s", f.name)
			}
			continue
		}
		if _, err := checkEndpoint(f.value); err != nil {
			return nil, fmt.Errorf("the document's %s: %w", f.name, err)
		}
		*f.dst = f.value
	}
	ep.authPost = len(d.TokenAuthMethods) > 0 &&
		!slices.Contains(d.TokenAuthMethods, "client_secret_basic") &&
		slices.Contains(d.TokenAuthMethods, "client_secret_post")
	return ep, nil
}

// discoveryURL is where issuer's document is (OpenID Connect Discovery
// §4: the well-known path is appended to the issuer, path and all).
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// discover returns the endpoints, fetching the document when there is none
// yet (every call retries until one fetch works) or when it is older than
// discoveryMaxAge (a failure then keeps the stale one for
// discoveryRetryAfter).
func (c *Client) discover(ctx context.Context) (*endpoints, error) {
	got, err := c.disc.get(ctx, c.fetchDiscovery, nil)
	if err != nil {
		return nil, err
	}
	if got.stale != nil {
		c.log.WarnContext(ctx, "provider discovery refetch failed; using the document fetched before", "err", got.stale)
	}
	return got.val, nil
}

func (c *Client) fetchDiscovery(ctx context.Context) (*endpoints, error) {
	u := discoveryURL(c.cfg.Issuer)
	a, err := c.do(ctx, http.MethodGet, u, nil, maxDocument, nil)
	if err != nil {
		return nil, c.errorf("discovery: %w", err)
	}
	if a.status != http.StatusOK {
		return nil, c.answerError(a, "discovery "+u)
	}
	ep, err := parseDiscovery(a.body, c.cfg.Issuer, c.openid)
	if err != nil {
		return nil, c.errorf("discovery %s: %w", u, err)
	}
	return ep, nil
}
