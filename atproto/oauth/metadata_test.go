package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func validMetadata() ServerMetadata {
	const iss = "https://auth.example.com"
	return ServerMetadata{
		Issuer:                                 iss,
		AuthorizationEndpoint:                  iss + "/oauth/authorize",
		TokenEndpoint:                          iss + "/oauth/token",
		PushedAuthorizationRequestEndpoint:     iss + "/oauth/par",
		RevocationEndpoint:                     iss + "/oauth/revoke",
		RequirePushedAuthorizationRequests:     true,
		AuthorizationResponseISSParamSupported: true,
		ClientIDMetadataDocumentSupported:      true,
		DPoPSigningAlgValuesSupported:          []string{"RS256", "ES256"},
		ScopesSupported:                        []string{"atproto", "transition:generic"},
		ResponseTypesSupported:                 []string{"code"},
		GrantTypesSupported:                    []string{"authorization_code", "refresh_token"},
		CodeChallengeMethodsSupported:          []string{"S256"},
		TokenEndpointAuthMethodsSupported:      []string{"none", "private_key_jwt"},
		TokenEndpointAuthSigningAlgValues:      []string{"ES256"},
	}
}

func TestMetadataValidation(t *testing.T) {
	const iss = "https://auth.example.com"
	for _, tt := range []struct {
		name      string
		edit      func(*ServerMetadata)
		allowHTTP bool
		wantErr   string // "" means valid
	}{
		{"valid", func(*ServerMetadata) {}, false, ""},
		{"no scopes list is fine", func(m *ServerMetadata) { m.ScopesSupported = nil }, false, ""},
		{"no PKCE list is fine", func(m *ServerMetadata) { m.CodeChallengeMethodsSupported = nil }, false, ""},
		{"no revocation endpoint is fine", func(m *ServerMetadata) { m.RevocationEndpoint = "" }, false, ""},
		{"issuer of another server", func(m *ServerMetadata) { m.Issuer = "https://evil.example.com" }, false, "does not match"},
		{"issuer with trailing slash", func(m *ServerMetadata) { m.Issuer = iss + "/" }, false, "does not match"},
		{"issuer in other case", func(m *ServerMetadata) { m.Issuer = "https://AUTH.example.com" }, false, "does not match"},
		{"empty issuer", func(m *ServerMetadata) { m.Issuer = "" }, false, "does not match"},
		{"PAR not required", func(m *ServerMetadata) { m.RequirePushedAuthorizationRequests = false }, false, "pushed authorization"},
		{"no PAR endpoint", func(m *ServerMetadata) { m.PushedAuthorizationRequestEndpoint = "" }, false, "pushed_authorization_request_endpoint"},
		{"no iss parameter", func(m *ServerMetadata) { m.AuthorizationResponseISSParamSupported = false }, false, "iss parameter"},
		{"no client metadata documents", func(m *ServerMetadata) { m.ClientIDMetadataDocumentSupported = false }, false, "client metadata"},
		{"no ES256", func(m *ServerMetadata) { m.DPoPSigningAlgValuesSupported = []string{"RS256", "ES384"} }, false, "ES256"},
		{"no DPoP algs", func(m *ServerMetadata) { m.DPoPSigningAlgValuesSupported = nil }, false, "ES256"},
		{"es256 in lower case", func(m *ServerMetadata) { m.DPoPSigningAlgValuesSupported = []string{"es256"} }, false, "ES256"},
		{"scopes without atproto", func(m *ServerMetadata) { m.ScopesSupported = []string{"transition:generic"} }, false, "atproto scope"},
		{"PKCE without S256", func(m *ServerMetadata) { m.CodeChallengeMethodsSupported = []string{"plain"} }, false, "S256"},
		{"http token endpoint", func(m *ServerMetadata) { m.TokenEndpoint = "http://auth.example.com/oauth/token" }, false, "token_endpoint"},
		{"http token endpoint in development", func(m *ServerMetadata) { m.TokenEndpoint = "http://auth.example.com/oauth/token" }, true, ""},
		{"relative authorization endpoint", func(m *ServerMetadata) { m.AuthorizationEndpoint = "/oauth/authorize" }, false, "authorization_endpoint"},
		{"javascript authorization endpoint", func(m *ServerMetadata) { m.AuthorizationEndpoint = "javascript:alert(1)" }, true, "authorization_endpoint"},
		{"token endpoint with user info", func(m *ServerMetadata) { m.TokenEndpoint = "https://u:p@auth.example.com/oauth/token" }, false, "token_endpoint"},
		{"PAR endpoint with fragment", func(m *ServerMetadata) { m.PushedAuthorizationRequestEndpoint = iss + "/oauth/par#x" }, false, "pushed_authorization_request_endpoint"},
		{"bad revocation endpoint", func(m *ServerMetadata) { m.RevocationEndpoint = "ftp://auth.example.com/revoke" }, false, "revocation_endpoint"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := validMetadata()
			tt.edit(&m)
			err := m.validate(iss, tt.allowHTTP)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("valid metadata refused: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("invalid metadata accepted")
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestDiscoveryRefusesBadServers serves bad documents from the fake and
// checks that sign-in stops before any pushed request.
func TestDiscoveryRefusesBadServers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		meta     func(map[string]any)
		resource func(map[string]any)
	}{
		{name: "issuer mismatch", meta: func(m map[string]any) { m["issuer"] = "https://evil.example.com" }},
		{name: "PAR not required", meta: func(m map[string]any) { m["require_pushed_authorization_requests"] = false }},
		{name: "no ES256", meta: func(m map[string]any) { m["dpop_signing_alg_values_supported"] = []string{"RS256"} }},
		{name: "no iss parameter", meta: func(m map[string]any) { delete(m, "authorization_response_iss_parameter_supported") }},
		{name: "no client id metadata documents", meta: func(m map[string]any) { m["client_id_metadata_document_supported"] = false }},
		{name: "two authorization servers", resource: func(m map[string]any) {
			m["authorization_servers"] = []string{m["resource"].(string), "https://other.example.com"}
		}},
		{name: "no authorization server", resource: func(m map[string]any) { m["authorization_servers"] = []string{} }},
		{name: "resource names another server", resource: func(m map[string]any) { m["resource"] = "https://other.example.com" }},
		{name: "authorization server with a path", resource: func(m map[string]any) {
			m["authorization_servers"] = []string{m["resource"].(string) + "/oauth"}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.EditMetadata(tt.meta)
			e.srv.EditProtectedResource(tt.resource)
			for _, input := range []string{"alice.test", e.alice.DID} {
				_, _, err := e.client.Authorize(context.Background(), input)
				var ue *UserError
				if !errors.As(err, &ue) {
					t.Errorf("Authorize(%s): %v, want a UserError", input, err)
				}
			}
			if c := e.srv.Counts(); c.PAR != 0 {
				t.Errorf("%d pushed requests sent to a server that failed discovery", c.PAR)
			}
		})
	}
}

func TestAuthorizeRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	for _, input := range []string{"", "not a handle", "nobody.test", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:key:z6Mk", "ftp://x.example.com", "https://example.com/path", "javascript:alert(1)"} {
		_, _, err := e.client.Authorize(context.Background(), input)
		var ue *UserError
		if !errors.As(err, &ue) || ue.Message == "" {
			t.Errorf("Authorize(%q): %v, want a UserError with a message", input, err)
		}
	}
	if c := e.srv.Counts(); c.PAR != 0 {
		t.Errorf("%d pushed requests for bad input", c.PAR)
	}
}

func TestRefusesHTTPServersWithoutDevSwitch(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowInsecure = false })
	_, _, err := e.client.Authorize(context.Background(), e.srv.URL)
	var ue *UserError
	if !errors.As(err, &ue) {
		t.Fatalf("Authorize(%s) without allow_insecure: %v, want a refusal", e.srv.URL, err)
	}
}

