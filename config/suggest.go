package config

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

// gohcl reports unknown names without suggestions; suggestNames adds
// "Did you mean …?" from the schema's own names, so a typo such as
// "backnd" points at the fix.
func suggestNames(diags hcl.Diagnostics) {
	for _, d := range diags {
		if ioName(d) {
			continue
		}
		if d.Summary != "Unsupported argument" && d.Summary != "Unsupported block type" {
			continue
		}
		m := quotedName.FindStringSubmatch(d.Detail)
		if m == nil {
			continue
		}
		names := schemaNames()
		if blocks := names[m[1]]; len(blocks) > 0 {
			// The name is right but the place is not.
			d.Detail += fmt.Sprintf(" %q belongs in %s.", m[1], strings.Join(blocks, " or "))
			continue
		}
		if strings.Contains(d.Detail, "Did you mean") {
			// hclsyntax suggested a name of the block itself already.
			continue
		}
		if s, ok := otherNames[m[1]]; ok {
			d.Detail += fmt.Sprintf(" Did you mean %q?", s)
		} else if s := nearest(m[1], names); s != "" {
			d.Detail += fmt.Sprintf(" Did you mean %q?", s)
		}
	}
}

var quotedName = regexp.MustCompile(`(?:named|of type) "([^"]+)"`)

// otherNames are what other tools (OAuth libraries, provider
// documentation, discovery documents) call a setting of ours, too far
// from our name for nearest to find it.
var otherNames = map[string]string{
	"token_url":              "access_token_url",
	"token_endpoint":         "access_token_url",
	"auth_url":               "authorize_url",
	"authorization_url":      "authorize_url",
	"authorization_endpoint": "authorize_url",
	"userinfo_endpoint":      "userinfo_url",
	"user_info_url":          "userinfo_url",
	"issuer_url":             "issuer",
	"discovery_url":          "issuer",
	"secret":                 "client_secret",
	"authorize_parameters":   "authorize_parameter",
	"allowed_emails":         "emails",
	"allowed_domains":        "domains",
}

// schemaNames maps every attribute and block name of the schema structs
// to the blocks it may appear in ("the top level" for the file itself).
func schemaNames() map[string][]string {
	names := map[string][]string{}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, in string)
	walk = func(t reflect.Type, in string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Tag.Get("suggest") == "-" {
				// Read only to refuse it there with a message of its own.
				continue
			}
			name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
			switch kind {
			case "", "attr", "optional":
				names[name] = append(names[name], in)
			case "block":
				names[name] = append(names[name], in)
				article := "a "
				if strings.ContainsAny(name[:1], "aeiou") {
					article = "an "
				}
				walk(f.Type, article+name+" block")
			}
		}
	}
	walk(reflect.TypeOf(fileSchema{}), "the top level")
	return names
}

// nearest returns the candidate within edit distance 2 of s, if any.
func nearest(s string, candidates map[string][]string) string {
	best, bestDist := "", 3
	// In order, so that ties always suggest the same name.
	for _, c := range slices.Sorted(maps.Keys(candidates)) {
		if d := levenshtein.Distance(s, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// ioSpellings are the names IO's configurations use (renamed in 2026) and
// what to write in ioproxy instead. ioproxy does not take them as aliases:
// their blocks differ in more than the name, and one that half worked
// would be worse than a clear error.
var ioSpellings = map[string]string{
	"calling":      `IO's calling "<name>" { target = … } is ioproxy's call "<name>" { endpoint = … }: write call in place of calling, and endpoint in place of target (a host:port, a URL, "@" for the user's PDS, or an ingress host's name).`,
	"target":       `IO's target is ioproxy's endpoint: write endpoint = … (a host:port, a URL, "@" for the user's PDS, or an ingress host's name).`,
	"oauth_client": `ioproxy makes each host's OAuth client from the host's own atproto block: write atproto { name = …, scopes = [...] } inside the host block, and remove oauth_client. (Another provider, such as Google, is an oauth "<name>" { client_id = …, client_secret = …, issuer = … } block in the host block.)`,
	"apply_header": `ioproxy sets the headers a backend trusts itself (User-Did, User-Handle, User-Scope, Proxy-Session, Apikey-User, X-Forwarded-*) and has no block to set others: remove apply_header, and set fixed headers in the backend.`,
}

// ioName rewrites the diagnostic of a name from IO's configurations, and
// of IO's labelled ingress "<host>" block, to say what to write instead.
func ioName(d *hcl.Diagnostic) bool {
	if d.Summary == "Extraneous label for ingress" {
		d.Detail = `IO's ingress "<host>" { … } is ioproxy's host "<host>" { … }: write host in place of ingress. ioproxy's own ingress block has no label; it holds the listeners (http, https, trusted_proxies).`
		return true
	}
	if d.Summary != "Unsupported argument" && d.Summary != "Unsupported block type" {
		return false
	}
	m := quotedName.FindStringSubmatch(d.Detail)
	if m == nil {
		return false
	}
	instead, ok := ioSpellings[m[1]]
	if !ok {
		return false
	}
	d.Detail = instead
	return true
}
