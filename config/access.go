package config

import (
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/ioproxy/ioproxy/access"
)

// A handle_max_age over this admits a handle that moved to another account
// for that long after its checks started failing.
const longHandleMaxAge = 24 * time.Hour

// guarded is what access reads of a block that holds access rules: a
// host, or a serve block.
type guarded struct {
	// name is the host name, or the serve block's label, for messages.
	name    string
	require *requireATProtoSchema
	apiKeys *apikeyAuthSchema
	// forwardAuth is set for a host without a backend, whose proxy in
	// front asks /@/auth; a serve block always has a backend.
	forwardAuth bool
	// signIn is set when the block has an atproto block of its own,
	// atproto.
	signIn  bool
	atproto *atprotoSchema
	// requireOAuth are the require_oauth blocks, which name providers of
	// the host's oauth blocks, providers (none for a serve block).
	requireOAuth []requireOAuthSchema
	providers    []built[OAuthProvider, oauthSchema]
	defRange     hcl.Range
}

// hostGuard is what access reads of a host block, whose oauth blocks are
// built already.
func hostGuard(raw *hostSchema, providers []built[OAuthProvider, oauthSchema]) guarded {
	return guarded{
		name:         raw.Hostname,
		require:      raw.RequireATProto,
		apiKeys:      raw.APIKeyAuth,
		forwardAuth:  raw.Backend == nil,
		signIn:       raw.ATProto != nil,
		atproto:      raw.ATProto,
		requireOAuth: raw.RequireOAuth,
		providers:    providers,
		defRange:     raw.DefRange,
	}
}

// provider returns the oauth block of a name, nil if there is none.
func (g guarded) provider(name string) *built[OAuthProvider, oauthSchema] {
	for i := range g.providers {
		if g.providers[i].value.Name == name {
			return &g.providers[i]
		}
	}
	return nil
}

// serveGuard is what access reads of a serve block.
func serveGuard(raw *serveSchema) guarded {
	return guarded{
		name:     raw.Label,
		require:  raw.RequireATProto,
		apiKeys:  raw.APIKeyAuth,
		defRange: raw.DefRange,
	}
}

// access builds the require_atproto, apikey_auth and require_oauth
// blocks of a host or a serve block, which add up to one Access.
func (b *builder) access(g guarded) *Access {
	if g.forwardAuth && b.trustedProxies == 0 {
		b.warnf(g.defRange, "Forward-auth without trusted proxies", "Host %q has no backend, so a proxy in front asks ioproxy about each request, but ingress { trusted_proxies } is empty: that proxy's X-Forwarded-For is not believed, so every visitor counts as the proxy for the wrong-key limit, and no Proxy-Session is given back. List the proxy's address in trusted_proxies.", g.name)
	}
	if g.require == nil && g.apiKeys == nil && len(g.requireOAuth) == 0 {
		return nil
	}
	a := &Access{}
	if g.require != nil {
		a.Rules = b.rules(g.require, g)
	}
	if k := g.apiKeys; k != nil {
		a.APIKeys = b.apiKeys(k)
	}
	a.OAuth = b.oauthRules(g)
	if g.require == nil && g.signIn {
		// The other rules admit no AT Protocol account; a sign-in that
		// then admits no one would be a puzzle, so ask which was meant.
		switch {
		case len(g.requireOAuth) > 0:
			others := "accounts of the providers that require_oauth names"
			if g.apiKeys != nil {
				others += " and API keys"
			}
			b.errorf(g.atproto.DefRange, "Sign-in admits no one", "Without require_atproto, only %s get in, so this atproto block's sign-in would lead nowhere. To let AT Protocol accounts in too, add require_atproto {} (with dids or handles to name them); otherwise remove the atproto block.", others)
		case g.apiKeys != nil:
			b.errorf(g.apiKeys.DefRange, "Sign-in admits no one", "With apikey_auth alone, only API keys get in, so the atproto block's sign-in would lead nowhere. To let signed-in accounts in too, add require_atproto {} (with dids or handles to name them); otherwise remove the atproto block.")
		}
	}
	return a
}

// rules builds a require_atproto block: which accounts get in, and which
// paths are open to all.
func (b *builder) rules(r *requireATProtoSchema, g guarded) *access.Rules {
	rules := &access.Rules{}
	// Lists written but empty (often an env() that was not set) admit
	// every account, which is seldom what was meant.
	listsWritten := b.written(r.DIDs) || b.written(r.Handles)
	for _, item := range b.stringList(r.DIDs, "dids") {
		d, err := access.ParseDID(item.value)
		if err != nil {
			b.errorf(item.rng, "Invalid DID", "%v.", err)
			continue
		}
		rules.DIDs = append(rules.DIDs, d)
	}
	for _, item := range b.stringList(r.Handles, "handles") {
		h, domain, err := access.ParseHandlePattern(item.value)
		if err != nil {
			b.errorf(item.rng, "Invalid handle", "%v.", err)
			continue
		}
		if domain != "" {
			if publicHandleDomain(strings.TrimPrefix(domain, ".")) {
				b.warnf(item.rng, "Handle domain of a public server", "%q admits every account whose handle is under %s, which anyone can create. Name the accounts instead (by DID, or by handle).", item.value, strings.TrimPrefix(domain, "."))
			}
			rules.Domains = append(rules.Domains, domain)
		} else {
			rules.Handles = append(rules.Handles, h)
		}
	}
	for _, item := range b.stringList(r.PublicPaths, "public_paths") {
		p, err := access.ParsePathPattern(item.value)
		if err != nil {
			b.errorf(item.rng, "Invalid public path", "%v.", err)
			continue
		}
		if p.Prefix && !strings.HasSuffix(p.Path, "/") {
			b.warnf(item.rng, "Prefix without a slash", "%q also makes public %q and the like; if a folder was meant, write %q.", item.value, p.Path+"-admin", p.Path+"/*")
		}
		if g.forwardAuth {
			b.warnf(item.rng, "Public paths do nothing here", "Host %q has no backend: the proxy in front asks /@/auth, which ignores public paths. Make these paths public in that proxy (in nginx: auth_request off; in their location).", g.name)
		}
		rules.Public = append(rules.Public, p)
	}
	if r.HandleMaxAge != nil {
		rules.HandleMaxAge = b.duration(r.HandleMaxAgeRange, "handle_max_age", *r.HandleMaxAge, time.Minute, "2h")
		if rules.HandleMaxAge > longHandleMaxAge {
			b.warnf(r.HandleMaxAgeRange, "Long handle_max_age", "A handle that moved to another account would still be admitted for up to %s after its checks started failing. Keep it to a few hours, such as handle_max_age = \"2h\" (the default).", shortDuration(rules.HandleMaxAge))
		}
	}
	if listsWritten && rules.OpenToAnyAccount() && !b.diags.HasErrors() {
		b.warnf(r.DefRange, "No accounts named", "dids and handles are empty, so any account that signs in gets in. Name the accounts, or remove the empty lists to say that any account is meant.")
	}
	return rules
}