// The metadata cache is bounded: issuers are chosen by whoever signs in.
func TestDiscoveryCacheIsBounded(t *testing.T) {
	d := &discovery{ttl: time.Hour, now: time.Now, servers: map[string]cachedServer{}}
	for i := 0; i < maxCachedServers+50; i++ {
		d.mu.Lock()
		d.servers[fmt.Sprintf("https://as%d.example", i)] = cachedServer{meta: &ServerMetadata{}, fetched: time.Now()}
		d.mu.Unlock()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss := "http://" + r.Host
		fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%s/a","token_endpoint":"%s/t","pushed_authorization_request_endpoint":"%s/p","require_pushed_authorization_requests":true,"authorization_response_iss_parameter_supported":true,"client_id_metadata_document_supported":true,"dpop_signing_alg_values_supported":["ES256"]}`, iss, iss, iss, iss)
	}))
	defer srv.Close()
	d.http = srv.Client()
	d.allowHTTP = true
	if _, err := d.server(context.Background(), srv.URL); err != nil {
		t.Fatal(err)
	}
	if n := len(d.servers); n > maxCachedServers {
		t.Fatalf("cache holds %d servers, bound is %d", n, maxCachedServers)
	}
	if _, ok := d.servers[srv.URL]; !ok {
		t.Fatal("the new server is not cached")
	}
}
