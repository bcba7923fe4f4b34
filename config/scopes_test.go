package config

import (
	"strings"
	"testing"
)

// TestScopes: each scope is read with the AT Protocol permission grammar
// and refused at file:line saying what to write; a repeated one is
// refused; transition:generic loads with a warning naming granular
// scopes; granular scopes load without a word.
func TestScopes(t *testing.T) {
	host := func(scopes string) string {
		return "host \"app.example.com\" {\n  backend = \"localhost:3000\"\n  atproto {\n    scopes = " + scopes + "\n  }\n}"
	}
	for _, tc := range []struct {
		scopes, want string
	}{
		{`["atproto", "repos:xyz.statusphere.status"]`, `test.hcl:4:14: error: Invalid scope: "repos:xyz.statusphere.status" is not an AT Protocol scope: unknown resource "repos": write one of repo, rpc, blob, account, identity, include.`},
		{`["atproto", "repo:xyz.statusphere.status?action=write"]`, `error: Invalid scope: "repo:xyz.statusphere.status?action=write" is not an AT Protocol scope:`},
		{`["atproto", "blob:image"]`, `error: Invalid scope: "blob:image" is not an AT Protocol scope:`},
		{`["atproto", "rpc:*?aud=*"]`, `error: Invalid scope: "rpc:*?aud=*"`},
		{`["atproto", "a b"]`, `error: Invalid scope: "a b" is not an AT Protocol scope:`},
		{`["atproto", "repo:a.b.c", "repo?collection=a.b.c"]`, `error: Repeated scope: "repo?collection=a.b.c" asks for what "repo:a.b.c" does already; write it once.`},
		{`["atproto", "transition:generic"]`, `test.hcl:4:14: warning: Broad scope: "transition:generic" lets the app write anything in the account's repository and call any service as the user; ask for what the app uses instead, such as "repo:* blob:*/* rpc:*?aud=did:web:api.bsky.app%23bsky_appview".`},
	} {
		_, diags := parse(t, host(tc.scopes))
		if got := formatted(diags); !strings.Contains(got, tc.want) {
			t.Errorf("scopes = %s:\n%s\nwant it to hold:\n%s", tc.scopes, got, tc.want)
		}
	}
	for _, ok := range []string{
		`["atproto", "repo:xyz.statusphere.status"]`,
		`["atproto", "repo:xyz.statusphere.status?action=create", "blob:image/*", "rpc:app.bsky.actor.getProfile?aud=did:web:api.bsky.app%23bsky_appview"]`,
		`["atproto", "account:email", "identity:handle", "include:app.example.authBasic"]`,
	} {
		if cfg, diags := parse(t, host(ok)); cfg == nil || len(diags) != 0 {
			t.Errorf("scopes = %s: %s", ok, formatted(diags))
		}
	}
}