// apiKeys reads the users attribute: htpasswd lines in one string (blank
// lines and # comments skipped), or a list with one entry per element.
func (b *builder) apiKeys(raw *apikeyAuthSchema) []access.KeyEntry {
	var lines []listItem
	v, diags := raw.Users.Value(evalContext(b.opts))
	b.diags = append(b.diags, diags...)
	if diags.HasErrors() {
		return nil
	}
	if !v.IsNull() && v.Type() == cty.String {
		lines = splitLines(v.AsString(), raw.Users)
	} else {
		lines = b.stringList(raw.Users, "users")
	}
	var entries []access.KeyEntry
	seen := map[string]hcl.Range{}
	bad := 0
	for _, l := range lines {
		e, err := access.ParseKeyEntry(l.value)
		if err != nil {
			bad++
			b.errorf(l.rng, "Invalid API key entry", "%v.", err)
			continue
		}
		if prev, dup := seen[e.Name]; dup {
			b.errorf(l.rng, "Duplicate API key name", "%q already has an entry at %s; names are passed to the backend, so each may appear once. Rename or remove one.", e.Name, at(prev))
			continue
		}
		seen[e.Name] = l.rng
		if c := e.Cost(); e.Kind == access.HashBcrypt && c < 10 {
			b.warnf(l.rng, "Cheap bcrypt hash", "The hash of %q has cost %d: a leaked file is cheap to brute-force. Make it again with `htpasswd -nbB -C 10 %s <key>` (ioproxy checks a good key once, then remembers it, so a high cost costs little).", e.Name, c, e.Name)
		}
		if e.Kind == access.HashSHA1 {
			b.warnf(l.rng, "Weak API key hash", "The {SHA} hash of %q is a single unsalted SHA-1: anyone who reads this file can recover a short key. Replace it with a bcrypt hash from `htpasswd -nbB %s <key>`.", e.Name, e.Name)
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 && bad == 0 {
		b.errorf(raw.DefRange, "No API keys", "apikey_auth lists no users; write users = \"name:<bcrypt hash>\" (from `htpasswd -nbB name key`), or remove the block.")
	}
	return entries
}

type listItem struct {
	value string
	rng   hcl.Range
}

// stringList evaluates a list-of-strings attribute, keeping each
// element's range when the list is written out in the file.
func (b *builder) stringList(expr hcl.Expression, attr string) []listItem {
	if expr == nil {
		return nil
	}
	ctx := evalContext(b.opts)
	v, diags := expr.Value(ctx)
	b.diags = append(b.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil
	}
	if !v.Type().IsListType() && !v.Type().IsTupleType() || !v.IsWhollyKnown() {
		b.errorf(expr.Range(), "Invalid "+attr, "%s is a list of strings, as in %s = [\"…\", \"…\"].", attr, attr)
		return nil
	}
	elems, listDiags := hcl.ExprList(expr)
	var items []listItem
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		rng := expr.Range()
		if !listDiags.HasErrors() && i < len(elems) {
			rng = elems[i].Range()
		}
		if ev.IsNull() || ev.Type() != cty.String {
			b.errorf(rng, "Invalid "+attr, "Each element of %s is a string in quotes.", attr)
			continue
		}
		items = append(items, listItem{value: strings.TrimSpace(ev.AsString()), rng: rng})
	}
	return items
}

// splitLines splits an htpasswd-style string into entries. A heredoc's
// lines get their own line numbers; a one-line string shares its range.
func splitLines(s string, expr hcl.Expression) []listItem {
	rng := expr.Range()
	heredoc := rng.Start.Line != rng.End.Line
	var items []listItem
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := rng
		if heredoc {
			r.Start.Line = rng.Start.Line + 1 + i
			r.Start.Column = 1
			r.End = r.Start
		}
		items = append(items, listItem{value: line, rng: r})
	}
	return items
}

// publicHandleDomain reports whether anyone can get a handle under the
// domain: a rule for all of them admits strangers.
func publicHandleDomain(d string) bool {
	switch d {
	case "bsky.social", "bsky.app", "bsky.network":
		return true
	}
	return false
}

// written reports whether an optional attribute was written at all
// (gohcl gives an absent one as a null expression).
func (b *builder) written(expr hcl.Expression) bool {
	if expr == nil {
		return false
	}
	v, diags := expr.Value(evalContext(b.opts))
	return !diags.HasErrors() && !v.IsNull()
}
