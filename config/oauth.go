package config

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/internal/endpoint"
)

// The oauth "<name>" blocks of a host: sign-in providers other than AT
// Protocol (Google, GitHub, any OpenID Connect issuer), and the
// require_oauth "<name>" blocks that admit their accounts by email.

// providerName is an oauth block's label: it becomes the path /@<name>/,
// a header value and a part of session keys, so it is kept plain.
var providerName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// reservedProvider is the name of ioproxy's own AT Protocol sign-in.
const reservedProvider = "atproto"

// ioproxySetsParameter says, for each parameter of the authorization
// request that ioproxy sets itself, why an authorize_parameter may not.
var ioproxySetsParameter = map[string]string{
	"response_type":         "ioproxy asks for an authorization code (response_type = code) on every sign-in",
	"client_id":             "ioproxy sends the block's client_id",
	"redirect_uri":          "ioproxy sends its own callback, under /@<provider>/ on the host",
	"scope":                 "write the scopes in scopes = [...] instead",
	"state":                 "ioproxy makes a fresh state for every sign-in, which ties the callback to the browser that started it",
	"nonce":                 "ioproxy makes a fresh nonce for every sign-in, which ties the ID token to it",
	"code_challenge":        "ioproxy makes a fresh PKCE challenge for every sign-in",
	"code_challenge_method": "ioproxy uses PKCE with S256 on every sign-in",
	"response_mode":         "ioproxy reads the code from the callback's query, the default",
	"request":               "it would replace the request that ioproxy builds",
	"request_uri":           "it would replace the request that ioproxy builds",
}

// publicEmailDomains are domains of email services where anyone can get
// an address: a rule for all of them admits strangers.
var publicEmailDomains = []string{
	"aol.com", "fastmail.com", "gmail.com", "gmx.com", "gmx.net", "googlemail.com", "hotmail.com", "icloud.com",
	"live.com", "mac.com", "mail.com", "me.com", "msn.com", "outlook.com", "proton.me", "protonmail.com",
	"yahoo.com", "yandex.com", "zoho.com",
}

// oauthProviders builds a host's oauth blocks, refusing a second block of
// a name the host already has (another host may use the same name).
func (b *builder) oauthProviders(raw *hostSchema, host string) []built[OAuthProvider, oauthSchema] {
	dup := duplicate{"Duplicate oauth provider", "oauth %q is already defined in this host at %s. Each provider appears once in a host; merge the two blocks."}
	if len(raw.OAuth) > MaxOAuthProviders {
		b.errorf(raw.OAuth[MaxOAuthProviders].DefRange, "Too many providers", "A host may offer at most %d oauth providers (a browser's Proxy-Session holds one key per provider, beside AT Protocol's); remove some from host %q.", MaxOAuthProviders, host)
	}
	return uniqueBlocks(b, raw.OAuth, dup, func(ro *oauthSchema) (OAuthProvider, string, hcl.Range) {
		p := b.oauthProvider(ro, host)
		return p, p.Name, ro.NameRange
	})
}

// MaxOAuthProviders bounds a host's oauth blocks: with AT Protocol's key,
// a Proxy-Session lists at most sessions.MaxProxyKeys (8).
const MaxOAuthProviders = 7

