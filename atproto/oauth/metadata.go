package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

// metadataLimit caps the metadata documents we read; they are a few KB.
const metadataLimit = 256 << 10

// maxCachedServers bounds the authorization server metadata cache.
const maxCachedServers = 1000

// ServerMetadata is the part of an authorization server's metadata
// (RFC 8414) that the AT Protocol profile relies on.
type ServerMetadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	PushedAuthorizationRequestEndpoint     string   `json:"pushed_authorization_request_endpoint"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	RequirePushedAuthorizationRequests     bool     `json:"require_pushed_authorization_requests"`
	AuthorizationResponseISSParamSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported      bool     `json:"client_id_metadata_document_supported"`
	DPoPSigningAlgValuesSupported          []string `json:"dpop_signing_alg_values_supported"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValues      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

// validate applies the profile's requirements to metadata fetched for
// issuer. allowHTTP is the development switch.
func (m *ServerMetadata) validate(issuer string, allowHTTP bool) error {
	if m.Issuer != issuer {
		return fmt.Errorf("issuer %q does not match the server it was fetched from (%s)", m.Issuer, issuer)
	}
	for name, ep := range map[string]string{
		"authorization_endpoint":                m.AuthorizationEndpoint,
		"token_endpoint":                        m.TokenEndpoint,
		"pushed_authorization_request_endpoint": m.PushedAuthorizationRequestEndpoint,
	} {
		if err := checkURL(ep, allowHTTP); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if m.RevocationEndpoint != "" {
		if err := checkURL(m.RevocationEndpoint, allowHTTP); err != nil {
			return fmt.Errorf("revocation_endpoint: %w", err)
		}
	}
	switch {
	case !m.RequirePushedAuthorizationRequests:
		return errors.New("the server does not require pushed authorization requests, as the AT Protocol profile demands")
	case !m.AuthorizationResponseISSParamSupported:
		return errors.New("the server does not return the iss parameter (authorization_response_iss_parameter_supported)")
	case !m.ClientIDMetadataDocumentSupported:
		return errors.New("the server does not support client metadata documents")
	case !slices.Contains(m.DPoPSigningAlgValuesSupported, "ES256"):
		return errors.New("the server does not accept ES256 DPoP proofs")
	case len(m.ScopesSupported) > 0 && !slices.Contains(m.ScopesSupported, "atproto"):
		return errors.New("the server does not support the atproto scope")
	case len(m.CodeChallengeMethodsSupported) > 0 && !slices.Contains(m.CodeChallengeMethodsSupported, "S256"):
		return errors.New("the server does not support PKCE S256")
	}
	return nil
}

// ProtectedResource is a PDS's /.well-known/oauth-protected-resource.
type ProtectedResource struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
}

// checkURL requires an absolute https URL (http with allowHTTP).
func checkURL(s string, allowHTTP bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		// "https://:443/x" has a Host but names no host: it would be
		// dialled on this machine.
		return fmt.Errorf("%q is not an absolute URL with a host name", s)
	}
	if u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
		return fmt.Errorf("%q is not an https URL", s)
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q may not carry user info or a fragment", s)
	}
	return nil
}

// origin returns scheme://host[:port] of an absolute URL, lower case.
func origin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%q is not an http(s) URL with a host name", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an origin (it has a path or query)", s)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// discovery fetches and caches server metadata. Metadata is cached only
// briefly: long enough for one sign-in or a burst of refreshes, short
// enough that a server's changes take effect soon.
type discovery struct {
	http      *http.Client
	allowHTTP bool
	ttl       time.Duration
	now       func() time.Time

	mu      sync.Mutex
	servers map[string]cachedServer
}

type cachedServer struct {
	meta    *ServerMetadata
	fetched time.Time
}

// authServerFor returns the issuer named by a PDS's protected-resource
// document. It is never cached: it binds an account to its issuer.
func (d *discovery) authServerFor(ctx context.Context, pds string) (string, error) {
	o, err := origin(strings.TrimSuffix(pds, "/"))
	if err != nil {
		return "", fmt.Errorf("PDS address: %w", err)
	}
	body, err := safehttp.Get(ctx, d.http, o+"/.well-known/oauth-protected-resource", metadataLimit)
	if err != nil {
		return "", fmt.Errorf("fetch protected resource metadata of %s: %w", o, err)
	}
	var pr ProtectedResource
	if err := json.Unmarshal(body, &pr); err != nil {
		return "", fmt.Errorf("decode protected resource metadata of %s: %w", o, err)
	}
	if len(pr.AuthorizationServers) != 1 {
		return "", fmt.Errorf("protected resource metadata of %s names %d authorization servers; the AT Protocol profile requires exactly one", o, len(pr.AuthorizationServers))
	}
	if pr.Resource != "" {
		if ro, err := origin(strings.TrimSuffix(pr.Resource, "/")); err != nil || ro != o {
			return "", fmt.Errorf("protected resource metadata of %s names another resource (%q)", o, pr.Resource)
		}
	}
	issuer, err := origin(pr.AuthorizationServers[0])
	if err != nil {
		return "", fmt.Errorf("authorization server of %s: %w", o, err)
	}
	if err := checkURL(issuer, d.allowHTTP); err != nil {
		return "", fmt.Errorf("authorization server of %s: %w", o, err)
	}
	return issuer, nil
}

// server returns the validated metadata of an issuer.
func (d *discovery) server(ctx context.Context, issuer string) (*ServerMetadata, error) {
	d.mu.Lock()
	c, ok := d.servers[issuer]
	d.mu.Unlock()
	if ok && d.now().Sub(c.fetched) < d.ttl {
		return c.meta, nil
	}
	body, err := safehttp.Get(ctx, d.http, issuer+"/.well-known/oauth-authorization-server", metadataLimit)
	if err != nil {
		return nil, fmt.Errorf("fetch authorization server metadata of %s: %w", issuer, err)
	}
	var m ServerMetadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decode authorization server metadata of %s: %w", issuer, err)
	}
	if err := m.validate(issuer, d.allowHTTP); err != nil {
		return nil, fmt.Errorf("authorization server %s: %w", issuer, err)
	}
	d.mu.Lock()
	if d.servers == nil {
		d.servers = map[string]cachedServer{}
	}
	// Issuers are chosen by whoever signs in: bound the cache, dropping
	// expired entries first, then arbitrary ones.
	if len(d.servers) >= maxCachedServers {
		now := d.now()
		for k, v := range d.servers {
			if now.Sub(v.fetched) >= d.ttl {
				delete(d.servers, k)
			}
		}
		for k := range d.servers {
			if len(d.servers) < maxCachedServers {
				break
			}
			delete(d.servers, k)
		}
	}
	d.servers[issuer] = cachedServer{meta: &m, fetched: d.now()}
	d.mu.Unlock()
	return &m, nil
}
