package identity

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// ParseInput turns what a person typed into a handle or a DID: surrounding
// space and a leading "@" are dropped, handles are lowercased.
func ParseInput(input string) (syntax.AtIdentifier, error) {
	s := strings.TrimSpace(input)
	s = strings.TrimPrefix(s, "@")
	if len(s) >= 4 && strings.EqualFold(s[:4], "did:") {
		did, err := syntax.ParseDID(s)
		if err != nil {
			return "", newError(ErrInvalidInput, err, "%q is not a valid DID", s)
		}
		return did.AtIdentifier(), nil
	}
	h, err := syntax.ParseHandle(s)
	if err != nil {
		return "", newError(ErrInvalidInput, err, "%q is not a valid handle (like alice.bsky.social) or DID", s)
	}
	h = h.Normalize()
	if h.IsInvalidHandle() {
		return "", newError(ErrInvalidInput, nil, "%q is not a valid handle", s)
	}
	return h.AtIdentifier(), nil
}

// serviceURL checks an operator-configured base URL and trims its trailing
// slash.
func serviceURL(raw string, allowInsecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowInsecure {
			return "", fmt.Errorf("%q must use https (http is allowed only with identity.allow_insecure)", raw)
		}
	default:
		return "", fmt.Errorf("%q must be an absolute https URL", raw)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q must be a plain https://host[:port][/path] URL", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// checkPDS accepts an absolute https URL (http with AllowInsecure) without
// credentials, query or fragment, and returns it without trailing slash.
func (r *Resolver) checkPDS(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("PDS endpoint %q is not a URL: %w", raw, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !r.allowInsecure {
			return "", fmt.Errorf("PDS endpoint %q is not https (http is allowed only with identity.allow_insecure)", raw)
		}
	default:
		return "", fmt.Errorf("PDS endpoint %q is not an http(s) URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("PDS endpoint %q has no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("PDS endpoint %q must be a plain URL without credentials, query or fragment", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
}