// oauthProvider builds one oauth block: the client, the provider's
// endpoints, the scopes and the extra parameters of the authorization
// request.
func (b *builder) oauthProvider(raw *oauthSchema, host string) OAuthProvider {
	p := OAuthProvider{Name: raw.Name}
	switch lower := strings.ToLower(raw.Name); {
	case lower == reservedProvider:
		b.errorf(raw.NameRange, "Reserved provider name", "%q is ioproxy's own AT Protocol sign-in, set up by the atproto block; give this provider another name, such as oauth \"google\" { … }.", raw.Name)
	case !providerName.MatchString(raw.Name) && providerName.MatchString(lower):
		b.errorf(raw.NameRange, "Invalid provider name", "Provider names are lower case; write oauth %q { … }.", lower)
	case !providerName.MatchString(raw.Name):
		b.errorf(raw.NameRange, "Invalid provider name", "%q cannot name a provider; write at most 32 lower-case letters, digits and dashes that start with a letter, as in oauth \"google\" { … } (sign-in then lives under /@google/).", raw.Name)
	}
	envPrefix := envName(raw.Name)
	p.ClientID = b.clientSetting(raw.ClientID, raw, "client_id", envPrefix+"_CLIENT_ID", false)
	p.ClientSecret = b.clientSetting(raw.ClientSecret, raw, "client_secret", envPrefix+"_CLIENT_SECRET", true)
	b.providerEndpoints(raw, &p)
	p.Scopes = b.oauthScopes(raw)
	p.AuthorizeParams = b.authorizeParams(raw, host)
	switch {
	case p.OpenID() && p.Issuer == "" && p.TokenURL != "" && p.AuthorizeURL != "":
		// ID tokens are checked with the keys the issuer's discovery
		// document names. IO's configurations name the two URLs; the
		// authorize_url's origin is the issuer of most providers
		// (Google's is https://accounts.google.com), whose discovery then
		// gives the endpoints too.
		if u, err := url.Parse(p.AuthorizeURL); err == nil && u.Host != "" {
			p.Issuer = u.Scheme + "://" + u.Host
			b.warnf(b.scopesRange(raw), "OpenID Connect without issuer", "scopes has \"openid\", so ioproxy checks each sign-in's ID token with the keys its issuer publishes. It takes the issuer to be %s (the authorize_url's origin): its discovery document (%s/.well-known/openid-configuration) gives the keys, and ID tokens must name it; authorize_url and access_token_url stay as written. Write issuer = %q in place of the two URLs to say so, or the provider's own issuer when it differs (sign-ins fail until it is right).", p.Issuer, p.Issuer, p.Issuer)
		}
	case !p.OpenID() && p.Issuer == "" && p.UserinfoURL == "" && p.TokenURL != "":
		b.warnf(b.scopesRange(raw), "No identity from the provider", "Without \"openid\" in scopes or a userinfo_url, %q says nothing of who signed in: ioproxy can give the backend no email or account id, and require_oauth can admit no one. Name the provider's userinfo endpoint, as in userinfo_url = \"https://api.github.com/user\".", p.Name)
	}
	return p
}

// clientSetting reads client_id or client_secret: required, a string, and
// for the secret better read from the environment than written out.
func (b *builder) clientSetting(expr hcl.Expression, raw *oauthSchema, attr, envVar string, secret bool) string {
	s, written := b.stringExpr(expr, attr, envVar)
	if !written {
		if !b.present(expr) {
			what := "the client id that the provider gave this app"
			if secret {
				what = "the client secret that the provider gave this app (ioproxy is a confidential client)"
			}
			b.errorf(raw.DefRange, "Missing "+attr, "oauth %q needs %s: write %s = env(%q).", raw.Name, what, attr, envVar)
		}
		return ""
	}
	b.checkSecretValue(expr, attr, s, envVar, secret, "sign-in with "+strconv.Quote(raw.Name)+" fails until it is")
	return s
}

// checkSecretValue reports an empty value, and a secret written out in
// the file. It never quotes the value.
func (b *builder) checkSecretValue(expr hcl.Expression, attr, value, envVar string, secret bool, consequence string) {
	rng := expr.Range()
	switch {
	case value == "" && literalExpr(expr):
		b.errorf(rng, "Empty "+attr, "%s is empty; write %s = env(%q) and set that variable where ioproxy runs.", attr, attr, envVar)
	case value == "":
		why := " (an env() that is not set?)"
		if name := envArg(expr); name != "" {
			why = ", since " + name + " is not set (or is empty)"
		}
		b.warnf(rng, "Empty "+attr, "%s is empty%s: %s set where ioproxy runs.", attr, why, consequence)
	case secret && secretInFile(expr):
		where := "is written out in the file"
		if !literalExpr(expr) {
			where = "has a default in env(), written out in the file"
		}
		b.warnf(rng, "Secret in the configuration file", "%s %s, so anyone who reads the file (or its history in version control) can use it; write %s = env(%q) and set that variable where ioproxy runs.", attr, where, attr, envVar)
	}
}

