package scope

import (
	"fmt"
	"strings"
)

// resourceSpec is what the permission spec defines for one resource: its
// parameters (the positional one first), how to write it, and how to turn
// checked arguments into a Scope.
type resourceSpec struct {
	params []paramSpec
	usage  string // what to write, for errors about a missing value
	build  func(args) (Scope, error)
}

type paramSpec struct {
	name  string
	multi bool // an array parameter, given by repeating it
}

// args are a permission's parameter values by name, with the positional
// part filed under its parameter's name.
type args map[string][]string

// specOf is the table of resources, as a switch so that it cannot change.
func specOf(r Resource) (resourceSpec, bool) {
	switch r {
	case Repo:
		return resourceSpec{
			params: []paramSpec{{"collection", true}, {"action", true}},
			usage:  "repo:<collection NSID>, repo:* for every collection, or repo?collection=<NSID>&collection=<NSID>",
			build:  buildRepo,
		}, true
	case RPC:
		return resourceSpec{
			params: []paramSpec{{"lxm", true}, {"aud", false}},
			usage:  "rpc:<method NSID>?aud=<service>, such as rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app%23bsky_appview",
			build:  buildRPC,
		}, true
	case Blob:
		return resourceSpec{
			params: []paramSpec{{"accept", true}},
			usage:  "blob:*/*, blob:image/* or blob?accept=image/png&accept=video/*",
			build:  buildBlob,
		}, true
	case Account:
		return resourceSpec{
			params: []paramSpec{{"attr", false}, {"action", false}},
			usage:  "account:email or account:repo, with ?action=manage to change it",
			build:  buildAccount,
		}, true
	case Identity:
		return resourceSpec{
			params: []paramSpec{{"attr", false}},
			usage:  "identity:handle or identity:*",
			build:  buildIdentity,
		}, true
	case Include:
		// The spec names no parameter for the permission set; "nsid" is
		// what the reference implementations (@atproto/oauth-scopes,
		// indigo) accept in its place.
		return resourceSpec{
			params: []paramSpec{{"nsid", false}, {"aud", false}},
			usage:  "include:<permission set NSID>, such as include:com.example.authBasicFeatures",
			build:  buildInclude,
		}, true
	}
	return resourceSpec{}, false
}

func (rs resourceSpec) param(name string) (paramSpec, bool) {
	for _, p := range rs.params {
		if p.name == name {
			return p, true
		}
	}
	return paramSpec{}, false
}

func (rs resourceSpec) names() []string {
	names := make([]string, len(rs.params))
	for i, p := range rs.params {
		names[i] = p.name
	}
	return names
}

// permission applies the rules of the resource g names.
func (g generic) permission() (Scope, error) {
	r := Resource(g.resource)
	rs, ok := specOf(r)
	if !ok {
		return Scope{}, g.unknownResource()
	}
	a, err := g.args(r, rs)
	if err != nil {
		return Scope{}, err
	}
	return rs.build(a)
}

// args files the parameters by name and checks what every resource shares:
// known names, one value for single parameters, and (spec, "Scope String
// Syntax") a positional part that is not also given as a parameter.
func (g generic) args(r Resource, rs resourceSpec) (args, error) {
	a := make(args, len(rs.params))
	for _, p := range g.params {
		ps, ok := rs.param(p.name)
		if !ok {
			return nil, unknownParam(r, p.name, rs)
		}
		if !ps.multi && len(a[p.name]) > 0 {
			return nil, fmt.Errorf("%s takes one %s, not several: keep one", r, p.name)
		}
		a[p.name] = append(a[p.name], p.value)
	}
	if !g.hasPositional {
		return a, nil
	}
	pos := rs.params[0].name
	if g.positional == "" {
		return nil, fmt.Errorf("nothing after %q: write %s", r+":", rs.usage)
	}
	if len(a[pos]) > 0 {
		return nil, fmt.Errorf("%s is given both after %q and as %s=: give it one way, e.g. %s", pos, r+":", pos, rs.usage)
	}
	a[pos] = []string{g.positional}
	return a, nil
}

func (g generic) unknownResource() error {
	switch g.resource {
	case string(Atproto):
		return fmt.Errorf("atproto takes no value or parameters: write atproto")
	case "transition":
		name := "transition:" + g.positional
		if g.hasPositional && isStatic(Resource(name)) {
			return fmt.Errorf("%s takes no parameters: write %s", name, name)
		}
		return fmt.Errorf("unknown transition scope: write transition:generic, transition:email or transition:chat.bsky")
	}
	if lower := strings.ToLower(g.resource); lower != g.resource {
		if _, ok := specOf(Resource(lower)); ok {
			return fmt.Errorf("unknown resource %q: scopes are case-sensitive, write %s", g.resource, lower)
		}
	}
	return fmt.Errorf("unknown resource %q: write one of %s", g.resource, resourceNames)
}

func unknownParam(r Resource, name string, rs resourceSpec) error {
	names := rs.names()
	hint := ""
	for _, n := range names {
		if strings.EqualFold(n, name) {
			hint = fmt.Sprintf(" (parameter names are case-sensitive: %s)", n)
		}
	}
	if len(names) == 1 {
		return fmt.Errorf("%s takes no parameter %q%s: its only parameter is %s; write %s", r, name, hint, names[0], rs.usage)
	}
	return fmt.Errorf("%s takes no parameter %q%s: its parameters are %s", r, name, hint, strings.Join(names, " and "))
}

func missing(r Resource, what string) error {
	rs, _ := specOf(r)
	return fmt.Errorf("%s needs %s: write %s", r, what, rs.usage)
}

