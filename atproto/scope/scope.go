// Package scope parses AT Protocol OAuth scopes: the static scopes
// (atproto and the transition scopes) and the granular permissions of the
// permission spec (https://atproto.com/specs/permission): repo, rpc, blob,
// account, identity and include.
//
// ioproxy reads scopes from its configuration and sends them to
// authorization servers, so Parse is strict (an unknown parameter, value or
// resource is an error that says what to write instead) and a parsed Scope
// prints back in one normal form, whichever of the equivalent spellings the
// configuration used.
package scope

import "strings"

// Resource names what a scope is about. For the static scopes it is the
// whole scope (atproto, transition:generic, ...); for a permission it is the
// part before the ":" or "?" (repo, rpc, ...).
type Resource string

// The static scopes, from the OAuth spec (https://atproto.com/specs/oauth,
// "Authorization Scopes").
const (
	Atproto            Resource = "atproto"
	TransitionGeneric  Resource = "transition:generic"
	TransitionEmail    Resource = "transition:email"
	TransitionChatBsky Resource = "transition:chat.bsky"
)

// The resources of the permission spec; Include is its "meta" resource that
// names a permission set.
const (
	Repo     Resource = "repo"
	RPC      Resource = "rpc"
	Blob     Resource = "blob"
	Account  Resource = "account"
	Identity Resource = "identity"
	Include  Resource = "include"
)

// Wildcard is the value that stands for every collection (repo), every
// method or audience (rpc) or full control (identity).
const Wildcard = "*"

// The values of the repo action parameter, in the spec's order, which is
// also the order String writes them in.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// The values of the account action parameter; manage includes read.
const (
	ActionRead   = "read"
	ActionManage = "manage"
)

// Scope is one parsed scope token. It is a comparable value, so scopes can
// be compared with == and used as map keys: two spellings of one permission
// (repo:a.b.c and repo?collection=a.b.c&action=create&action=update&action=delete)
// are equal.
//
// Its lists are held as sorted, space-joined strings to keep it comparable;
// no valid value contains a space. The zero Scope is no scope at all.
type Scope struct {
	resource Resource
	// values is the resource's main parameter: repo collection, rpc lxm,
	// blob accept (sorted), account or identity attr, include nsid.
	values string
	// action is the repo actions in spec order, or the account action;
	// defaults are filled in, so an omitted action equals the explicit one.
	action string
	// aud is the rpc or include audience.
	aud string
}

// Resource is what the scope is about; "" for the zero Scope.
func (s Scope) Resource() Resource { return s.resource }

// Collections is a repo scope's record types (NSIDs, or just "*"), sorted.
func (s Scope) Collections() []string { return s.listFor(Repo) }

// Methods is an rpc scope's lxm parameter: the API methods (NSIDs, or just
// "*"), sorted.
func (s Scope) Methods() []string { return s.listFor(RPC) }

// Accept is a blob scope's MIME types and patterns, sorted.
func (s Scope) Accept() []string { return s.listFor(Blob) }

// Actions is what a repo scope allows (some of create, update, delete, in
// that order; all three when the scope names none), or an account scope's
// one action (read, the default, or manage).
func (s Scope) Actions() []string {
	if s.resource != Repo && s.resource != Account {
		return nil
	}
	return strings.Fields(s.action)
}

// Attr is an account scope's attribute (email, repo) or an identity
// scope's (handle, *).
func (s Scope) Attr() string {
	if s.resource != Account && s.resource != Identity {
		return ""
	}
	return s.values
}

// NSID is the permission set an include scope names.
func (s Scope) NSID() string {
	if s.resource != Include {
		return ""
	}
	return s.values
}

// Aud is the audience of an rpc scope (a DID service reference such as
// did:web:api.bsky.app#bsky_appview, or "*") or of an include scope ("" when
// it has none).
func (s Scope) Aud() string { return s.aud }

func (s Scope) listFor(r Resource) []string {
	if s.resource != r {
		return nil
	}
	return strings.Fields(s.values)
}

// IsDeprecated reports whether s is a transition scope that granular
// permissions can replace, and what to write instead.
//
// The atproto docs call the transition scopes temporary but have "no plans
// to deprecate" them (https://atproto.com/guides/scopes); this helper is for
// diagnostics that nudge a configuration towards least privilege.
//
// The replacements follow what the reference authorization server lets each
// transition scope do (@atproto/oauth-scopes, ScopePermissionsTransition):
//   - transition:generic allows any repo write, any blob upload and any rpc
//     call outside chat.bsky.*. The permission spec forbids rpc:*?aud=*, so
//     the replacement names the Bluesky AppView as the audience, the service
//     that the scopes guide's own example (rpc:app.bsky.actor.getProfile)
//     calls; an app that calls other services adds an rpc scope for each.
//   - transition:email allows reading the account email: account:email.
//
// transition:chat.bsky has no granular equivalent (partial wildcards such as
// chat.bsky.* are not supported), and atproto is required in every request.
func IsDeprecated(s Scope) (replacement string, ok bool) {
	switch s.resource {
	case TransitionGeneric:
		return "repo:* blob:*/* rpc:*?aud=did:web:api.bsky.app%23bsky_appview", true
	case TransitionEmail:
		return "account:email", true
	}
	return "", false
}