// providerEndpoints reads where the provider is: an issuer (OpenID
// Connect discovery), or the authorization and token endpoints both.
func (b *builder) providerEndpoints(raw *oauthSchema, p *OAuthProvider) {
	const (
		exIssuer    = "https://accounts.google.com"
		exAuthorize = "https://accounts.google.com/o/oauth2/v2/auth"
		exToken     = "https://oauth2.googleapis.com/token"
		exUserinfo  = "https://openidconnect.googleapis.com/v1/userinfo"
	)
	if raw.UserinfoURL != nil {
		p.UserinfoURL = *raw.UserinfoURL
		b.providerURL(raw.UserinfoURLRange, "userinfo_url", p.UserinfoURL, exUserinfo, false)
	}
	switch {
	case raw.Issuer != nil:
		p.Issuer = *raw.Issuer
		b.providerURL(raw.IssuerRange, "issuer", p.Issuer, exIssuer, true)
		for _, u := range []struct {
			attr string
			set  *string
			rng  hcl.Range
		}{{"authorize_url", raw.AuthorizeURL, raw.AuthorizeURLRange}, {"access_token_url", raw.AccessTokenURL, raw.AccessTokenURLRange}} {
			if u.set != nil {
				b.errorf(u.rng, "Both issuer and "+u.attr, "issuer finds the provider's endpoints through OpenID Connect discovery, and %s names one itself: write one or the other (issuer alone, or authorize_url and access_token_url without issuer).", u.attr)
			}
		}
	case raw.AuthorizeURL != nil && raw.AccessTokenURL != nil:
		p.AuthorizeURL, p.TokenURL = *raw.AuthorizeURL, *raw.AccessTokenURL
		b.providerURL(raw.AuthorizeURLRange, "authorize_url", p.AuthorizeURL, exAuthorize, false)
		b.providerURL(raw.AccessTokenURLRange, "access_token_url", p.TokenURL, exToken, false)
	case raw.AuthorizeURL != nil:
		b.errorf(raw.AuthorizeURLRange, "Missing access_token_url", "authorize_url is where the browser signs in, and ioproxy then trades the code for tokens at the token endpoint: write access_token_url too, such as access_token_url = %q (or replace both with issuer = %q, for OpenID Connect discovery).", exToken, exIssuer)
	case raw.AccessTokenURL != nil:
		b.errorf(raw.AccessTokenURLRange, "Missing authorize_url", "access_token_url is where ioproxy trades a code for tokens, and the browser signs in at the authorization endpoint first: write authorize_url too, such as authorize_url = %q (or replace both with issuer = %q, for OpenID Connect discovery).", exAuthorize, exIssuer)
	default:
		b.errorf(raw.DefRange, "Missing provider endpoints", "oauth %q needs to know where the provider is. Write issuer = %q for an OpenID Connect provider (discovery finds the endpoints), or authorize_url and access_token_url both, as in authorize_url = %q and access_token_url = %q.", raw.Name, exIssuer, exAuthorize, exToken)
	}
}

// providerURL requires an https:// URL with a host and no fragment, or
// http:// on a loopback host (endpoint.Check, which provider applies to
// what discovery answers too); an issuer has no query either. It is kept
// as written: OpenID Connect compares an ID token's iss with the issuer
// exactly.
func (b *builder) providerURL(rng hcl.Range, attr, s, example string, issuer bool) {
	u, problem := endpoint.Check(s)
	shown := s
	if u != nil && u.User != nil {
		shown = u.Redacted()
	}
	if s != strings.TrimSpace(s) {
		problem = endpoint.NotURL
	}
	switch {
	case problem == endpoint.NotURL:
		b.errorf(rng, "Invalid "+attr, "%q is not an https:// URL; write, for example, %s = %q.", shown, attr, example)
	case problem == endpoint.UserInfo:
		b.errorf(rng, "Invalid "+attr, "%q carries user info (user:password@); write the URL without it (the client secret goes in client_secret).", shown)
	case problem == endpoint.Fragment:
		b.errorf(rng, "Invalid "+attr, "%q has a fragment (#…), which is never sent to the server; remove it.", s)
	case problem == endpoint.PlainHTTP:
		b.errorf(rng, "Insecure "+attr, "%q uses http://, which would carry sign-ins' codes and tokens in the clear; write https://. (http:// is allowed on a loopback host only, such as http://localhost:8080 or http://127.0.0.1:8080, for development and tests.)", s)
	case issuer && (u.RawQuery != "" || u.ForceQuery):
		b.errorf(rng, "Invalid "+attr, "%q has a query; an issuer is a scheme, a host and an optional path, written exactly as the provider's discovery document gives it, as in issuer = %q.", s, example)
	}
}

