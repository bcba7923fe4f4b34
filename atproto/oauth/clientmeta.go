package oauth

// ClientMetadata is the client metadata document served at the client id
// of a confidential client (/@/client-metadata.json).
type ClientMetadata struct {
	ClientID                    string   `json:"client_id"`
	ClientName                  string   `json:"client_name,omitempty"`
	ClientURI                   string   `json:"client_uri,omitempty"`
	LogoURI                     string   `json:"logo_uri,omitempty"`
	TOSURI                      string   `json:"tos_uri,omitempty"`
	PolicyURI                   string   `json:"policy_uri,omitempty"`
	ApplicationType             string   `json:"application_type"`
	GrantTypes                  []string `json:"grant_types"`
	ResponseTypes               []string `json:"response_types"`
	RedirectURIs                []string `json:"redirect_uris"`
	Scope                       string   `json:"scope"`
	TokenEndpointAuthMethod     string   `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg string   `json:"token_endpoint_auth_signing_alg,omitempty"`
	JWKSURI                     string   `json:"jwks_uri,omitempty"`
	DPoPBoundAccessTokens       bool     `json:"dpop_bound_access_tokens"`
}

// MetadataInfo is what a client metadata document shows people.
type MetadataInfo struct {
	ClientName, ClientURI, LogoURI, TOSURI, PolicyURI string
	JWKSURI                                           string
}

// Metadata returns the client's metadata document.
func (c *Client) Metadata(info MetadataInfo) ClientMetadata {
	m := ClientMetadata{
		ClientID:              c.cfg.ClientID,
		ClientName:            info.ClientName,
		ClientURI:             info.ClientURI,
		LogoURI:               info.LogoURI,
		TOSURI:                info.TOSURI,
		PolicyURI:             info.PolicyURI,
		ApplicationType:       "web",
		GrantTypes:            []string{"authorization_code", "refresh_token"},
		ResponseTypes:         []string{"code"},
		RedirectURIs:          []string{c.cfg.RedirectURI},
		Scope:                 c.cfg.Scope,
		DPoPBoundAccessTokens: true,
	}
	if c.cfg.Keys != nil {
		m.TokenEndpointAuthMethod = "private_key_jwt"
		m.TokenEndpointAuthSigningAlg = "ES256"
		m.JWKSURI = info.JWKSURI
	} else {
		m.TokenEndpointAuthMethod = "none"
	}
	return m
}
