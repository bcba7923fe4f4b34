package scope

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// validScopes maps scopes that parse to their normal form. Most come from
// the permission spec's examples and from the interop fixtures that indigo
// ships (atproto/auth/testdata/permission_scopes_valid.txt).
var validScopes = []struct{ in, want string }{
	// static scopes (OAuth spec, "Authorization Scopes")
	{"atproto", "atproto"},
	{"transition:generic", "transition:generic"},
	{"transition:email", "transition:email"},
	{"transition:chat.bsky", "transition:chat.bsky"},

	// repo
	{"repo:app.example.profile", "repo:app.example.profile"},
	{"repo:app.example.profile?action=create&action=update&action=delete", "repo:app.example.profile"},
	{"repo:app.bsky.feed.post?action=create&action=delete", "repo:app.bsky.feed.post?action=create&action=delete"},
	{"repo:app.bsky.feed.post?action=delete&action=create", "repo:app.bsky.feed.post?action=create&action=delete"},
	{"repo?collection=app.example.profile&collection=app.example.post", "repo?collection=app.example.post&collection=app.example.profile"},
	{"repo?collection=a.b.c&collection=d.e.f", "repo?collection=a.b.c&collection=d.e.f"},
	{"repo?collection=com.example.foo", "repo:com.example.foo"},
	{"repo:*", "repo:*"},
	{"repo:*?action=delete", "repo:*?action=delete"},
	{"repo:*?action=create", "repo:*?action=create"},
	{"repo?action=create&collection=com.example.foo&collection=com.example.bar", "repo?collection=com.example.bar&collection=com.example.foo&action=create"},
	{"repo?collection=com.example.foo&action=create&action=update&action=delete", "repo:com.example.foo"},
	{"repo:com.example.foo?action=create&action=update", "repo:com.example.foo?action=create&action=update"},
	{"repo:%2A", "repo:*"},
	{"repo:app.bsky.feed.p%6Fst", "repo:app.bsky.feed.post"},
	{"repo:xyz.statusphere.status", "repo:xyz.statusphere.status"},

	// rpc
	{"rpc:app.example.moderation.createReport?aud=*", "rpc:app.example.moderation.createReport?aud=*"},
	{"rpc?lxm=*&aud=did:web:api.example.com%23svc_appview", "rpc:*?aud=did:web:api.example.com%23svc_appview"},
	{"rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23bsky_appview", "rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23bsky_appview"},
	{"rpc:app.bsky.actor.getProfile?aud=did:web:api.bsky.app#bsky_appview", "rpc:app.bsky.actor.getProfile?aud=did:web:api.bsky.app%23bsky_appview"},
	{"rpc:com.example.service?aud=did:web:example.com%23service_id", "rpc:com.example.service?aud=did:web:example.com%23service_id"},
	{"rpc?lxm=com.example.method1&aud=*", "rpc:com.example.method1?aud=*"},
	{"rpc?lxm=com.example.method2&lxm=com.example.method1&aud=did:web:example.com%23service_id", "rpc?lxm=com.example.method1&lxm=com.example.method2&aud=did:web:example.com%23service_id"},
	{"rpc?aud=*&lxm=com.example.method1&lxm=com.example.method2", "rpc?lxm=com.example.method1&lxm=com.example.method2&aud=*"},
	{"rpc?aud=did%3Aweb%3Aapi.example.com%23frag&lxm=com.example.query&lxm=com.example.procedure", "rpc?lxm=com.example.procedure&lxm=com.example.query&aud=did:web:api.example.com%23frag"},
	{"rpc:*?aud=did:plc:ewvi7nxzyoun6zhxrhs64oiz%23atproto_labeler", "rpc:*?aud=did:plc:ewvi7nxzyoun6zhxrhs64oiz%23atproto_labeler"},
	{"rpc:app.bsky.feed.getFeed?aud=did:web:localhost%253A2584%23bsky_appview", "rpc:app.bsky.feed.getFeed?aud=did:web:localhost%253A2584%23bsky_appview"},

	// blob
	{"blob:*/*", "blob:*/*"},
	{"blob:image/*", "blob:image/*"},
	{"blob:image/png", "blob:image/png"},
	{"blob?accept=image/png", "blob:image/png"},
	{"blob?accept=video/*&accept=text/html", "blob?accept=text/html&accept=video/*"},
	{"blob?accept=image/png&accept=video/*", "blob?accept=image/png&accept=video/*"},
	{"blob?accept=image%2Fpng&accept=image%2Fjpeg", "blob?accept=image/jpeg&accept=image/png"},
	{"blob:image/svg+xml", "blob:image/svg+xml"},
	{"blob?accept=image/svg%2Bxml&accept=image/png", "blob?accept=image/png&accept=image/svg%2Bxml"},
	{"blob?accept=image/svg%2Bxml&accept=image/png", "blob?accept=image/png&accept=image/svg%2Bxml"},

	// account
	{"account:email", "account:email"},
	{"account:email?action=read", "account:email"},
	{"account:email?action=manage", "account:email?action=manage"},
	{"account:repo", "account:repo"},
	{"account:repo?action=manage", "account:repo?action=manage"},
	{"account?attr=email", "account:email"},
	{"account?action=manage&attr=repo", "account:repo?action=manage"},

	// identity
	{"identity:handle", "identity:handle"},
	{"identity:*", "identity:*"},
	{"identity:*?", "identity:*"},
	{"identity?attr=handle", "identity:handle"},

	// include
	{"include:app.example.authBasics", "include:app.example.authBasics"},
	{"include:app.example.authFull?aud=did:web:api.example.com%23svc_chat", "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat"},
	{"include:com.example.authBasicFeatures?aud=did:web:api.example.com%23svc_appview", "include:com.example.authBasicFeatures?aud=did:web:api.example.com%23svc_appview"},
	{"include:com.example.baz?aud=did:web:example.com#my_service", "include:com.example.baz?aud=did:web:example.com%23my_service"},
	{"include?nsid=com.example.baz", "include:com.example.baz"},
	{"include?aud=did:web:example.com%23my_service&nsid=com.example.baz", "include:com.example.baz?aud=did:web:example.com%23my_service"},
	{"include:com.example.calendar.auth", "include:com.example.calendar.auth"},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validScopes {
		s, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := s.String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRoundTrip checks that the normal form parses to the same Scope and
// is a fixed point.
func TestRoundTrip(t *testing.T) {
	for _, tc := range validScopes {
		s, err := Parse(tc.in)
		if err != nil {
			continue // TestParseValid reports it
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Errorf("Parse(%q) = %q, which does not parse: %v", tc.in, s, err)
			continue
		}
		if again != s {
			t.Errorf("Parse(%q) = %#v, but Parse(%q) = %#v", tc.in, s, s.String(), again)
		}
		if again.String() != s.String() {
			t.Errorf("String is not a fixed point: %q, then %q", s, again)
		}
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		in                          string
		resource                    Resource
		collections, methods, accep []string
		actions                     []string
		attr, nsid, aud             string
	}{
		{in: "atproto", resource: Atproto},
		{in: "repo:app.bsky.feed.post", resource: Repo, collections: []string{"app.bsky.feed.post"}, actions: []string{"create", "update", "delete"}},
		{in: "repo?collection=d.e.f&collection=a.b.c&action=delete&action=update", resource: Repo, collections: []string{"a.b.c", "d.e.f"}, actions: []string{"update", "delete"}},
		{in: "rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23bsky_appview", resource: RPC, methods: []string{"app.bsky.feed.getFeed"}, aud: "did:web:api.bsky.app#bsky_appview"},
		{in: "rpc?lxm=*&aud=did:web:api.bsky.app%23bsky_appview", resource: RPC, methods: []string{"*"}, aud: "did:web:api.bsky.app#bsky_appview"},
		{in: "blob?accept=video/*&accept=image/png", resource: Blob, accep: []string{"image/png", "video/*"}},
		{in: "account:email", resource: Account, attr: "email", actions: []string{"read"}},
		{in: "account:email?action=manage", resource: Account, attr: "email", actions: []string{"manage"}},
		{in: "identity:*", resource: Identity, attr: "*"},
		{in: "include:app.example.authBasic?aud=did:web:api.example.com%23svc", resource: Include, nsid: "app.example.authBasic", aud: "did:web:api.example.com#svc"},
		{in: "include:app.example.authBasic", resource: Include, nsid: "app.example.authBasic"},
	}
	for _, tc := range tests {
		s, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if s.Resource() != tc.resource || !slices.Equal(s.Collections(), tc.collections) || !slices.Equal(s.Methods(), tc.methods) ||
			!slices.Equal(s.Accept(), tc.accep) || !slices.Equal(s.Actions(), tc.actions) || s.Attr() != tc.attr || s.NSID() != tc.nsid || s.Aud() != tc.aud {
			t.Errorf("Parse(%q) = resource %q collections %q methods %q accept %q actions %q attr %q nsid %q aud %q; want %+v", tc.in,
				s.Resource(), s.Collections(), s.Methods(), s.Accept(), s.Actions(), s.Attr(), s.NSID(), s.Aud(), tc)
		}
	}
}

// invalidScopes maps scopes that must not parse to a part of the error:
// what is wrong and, where there is one, what to write instead. Many come
// from the spec and the interop fixtures (permission_scopes_invalid.txt).
var invalidScopes = []struct{ in, want string }{
	{"", "empty scope: write a scope such as atproto"},
	{"blob?accept=image/svg+xml&accept=image/png", `holds a "+", which servers read as a space: write %2B for a plus sign`},
	{"rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23svc+x", `write %2B`},
	{"repo:app.bsky.feed.post ", "whitespace"},
	{"repo:foo bar", "whitespace"},
	{"resource:positional?key=québec", `character 'é' at byte 26 is not printable ASCII: percent-encode it (%C3%A9)`},
	{"emoji:☺️", "not printable ASCII"},
	{"repo:\xff", "not UTF-8"},
	{`repo:"a.b.c"`, `'"' at byte 5 is not allowed in an OAuth scope`},
	{`repo:a\b`, `'\\' at byte 6 is not allowed`},
	{"repo:a.b.c\x00", "not printable ASCII"},

	// resources
	{"repos:app.bsky.feed.post", `unknown resource "repos": write one of repo, rpc, blob, account, identity, include`},
	{"invalid", `unknown resource "invalid"`},
	{"scope", `unknown resource "scope"`},
	{"resource", `unknown resource "resource"`},
	{"resource:positional?key=val", `unknown resource "resource"`},
	{"service:did:web:com.example#type?key=val", `unknown resource "service"`},
	{"resource:", `unknown resource "resource"`},
	{"resource?", `unknown resource "resource"`},
	{"notrpc:com.example.service?aud=did:web:example.com%23service_id", `unknown resource "notrpc"`},
	{"include#", `unknown resource "include#"`},
	{"Repo:com.example.foo", `unknown resource "Repo": scopes are case-sensitive, write repo`},
	{"Blob?accept=image/png", "case-sensitive, write blob"},
	{"ATPROTO", "scopes are case-sensitive, write atproto"},
	{"Transition:Generic", "write transition:generic"},
	{":app.bsky.feed.post", `no resource name before ":"`},
	{"?collection=a.b.c", `no resource name before "?"`},
	{"atproto:x", "atproto takes no value or parameters: write atproto"},
	{"atproto?", "atproto takes no value or parameters"},
	{"transition:generic?x=y", "transition:generic takes no parameters: write transition:generic"},
	{"transition:everything", "unknown transition scope: write transition:generic, transition:email or transition:chat.bsky"},
	{"transition", "unknown transition scope"},

	// general syntax
	{"repo:a.b.c?action=create&&action=delete", "empty parameter"},
	{"repo:a.b.c?action=create&", "empty parameter"},
	{"repo:a.b.c?action", `parameter "action" has no value: write action=<value>`},
	{"repo:a.b.c?action=", `parameter "action" has no value`},
	{"repo:a.b.c?=create", "has no name"},
	{"repo:a.b.%zz", `bad percent-encoding "%zz": write % and two hex digits, such as %23 for #`},
	{"rpc:a.b.c?aud=did:web:x.com%2", "bad percent-encoding"},
	{"repo:com.example.record?collection=com.example.other", `collection is given both after "repo:" and as collection=`},
	{"identity:*?attr=*", `attr is given both after "identity:" and as attr=`},
	{"rpc:com.example.method1?aud=did:web:example.com&lxm=com.example.method2", "lxm is given both"},

	// repo
	{"repo", "repo needs a collection: write repo:<collection NSID>, repo:* for every collection"},
	{"repo:", `nothing after "repo:": write repo:<collection NSID>`},
	{"repo:?collection=a.b.c", `nothing after "repo:"`},
	{"repo:app.bsky", `collection "app.bsky" is not an NSID: write a reversed domain name and a name, such as app.bsky.feed.post`},
	{"repo:.foo", "is not an NSID"},
	{"repo:bar.", "is not an NSID"},
	{"repo:123", "is not an NSID"},
	{"repo:invalid", "is not an NSID"},
	{"repo:com.example.*", `collection "com.example.*": partial wildcards are not supported: write * for every collection, or name each one`},
	{"repo?collection=*&collection=a.b.c", `collection "*" already covers every collection: drop the others`},
	{"repo?collection=a.b.c&collection=a.b.c", `collection "a.b.c" is listed twice: list it once`},
	{"repo:com.example.foo?action=write", `action "write" is not one of create, update, delete`},
	{"repo:com.example.foo?action=invalid", "is not one of create, update, delete"},
	{"repo:*?action=*", `action "*" is not one of create, update, delete`},
	{"repo:*?action=Create", `(scopes are case-sensitive: write create)`},
	{"repo:*?Action=create", `repo takes no parameter "Action" (parameter names are case-sensitive: action): its parameters are collection and action`},
	{"repo:a.b.c?action=create&action=create", `action "create" is listed twice`},
	{"repo?collection=invalid&action=invalid", "is not an NSID"},
	{"repo:a.b.c?aud=*", `repo takes no parameter "aud"`},

	// rpc
	{"rpc", "rpc needs a method (lxm): write rpc:<method NSID>?aud=<service>"},
	{"rpc:", `nothing after "rpc:"`},
	{"rpc:*", "rpc needs aud"},
	{"rpc:com.example.method1", "rpc needs aud, the service the calls go to: add ?aud="},
	{"rpc?lxm=com.example.method1", "rpc needs aud"},
	{"rpc?aud=did:web:example.com%23service_id", "rpc needs a method"},
	{"rpc:?aud=did:web:example.com%23service_id", `nothing after "rpc:"`},
	{"rpc?aud=*&lxm=*", "rpc with lxm=* needs a specific aud (aud=* with lxm=* is not allowed)"},
	{"rpc:*?aud=*", "aud=* with lxm=* is not allowed"},
	{"rpc:123", "is not an NSID"},
	{"rpc:foo.bar", `lxm "foo.bar" is not an NSID`},
	{"rpc:invalid?aud=did:web:example.com%23service_id", "is not an NSID"},
	{"rpc?lxm=invalid", "is not an NSID"},
	{"rpc:com.example.*?aud=*", "partial wildcards are not supported: write * for every method"},
	{"rpc?lxm=*&lxm=a.b.c&aud=did:web:x.com%23y", `lxm "*" already covers every method`},
	{"rpc:com.example.query?aud=api.example.com", `aud "api.example.com" has no service id`},
	{"rpc:foo.bar.baz?aud=did:web:example.com", `aud "did:web:example.com" has no service id: write the DID, # (%23) and the service id`},
	{"rpc:foo.bar.baz?aud=did:web", "has no service id"},
	{"rpc:foo.bar.baz?aud=did:web%23service_id", `"did:web" is not a DID`},
	{"rpc:foo.bar.baz?aud=did:plc:111", "has no service id"},
	{"rpc:foo.bar.baz?aud=did:plc:111%23svc", `"did:plc:111" is not a did:plc`},
	{"rpc:foo.bar.baz?aud=did:foo:bar", "has no service id"},
	{"rpc:foo.bar.baz?aud=did:key:zQ3sh%23svc", "atproto services use did:web or did:plc"},
	{"rpc:foo.bar.baz?aud=did:web:example.com%23", "has no service id"},
	{"rpc:foo.bar.baz?aud=did:web:example.com%23a%23b", "is not a DID fragment"},
	{"rpc:foo.bar.baz?aud=did:web:localhost%3A2584%23svc", "a port is written %3A in the DID, so %253A in a scope"},
	{"rpc:foo.bar.baz?aud=invalid", "has no service id"},
	{"rpc:foo.bar.baz?aud=did:web:example.com%23service_id&lxm=foo.bar.baz", "lxm is given both"},
	{"rpc:com.example.service?aud=did:web:example.com%23service_id&invalid=param", `rpc takes no parameter "invalid": its parameters are lxm and aud`},
	{"rpc?Lxm=com.example.method1&aud=*", "parameter names are case-sensitive: lxm"},
	{"rpc:a.b.c?aud=*&aud=did:web:x.com%23y", "rpc takes one aud, not several: keep one"},

	// blob
	{"blob", "blob needs a MIME type: write blob:*/*, blob:image/* or blob?accept=image/png&accept=video/*"},
	{"blob:image", `"image" is not a MIME type or pattern such as image/* or image/png`},
	{"blob:invalid", "is not a MIME type"},
	{"blob?accept=invalid-mime", "is not a MIME type"},
	{"blob:*/**", `"*/**" is not a MIME type`},
	{"blob:*/png", `"*/png" is not a MIME type`},
	{"blob:/plain", "is not a MIME type"},
	{"blob:text/", "is not a MIME type"},
	{"blob:text/plain/x", "is not a MIME type"},
	{"blob:text/plain;charset=utf-8", "is not a MIME type"},
	{"blob:image/pn*", "is not a MIME type"},
	{"blob?accept=image/png&accept=image/png", `accept "image/png" is listed twice`},
	{"blob?Accept=image/png", `blob takes no parameter "Accept" (parameter names are case-sensitive: accept): its only parameter is accept`},
	{"blob:*/*?accept=image/png", "accept is given both"},

	// account
	{"account", "account needs an attribute: write account:email or account:repo"},
	{"account:", `nothing after "account:"`},
	{"account:invalid", `account attr "invalid" is not one of email, repo`},
	{"account:status", `account attr "status" is not one of email, repo`},
	{"account:status?action=manage", "is not one of email, repo"},
	{"account:*", "is not one of email, repo"},
	{"account:Email", "(scopes are case-sensitive: write email)"},
	{"account:email?action=invalid", `account action "invalid" is not one of read, manage`},
	{"account:email?action=read&action=manage", "account takes one action, not several: keep one"},
	{"account:email?attr=repo", "attr is given both"},
	{"account:email?aud=*", `account takes no parameter "aud": its parameters are attr and action`},

	// identity
	{"identity", "identity needs an attribute: write identity:handle or identity:*"},
	{"identity:invalid", `identity attr "invalid" is not one of handle, *`},
	{"identity:Handle", "write handle"},
	{"identity:handle?action=invalid", `identity takes no parameter "action": its only parameter is attr; write identity:handle or identity:*`},
	{"identity:*?action=manage", `identity takes no parameter "action"`},
	{"identity?attribute=invalid&action=invalid", `identity takes no parameter "attribute"`},
	{"identity?attr=handle&attr=*", "identity takes one attr, not several"},

	// include
	{"include", "include needs a permission set NSID: write include:<permission set NSID>"},
	{"include:", `nothing after "include:"`},
	{"include:#", "is not an NSID"},
	{"include:&", "is not an NSID"},
	{"include:com..example", "is not an NSID"},
	{"include:com", "is not an NSID"},
	{"include:com.example", `permission set "com.example" is not an NSID: write a reversed domain name and a name, such as com.example.authBasicFeatures`},
	{"include:9com.example.foo", "is not an NSID"},
	{"include:com.example.-bar", "is not an NSID"},
	{"include:invalid^nsid", "is not an NSID"},
	{"include:nsid", "is not an NSID"},
	{"include:*", "a permission set NSID may not contain wildcards"},
	{"include:app.example.*", "a permission set NSID may not contain wildcards: write the set's full NSID"},
	{"include:com.example.baz?aud=", `parameter "aud" has no value`},
	{"include:com.example.baz?aud=did:web:example.com", "has no service id"},
	{"include:com.example.baz?aud=invalid^did", "has no service id"},
	{"include:com.example.baz?aud=*", "include aud may not be *"},
	{"include:com.example.baz?lxm=a.b.c", `include takes no parameter "lxm": its parameters are nsid and aud`},
	{"Include:app.example.authBasics", "case-sensitive, write include"},
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidScopes {
		s, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want an error containing %q", tc.in, s, tc.want)
			continue
		}
		if s != (Scope{}) {
			t.Errorf("Parse(%q) failed but returned %#v", tc.in, s)
		}
		var se *Error
		if !errors.As(err, &se) || se.Scope != tc.in {
			t.Errorf("Parse(%q) error %v is not an *Error naming the scope", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error:\n  %v\nwant it to contain:\n  %s", tc.in, err, tc.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Parse("repos:app.bsky.feed.post")
	want := `scope "repos:app.bsky.feed.post": unknown resource "repos": write one of repo, rpc, blob, account, identity, include`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

// TestEquivalentSpellings checks that spellings of one permission give
// equal Scopes, as a set of scopes in the configuration relies on.
func TestEquivalentSpellings(t *testing.T) {
	groups := [][]string{
		{"repo:a.b.c", "repo?collection=a.b.c", "repo:a.b.c?action=delete&action=update&action=create", "repo:a%2Eb.c"},
		{"repo?collection=a.b.c&collection=d.e.f", "repo?collection=d.e.f&collection=a.b.c"},
		{"rpc:a.b.c?aud=did:web:x.com%23y", "rpc?aud=did:web:x.com#y&lxm=a.b.c", "rpc:a.b.c?aud=did%3Aweb%3Ax.com%23y"},
		{"account:email", "account:email?action=read", "account?attr=email", "account?action=read&attr=email"},
		{"identity:*", "identity:*?", "identity?attr=*", "identity:%2A"},
		{"include:a.b.c", "include?nsid=a.b.c"},
	}
	for _, group := range groups {
		first, err := Parse(group[0])
		if err != nil {
			t.Fatalf("Parse(%q): %v", group[0], err)
		}
		for _, in := range group[1:] {
			if s, err := Parse(in); err != nil || s != first {
				t.Errorf("Parse(%q) = %q, %v; want %q like %q", in, s, err, first, group[0])
			}
		}
	}
	if a, b := mustParse(t, "account:email"), mustParse(t, "account:email?action=manage"); a == b {
		t.Errorf("account:email equals account:email?action=manage")
	}
	if a, b := mustParse(t, "repo:a.b.c"), mustParse(t, "repo:a.b.c?action=create"); a == b {
		t.Errorf("repo:a.b.c equals repo:a.b.c?action=create")
	}
}

func mustParse(t *testing.T, s string) Scope {
	t.Helper()
	sc, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return sc
}

func TestParseList(t *testing.T) {
	list := "atproto transition:generic repo:app.bsky.feed.post?action=create rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23bsky_appview blob:image/*"
	scopes, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range scopes {
		got = append(got, s.String())
	}
	if strings.Join(got, " ") != list {
		t.Errorf("ParseList(%q) = %q", list, got)
	}

	invalid := []struct{ in, want string }{
		{"", "empty scope list: write at least atproto"},
		{" atproto", "scope list starts with a space: remove it"},
		{"atproto ", "scope list ends with a space: remove it"},
		{"atproto  repo:*", `scope list has two spaces in a row after "atproto": separate scopes with one space`},
		{"atproto\trepo:*", "whitespace at byte 7"},
		{"atproto\nrepo:*", "whitespace"},
		{"atproto repos:*", `scope "repos:*": unknown resource "repos"`},
		{"atproto repo:a.b.c repo?collection=a.b.c", `scope "repo?collection=a.b.c": repeats "repo:a.b.c" (both are repo:a.b.c): list it once`},
		{"atproto atproto", `scope "atproto": repeats "atproto"`},
	}
	for _, tc := range invalid {
		scopes, err := ParseList(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseList(%q) = %q, %v; want an error containing %q", tc.in, scopes, err, tc.want)
		}
	}
}

func TestIsDeprecated(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"transition:generic", "repo:* blob:*/* rpc:*?aud=did:web:api.bsky.app%23bsky_appview", true},
		{"transition:email", "account:email", true},
		{"transition:chat.bsky", "", false},
		{"atproto", "", false},
		{"repo:*", "", false},
	} {
		got, ok := IsDeprecated(mustParse(t, tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("IsDeprecated(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok {
			// The replacement must be what this package accepts.
			if _, err := ParseList(got); err != nil {
				t.Errorf("replacement %q for %s does not parse: %v", got, tc.in, err)
			}
		}
	}
}

func TestZeroScope(t *testing.T) {
	var s Scope
	if s.String() != "" || s.Resource() != "" || s.Collections() != nil || s.Actions() != nil || s.Attr() != "" {
		t.Errorf("zero Scope = %q with fields", s)
	}
	if _, err := Parse(s.String()); err == nil {
		t.Error("Parse of the zero Scope's String succeeded")
	}
}