// oauthScopes reads a provider's scopes: scope tokens (RFC 6749 §3.3),
// each once; the default is an OpenID Connect sign-in with email and
// name.
func (b *builder) oauthScopes(raw *oauthSchema) []string {
	if !b.written(raw.Scopes) {
		if !b.present(raw.Scopes) {
			return []string{"openid", "email", "profile"}
		}
		b.errorf(raw.Scopes.Range(), "Invalid scopes", "scopes is a list of strings, as in scopes = [\"openid\", \"email\"].")
		return nil
	}
	items := b.stringList(raw.Scopes, "scopes")
	var scopes []string
	seen := map[string]hcl.Range{}
	for _, it := range items {
		s := it.value
		switch {
		case s == "":
			b.errorf(it.rng, "Empty scope", "A scope is a word such as \"email\"; remove the empty string.")
			continue
		case strings.ContainsAny(s, " \t\r\n"):
			b.errorf(it.rng, "Invalid scope", "%q is several scopes; write each as a string of its own: %s.", s, quoteList(strings.Fields(s)))
			continue
		case !scopeToken(s):
			b.errorf(it.rng, "Invalid scope", "%q is not a scope: a scope is printable ASCII without spaces, quotes or backslashes, as in \"email\" or \"https://www.googleapis.com/auth/calendar.readonly\".", s)
			continue
		}
		if prev, dup := seen[s]; dup {
			b.errorf(it.rng, "Repeated scope", "%q is already in scopes at %s; write it once.", s, at(prev))
			continue
		}
		seen[s] = it.rng
		scopes = append(scopes, s)
	}
	if len(items) == 0 {
		b.errorf(raw.Scopes.Range(), "No scopes", "scopes is empty; name what the app needs, as in scopes = [\"openid\", \"email\", \"profile\"], or leave scopes out for that default.")
	}
	return scopes
}

// scopeToken reports whether s is an RFC 6749 scope-token: %x21 / %x23-5B
// / %x5D-7E.
func scopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// scopesRange is where a provider's scopes are, or its block when it
// names none.
func (b *builder) scopesRange(raw *oauthSchema) hcl.Range {
	if b.present(raw.Scopes) {
		return raw.Scopes.Range()
	}
	return raw.DefRange
}