// buildRepo: spec, "repo": collection (NSIDs or *, required, positional),
// action (create, update, delete; unique; all when omitted).
func buildRepo(a args) (Scope, error) {
	cols := a["collection"]
	if len(cols) == 0 {
		return Scope{}, missing(Repo, "a collection")
	}
	values, err := nsidList("collection", "collection", cols, "app.bsky.feed.post")
	if err != nil {
		return Scope{}, err
	}
	action, err := repoActions(a["action"])
	if err != nil {
		return Scope{}, err
	}
	return Scope{resource: Repo, values: values, action: action}, nil
}

// allRepoActions is what a repo scope without an action allows.
const allRepoActions = ActionCreate + " " + ActionUpdate + " " + ActionDelete

func repoActions(given []string) (string, error) {
	if len(given) == 0 {
		return allRepoActions, nil
	}
	if err := checkUnique("action", given); err != nil {
		return "", err
	}
	var have []string
	for _, act := range given {
		if err := oneOf("action", act, ActionCreate, ActionUpdate, ActionDelete); err != nil {
			return "", err
		}
	}
	for _, act := range strings.Fields(allRepoActions) {
		if contains(given, act) {
			have = append(have, act)
		}
	}
	return strings.Join(have, " "), nil
}

// buildRPC: spec, "rpc": lxm (NSIDs or *, required, positional), aud (a DID
// service reference or *, always required in a scope string), and not both
// wildcards: "the ability to call any API endpoint on any service can not be
// declared with a single permission".
func buildRPC(a args) (Scope, error) {
	lxm := a["lxm"]
	if len(lxm) == 0 {
		return Scope{}, missing(RPC, "a method (lxm)")
	}
	values, err := nsidList("lxm", "method", lxm, "app.bsky.feed.getFeed")
	if err != nil {
		return Scope{}, err
	}
	if len(a["aud"]) == 0 {
		return Scope{}, fmt.Errorf("rpc needs aud, the service the calls go to: add ?aud=did:web:api.bsky.app%%23bsky_appview (for example) or ?aud=*")
	}
	aud := a["aud"][0]
	if aud == Wildcard && values == Wildcard {
		return Scope{}, fmt.Errorf("rpc with lxm=* needs a specific aud (aud=* with lxm=* is not allowed): name the service, e.g. aud=did:web:api.bsky.app%%23bsky_appview, or name the methods")
	}
	if aud != Wildcard {
		if err := checkServiceRef(aud); err != nil {
			return Scope{}, err
		}
	}
	return Scope{resource: RPC, values: values, aud: aud}, nil
}

// buildBlob: spec, "blob": accept (MIME types or type/* and */* patterns,
// required, positional).
func buildBlob(a args) (Scope, error) {
	accept := a["accept"]
	if len(accept) == 0 {
		return Scope{}, missing(Blob, "a MIME type")
	}
	for _, v := range accept {
		if err := checkAccept(v); err != nil {
			return Scope{}, err
		}
	}
	values, err := sortedList("accept", accept)
	if err != nil {
		return Scope{}, err
	}
	return Scope{resource: Blob, values: values}, nil
}

// buildAccount: spec, "account": attr (email or repo, required,
// positional, no wildcard), action (read or manage, default read).
func buildAccount(a args) (Scope, error) {
	if len(a["attr"]) == 0 {
		return Scope{}, missing(Account, "an attribute")
	}
	attr := a["attr"][0]
	if err := oneOf("account attr", attr, "email", "repo"); err != nil {
		return Scope{}, err
	}
	action := ActionRead
	if len(a["action"]) > 0 {
		action = a["action"][0]
	}
	if err := oneOf("account action", action, ActionRead, ActionManage); err != nil {
		return Scope{}, err
	}
	return Scope{resource: Account, values: attr, action: action}, nil
}

// buildIdentity: spec, "identity": attr (handle or *, required,
// positional); no other parameter.
func buildIdentity(a args) (Scope, error) {
	if len(a["attr"]) == 0 {
		return Scope{}, missing(Identity, "an attribute")
	}
	attr := a["attr"][0]
	if err := oneOf("identity attr", attr, "handle", Wildcard); err != nil {
		return Scope{}, err
	}
	return Scope{resource: Identity, values: attr}, nil
}

// buildInclude: spec, "Permission Sets": include names a permission set by
// NSID (no wildcards: a set is one lexicon) and may give the aud that the
// set's inheritAud rpc permissions take. That aud is a service reference;
// "*" is refused as the reference implementation refuses it.
func buildInclude(a args) (Scope, error) {
	if len(a["nsid"]) == 0 {
		return Scope{}, missing(Include, "a permission set NSID")
	}
	nsid := a["nsid"][0]
	if strings.Contains(nsid, Wildcard) {
		return Scope{}, fmt.Errorf("a permission set NSID may not contain wildcards: write the set's full NSID, such as include:com.example.authBasicFeatures")
	}
	if err := checkNSID("permission set", nsid, "com.example.authBasicFeatures"); err != nil {
		return Scope{}, err
	}
	var aud string
	if len(a["aud"]) > 0 {
		aud = a["aud"][0]
		if aud == Wildcard {
			return Scope{}, fmt.Errorf("include aud may not be *: name the service that the set's rpc permissions call, e.g. aud=did:web:api.bsky.app%%23bsky_appview, or leave aud out")
		}
		if err := checkServiceRef(aud); err != nil {
			return Scope{}, err
		}
	}
	return Scope{resource: Include, values: nsid, aud: aud}, nil
}
