package config

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/atproto/scope"
)

// uniqueHosts builds the host blocks, refusing a second block for a name
// already defined.
func (b *builder) uniqueHosts(raws []hostSchema, globalTLS TLS) []Host {
	dup := duplicate{"Duplicate host", "Host %q is already defined at %s. Each host name may appear once; merge the two blocks."}
	b.hosts = uniqueBlocks(b, raws, dup, func(rh *hostSchema) (Host, string, hcl.Range) {
		h := b.host(rh, globalTLS)
		return h, h.Hostname, rh.HostnameRange
	})
	return values(b.hosts)
}

// host builds one host block: its name, backend, sign-in, access rules
// and TLS.
func (b *builder) host(raw *hostSchema, globalTLS TLS) Host {
	name := strings.ToLower(strings.TrimSuffix(raw.Hostname, "."))
	if !validHostname(name) {
		b.errorf(raw.HostnameRange, "Invalid host name", "%q is not a host name. Write the bare name the browser uses, without scheme or port, as in host \"statusphere.example.com\" { … }.", raw.Hostname)
	}
	h := Host{Hostname: name, ShortName: raw.Name}
	if h.ShortName == "" {
		h.ShortName = name
	}
	switch {
	case raw.Backend != nil:
		be, err := ParseBackend(*raw.Backend)
		if err != nil {
			b.errorf(raw.BackendRange, "Invalid backend", "%v.", err)
		}
		h.Backend = be
	case raw.RequireATProto == nil && raw.APIKeyAuth == nil && len(raw.OAuth) == 0 && len(raw.RequireOAuth) == 0:
		b.errorf(raw.DefRange, "Missing backend", "Host %q needs a backend, as in backend = \"localhost:3000\". (Only a host with require_atproto, apikey_auth, require_oauth or oauth may leave it out: it then answers forward-auth requests from another proxy at /@/auth.)", name)
	}
	providers := b.oauthProviders(raw, name)
	if h.Backend.Kind == BackendServing {
		b.serving(raw, &h)
	} else {
		if raw.ATProto != nil {
			h.ATProto = b.atproto(raw.ATProto, h)
		} else if raw.RequireATProto != nil {
			// require_atproto means signing in; the defaults of an empty
			// atproto block (scope "atproto", the host's name) are enough.
			h.ATProto = b.atproto(&atprotoSchema{DefRange: raw.RequireATProto.DefRange}, h)
		}
		h.OAuth = values(providers)
		h.Access = b.access(hostGuard(raw, providers))
	}
	h.TLS = b.hostTLS(raw.TLS, h, globalTLS)
	return h
}

// atproto builds a host's sign-in settings, which are also its OAuth
// client metadata.
func (b *builder) atproto(raw *atprotoSchema, h Host) *ATProto {
	a := &ATProto{
		ClientName: raw.Name,
		Scopes:     raw.Scopes,
		ClientURI:  raw.ClientURI,
		LogoURI:    raw.LogoURI,
		TOSURI:     raw.TOSURI,
		PolicyURI:  raw.PolicyURI,
	}
	if a.ClientName == "" {
		a.ClientName = h.ShortName
	}
	if len(a.Scopes) == 0 {
		a.Scopes = []string{"atproto"}
	} else if !slices.Contains(a.Scopes, "atproto") {
		b.errorf(raw.ScopesRange, "Missing atproto scope", "AT Protocol OAuth requires the scope \"atproto\"; write scopes = [\"atproto\", %s].", quoteList(a.Scopes))
	}
	b.checkScopes(raw.ScopesRange, a.Scopes)
	if raw.Local != nil {
		if *raw.Local < 1 || *raw.Local > 65535 {
			b.errorf(raw.LocalRange, "Invalid local port", "local is the loopback port the browser uses for sign-in, from 1 to 65535, as in local = 9000.")
		}
		a.Local = *raw.Local
	}
	b.checkMetadataURIs(raw, a, h.Hostname)
	if raw.SigninRequired != nil {
		b.errorf(raw.SigninRequiredRange, "signin_required has moved", "Access rules now have their own block beside atproto: remove signin_required and write require_atproto {} in the host block (every path then needs sign-in; public_paths lists exceptions).")
	}
	if raw.AllowedDIDs != nil {
		b.errorf(raw.AllowedDIDsRange, "allowed_dids has moved", "Access rules now have their own block beside atproto: write require_atproto { dids = [%s] } in the host block instead.", quoteList(*raw.AllowedDIDs))
	}
	return a
}

// checkScopes reads each scope with the AT Protocol permission grammar:
// a scope the authorization server cannot read fails every sign-in, and
// transition:generic grants far more than most apps need.
func (b *builder) checkScopes(rng hcl.Range, scopes []string) {
	seen := map[scope.Scope]string{}
	for _, s := range scopes {
		p, err := scope.Parse(s)
		if err != nil {
			var se *scope.Error
			if errors.As(err, &se) {
				err = se.Err
			}
			b.errorf(rng, "Invalid scope", "%q is not an AT Protocol scope: %v.", s, err)
			continue
		}
		if first, dup := seen[p]; dup {
			b.errorf(rng, "Repeated scope", "%q asks for what %q does already; write it once.", s, first)
			continue
		}
		seen[p] = s
		if instead, ok := scope.IsDeprecated(p); ok {
			b.warnf(rng, "Broad scope", "%q lets the app write anything in the account's repository and call any service as the user; ask for what the app uses instead, such as %q.", s, instead)
		}
	}
}

// checkMetadataURIs requires the client metadata's links to be https://
// URLs, and client_uri to be on the host itself.
func (b *builder) checkMetadataURIs(raw *atprotoSchema, a *ATProto, host string) {
	for _, u := range []struct {
		attr, val string
		rng       hcl.Range
	}{
		{"client_uri", a.ClientURI, raw.ClientURIRange},
		{"logo_uri", a.LogoURI, raw.LogoURIRange},
		{"tos_uri", a.TOSURI, raw.TOSURIRange},
		{"policy_uri", a.PolicyURI, raw.PolicyURIRange},
	} {
		if u.val == "" {
			continue
		}
		pu, err := url.Parse(u.val)
		if err != nil || pu.Scheme != "https" || pu.Host == "" {
			b.errorf(u.rng, "Invalid "+u.attr, "%q is not an https:// URL; write, for example, %s = \"https://%s/\".", u.val, u.attr, host)
			continue
		}
		// Authorization servers refuse a client whose client_uri is on
		// another host than its client_id; say so now, not at sign-in.
		if u.attr == "client_uri" && !strings.EqualFold(pu.Hostname(), host) {
			b.errorf(u.rng, "client_uri on another host", "client_uri must be on this host (%s), as authorization servers require; write client_uri = \"https://%s/\" or leave it out.", host, host)
		}
	}
}