// authorizeParams reads the authorize_parameter blocks: parameters that a
// provider needs beyond the standard ones (Google's access_type =
// "offline"), never one that ioproxy sets itself, each once.
func (b *builder) authorizeParams(raw *oauthSchema, host string) url.Values {
	if len(raw.Parameters) == 0 {
		return nil
	}
	// HCL allows one argument in a one-line block: the example spans lines.
	const example = "authorize_parameter {\n      name  = \"access_type\"\n      value = \"offline\"\n    }"
	params := url.Values{}
	seen := map[string]hcl.Range{}
	for _, rp := range raw.Parameters {
		switch {
		case rp.Name == nil || rp.Value == nil:
			missing := "name"
			if rp.Name != nil {
				missing = "value"
			}
			b.errorf(rp.DefRange, "Missing "+missing, "authorize_parameter needs a name and a value, as in %s.", example)
			continue
		case *rp.Name == "" || strings.ContainsFunc(*rp.Name, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
			b.errorf(rp.NameRange, "Invalid parameter name", "%q is not a parameter name; write the name the provider documents, as in %s.", *rp.Name, example)
			continue
		case *rp.Value == "":
			b.errorf(rp.ValueRange, "Empty value", "authorize_parameter %q has an empty value; write the value the provider documents, or remove the block.", *rp.Name)
			continue
		}
		name := *rp.Name
		if why, ok := ioproxySetsParameter[strings.ToLower(name)]; ok {
			why = strings.ReplaceAll(why, "/@<provider>/", "https://"+host+"/@"+raw.Name+"/")
			b.errorf(rp.NameRange, "Parameter set by ioproxy", "ioproxy sets %s itself (%s); remove this authorize_parameter.", strings.ToLower(name), why)
			continue
		}
		if prev, dup := seen[name]; dup {
			b.errorf(rp.NameRange, "Repeated authorize_parameter", "%q is already set at %s, and authorization servers refuse a parameter sent twice; write it once.", name, at(prev))
			continue
		}
		seen[name] = rp.NameRange
		params.Add(name, *rp.Value)
	}
	return params
}

// oauthRules builds a host's require_oauth blocks by provider name: nil
// when there are none.
func (b *builder) oauthRules(g guarded) map[string]*access.EmailRules {
	dup := duplicate{"Duplicate require_oauth", "require_oauth %q is already defined at %s; merge the two blocks."}
	blocks := uniqueBlocks(b, g.requireOAuth, dup, func(r *requireOAuthSchema) (*access.EmailRules, string, hcl.Range) {
		return b.emailRules(r, g), r.Provider, r.ProviderRange
	})
	if len(blocks) == 0 {
		return nil
	}
	out := make(map[string]*access.EmailRules, len(blocks))
	for _, bl := range blocks {
		out[bl.raw.Provider] = bl.value
	}
	return out
}

// emailRules builds one require_oauth block: which accounts of a provider
// of the host get in, by verified email.
func (b *builder) emailRules(r *requireOAuthSchema, g guarded) *access.EmailRules {
	p := g.provider(r.Provider)
	if p == nil {
		names := make([]string, len(g.providers))
		for i, bp := range g.providers {
			names[i] = bp.value.Name
		}
		switch {
		case len(names) == 0:
			b.errorf(r.ProviderRange, "Unknown provider", "require_oauth %q admits accounts of a provider that signs users in on this host, and host %q has no oauth block: add oauth %q { client_id = …, client_secret = …, issuer = … } beside it.", r.Provider, g.name, r.Provider)
		default:
			b.errorf(r.ProviderRange, "Unknown provider", "Host %q has no oauth %q; its providers are %s. Write require_oauth with one of them, or add oauth %q { … } to this host.", g.name, r.Provider, quoteList(names), r.Provider)
		}
	}
	rules := &access.EmailRules{}
	listsWritten := b.written(r.Emails) || b.written(r.Domains)
	bad := 0
	seen := map[string]hcl.Range{}
	for _, item := range b.stringList(r.Emails, "emails") {
		e, err := access.ParseEmail(item.value)
		if err != nil {
			bad++
			b.errorf(item.rng, "Invalid email", "%v.", err)
			continue
		}
		if prev, dup := seen[e]; dup {
			bad++
			b.errorf(item.rng, "Repeated email", "%q is already in emails at %s; write it once.", e, at(prev))
			continue
		}
		seen[e] = item.rng
		rules.Emails = append(rules.Emails, e)
	}
	for _, item := range b.stringList(r.Domains, "domains") {
		d, err := access.ParseEmailDomain(item.value)
		if err != nil {
			bad++
			b.errorf(item.rng, "Invalid email domain", "%v.", err)
			continue
		}
		if prev, dup := seen[d]; dup {
			bad++
			b.errorf(item.rng, "Repeated domain", "%q is already in domains at %s; write it once.", d, at(prev))
			continue
		}
		seen[d] = item.rng
		if slices.Contains(publicEmailDomains, d) {
			b.warnf(item.rng, "Domain of a public email service", "%q admits everyone with an address @%s, which anyone can get. Name the addresses instead, as in emails = [\"alice@%s\"].", item.value, d, d)
		}
		rules.Domains = append(rules.Domains, d)
	}
	if listsWritten && rules.OpenToAnyEmail() && bad == 0 {
		b.warnf(r.DefRange, "No emails named", "emails and domains are empty, so anyone with a verified email who signs in with %q gets in. Name the addresses or domains, or remove the empty lists to say that any account is meant.", r.Provider)
	}
	if p != nil && !slices.Contains(p.value.Scopes, "email") && p.value.UserinfoURL == "" {
		admits := "any account with a verified email"
		if !rules.OpenToAnyEmail() || bad > 0 {
			admits = "the emails and domains it names"
		}
		b.warnf(b.scopesRange(p.raw), "No email scope", "emails cannot be checked without the email scope: require_oauth %q (%s) admits %s, but %q is not asked for the account's email, so no one gets in. Add \"email\" to scopes, or name a userinfo_url that gives the email.", r.Provider, at(r.DefRange), admits, r.Provider)
	}
	return rules
}

// stringExpr evaluates a string attribute kept as an expression. written
// is false when the file leaves it out, and when its value is refused
// (with an error); envVar is for that error.
func (b *builder) stringExpr(expr hcl.Expression, attr, envVar string) (s string, written bool) {
	if !b.present(expr) {
		return "", false
	}
	v, diags := expr.Value(evalContext(b.opts))
	b.diags = append(b.diags, diags...)
	if diags.HasErrors() {
		return "", false
	}
	if !v.IsNull() && v.IsKnown() {
		if sv, err := convert.Convert(v, cty.String); err == nil {
			return sv.AsString(), true
		}
	}
	b.errorf(expr.Range(), "Invalid "+attr, "%s is a string, as in %s = env(%q).", attr, attr, envVar)
	return "", false
}

// present reports whether an attribute kept as an expression is in the
// file (gohcl gives one left out as a null expression of its own kind).
func (b *builder) present(expr hcl.Expression) bool {
	_, ok := expr.(hclsyntax.Expression)
	return ok
}

// literalExpr reports whether an expression is written out in the file:
// it calls no function and reads no variable.
func literalExpr(expr hcl.Expression) bool {
	syn, ok := expr.(hclsyntax.Expression)
	if !ok {
		return false
	}
	literal := true
	_ = hclsyntax.VisitAll(syn, func(n hclsyntax.Node) hcl.Diagnostics {
		switch n.(type) {
		case *hclsyntax.FunctionCallExpr, *hclsyntax.ScopeTraversalExpr, *hclsyntax.RelativeTraversalExpr:
			literal = false
		}
		return nil
	})
	return literal
}

// secretInFile reports whether an expression's value is written out in
// the file: the expression is a literal, or it gives env() a default that
// is not empty.
func secretInFile(expr hcl.Expression) bool {
	if literalExpr(expr) {
		return true
	}
	syn, ok := expr.(hclsyntax.Expression)
	if !ok {
		return false
	}
	found := false
	_ = hclsyntax.VisitAll(syn, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "env" && len(call.Args) == 2 && constant(call.Args[1]) != "" {
			found = true
		}
		return nil
	})
	return found
}

// envArg returns the variable an expression env("NAME", …) reads, or ""
// for any other expression.
func envArg(expr hcl.Expression) string {
	if call, ok := expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "env" && len(call.Args) > 0 {
		return constant(call.Args[0])
	}
	return ""
}

// constant is the string a literal expression gives, "" for any other.
func constant(expr hclsyntax.Expression) string {
	if !literalExpr(expr) {
		return ""
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// envName makes an environment variable's prefix of a block's label:
// "google" gives GOOGLE, "my-idp" MY_IDP.
func envName(label string) string {
	var out []byte
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case 'a' <= c && c <= 'z':
			out = append(out, c-'a'+'A')
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			out = append(out, c)
		case len(out) > 0 && out[len(out)-1] != '_':
			out = append(out, '_')
		}
	}
	name := strings.Trim(string(out), "_")
	if name == "" || ('0' <= name[0] && name[0] <= '9') {
		name = "IOPROXY_" + name
	}
	return strings.TrimSuffix(name, "_")
}
