package config

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpx"
)

// sessionCredential starts a call's credential that is the signed-in
// user's access token of a provider: "session:google".
const sessionCredential = "session:"

// ioproxyHeaders are the headers of a call that ioproxy sets, strips or
// needs as they are, besides the contract's (contract.IsIdentity) and the
// hop-by-hop ones (httpx.IsHopByHop), each canonical: a credential cannot
// go in one of them. Transfer-Encoding, hop-by-hop too, is here for its
// own reason.
var ioproxyHeaders = map[string]string{
	"Host":              "names the endpoint",
	"Cookie":            "is stripped from calls: it would carry the browser's ioproxy session",
	"Transfer-Encoding": "frames the body, which ioproxy sets itself",
	"Content-Length":    "frames the body, which ioproxy sets itself",
}

// callAuth builds a call's auth block: where the credential goes, and
// whether it is the user's token of a provider or a fixed one.
func (b *builder) callAuth(raw *callSchema, c Call) *CallAuth {
	ra := raw.Auth
	if ra == nil {
		return nil
	}
	if c.Endpoint.Kind == EndpointHost {
		b.errorf(ra.DefRange, "auth on a call to an ingress host", "Call %q is served by ioproxy's own host %q, which decides who passes with its own rules; an auth block would not reach it. Remove it, or give the call the backend's address as endpoint.", c.Label, c.Endpoint.Host)
		return nil
	}
	if c.Endpoint.Kind == EndpointPDS {
		b.errorf(ra.DefRange, "auth on a call to the PDS", "Call %q sends requests to the signed-in user's PDS, which the AT Protocol session's DPoP-bound token authorizes; an auth block cannot add another credential. Remove it, or give the call another endpoint.", c.Label)
		return nil
	}
	a := &CallAuth{Location: CallAuthHeader}
	if ra.Location != nil {
		switch l := *ra.Location; {
		case l == CallAuthHeader || l == CallAuthQuery:
			a.Location = l
		case strings.EqualFold(l, CallAuthHeader) || strings.EqualFold(l, CallAuthQuery):
			b.errorf(ra.LocationRange, "Invalid location", "Locations are lower case; write location = %q.", strings.ToLower(l))
		default:
			b.errorf(ra.LocationRange, "Invalid location", "%q is not where a credential goes; write location = \"header\" (the default) or location = \"query\" (a query parameter).", l)
		}
	}
	a.Name = b.callAuthName(ra, a.Location)
	b.callCredential(ra, c, a)
	return a
}

// callAuthName reads the header or query parameter the credential goes
// in; a header name comes back canonical.
func (b *builder) callAuthName(ra *callAuthSchema, location string) string {
	if ra.Name == nil {
		b.errorf(ra.DefRange, "Missing name", "auth needs the name of the header (or query parameter, with location = \"query\") that the credential goes in, as in name = \"authorization\".")
		return ""
	}
	name := *ra.Name
	if location == CallAuthQuery {
		if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") != "" {
			b.errorf(ra.NameRange, "Invalid query parameter", "%q is not a query parameter name; write letters, digits, \"-\", \".\", \"_\" and \"~\", such as name = \"key\".", name)
		}
		return name
	}
	if !httpguts.ValidHeaderFieldName(name) {
		b.errorf(ra.NameRange, "Invalid header name", "%q is not a header name; write one of letters, digits and dashes, such as name = \"authorization\" (or set location = \"query\" for a query parameter).", name)
		return name
	}
	canonical := http.CanonicalHeaderKey(name)
	why, owned := ioproxyHeaders[canonical]
	switch {
	case owned:
	case httpx.IsHopByHop(canonical):
		why, owned = "is a hop-by-hop header, which ioproxy does not pass on", true
	case contract.IsIdentity(name):
		why, owned = "is one of the headers through which ioproxy names the user, which it sets itself and strips from what others send", true
	}
	if owned {
		b.errorf(ra.NameRange, "Header set by ioproxy", "%s %s, so a credential cannot go in it; write another header, such as name = \"authorization\".", canonical, why)
	}
	return canonical
}

// callCredential reads the credential: "session:<provider>", the user's
// access token of a provider that some host defines, or a fixed value.
func (b *builder) callCredential(ra *callAuthSchema, c Call, a *CallAuth) {
	envVar := envName(c.Label) + "_CREDENTIAL"
	s, written := b.stringExpr(ra.Credential, "credential", envVar)
	if !written {
		if !b.present(ra.Credential) {
			b.errorf(ra.DefRange, "Missing credential", "auth needs a credential: credential = \"session:<provider>\" sends the signed-in user's access token of that provider (an oauth block of a host), and credential = env(%q) a fixed one.", envVar)
		}
		return
	}
	provider, session := strings.CutPrefix(s, sessionCredential)
	if !session {
		a.Static = s
		b.checkSecretValue(ra.Credential, "credential", s, envVar, true, "call "+strconv.Quote(c.Label)+" sends an empty credential until it is")
		if a.Location == CallAuthHeader && s != "" && !httpguts.ValidHeaderFieldValue(s) {
			// Never quoted: it is a secret.
			b.errorf(ra.Credential.Range(), "Invalid credential", "The credential holds a line break or another control character, which cannot go in a header; check the value (or the variable it comes from).")
		}
		return
	}
	a.Provider = provider
	names := b.providerNames()
	switch {
	case slices.Contains(names, provider):
	case provider == "":
		b.errorf(ra.Credential.Range(), "Unknown provider", "%q names no provider; write credential = \"session:<provider>\" with the name of an oauth block, as in credential = \"session:google\".", s)
	case len(names) == 0:
		b.errorf(ra.Credential.Range(), "Unknown provider", "credential = %q sends the signed-in user's access token of provider %q, and no host defines oauth %q: add oauth %q { … } to the host that users sign in on.", s, provider, provider, provider)
	default:
		b.errorf(ra.Credential.Range(), "Unknown provider", "No host defines oauth %q; the providers are %s. Write credential = \"session:<provider>\" with one of them.", provider, quoteList(names))
	}
}

// providerNames are the names of the hosts' oauth blocks, each once, in
// file order.
func (b *builder) providerNames() []string {
	var names []string
	for _, bh := range b.hosts {
		for _, p := range bh.value.OAuth {
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	return names
}
