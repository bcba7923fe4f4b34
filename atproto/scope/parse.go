package scope

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Error is why a scope token does not parse. Err says what is wrong and
// what to write instead; configuration diagnostics quote it.
type Error struct {
	Scope string // the token as written
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("scope %q: %v", e.Scope, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// resourceNames is the list that errors about an unknown resource offer.
const resourceNames = "repo, rpc, blob, account, identity, include"

// Parse parses one scope token: a static scope (atproto,
// transition:generic, transition:email, transition:chat.bsky) or a
// permission "resource[:positional][?name=value&...]" as the permission
// spec defines it. The positional part and the values are percent-decoded;
// "+" is a plus sign, not a space. Errors are *Error.
func Parse(s string) (Scope, error) {
	sc, err := parse(s)
	if err != nil {
		return Scope{}, &Error{Scope: s, Err: err}
	}
	return sc, nil
}

func parse(s string) (Scope, error) {
	if s == "" {
		return Scope{}, errors.New("empty scope: write a scope such as atproto or repo:app.bsky.feed.post")
	}
	if err := checkChars(s); err != nil {
		return Scope{}, err
	}
	if isStatic(Resource(s)) {
		return Scope{resource: Resource(s)}, nil
	}
	if lower := strings.ToLower(s); isStatic(Resource(lower)) {
		return Scope{}, fmt.Errorf("unknown scope: scopes are case-sensitive, write %s", lower)
	}
	g, err := split(s)
	if err != nil {
		return Scope{}, err
	}
	return g.permission()
}

func isStatic(r Resource) bool {
	switch r {
	case Atproto, TransitionGeneric, TransitionEmail, TransitionChatBsky:
		return true
	}
	return false
}

// ParseList parses a space-separated scope list, the form of the OAuth
// scope parameter and of client metadata (RFC 6749 §3.3: tokens separated
// by single spaces). A scope that appears twice, even spelled differently,
// is an error: the second one grants nothing and is likely a mistake.
func ParseList(list string) ([]Scope, error) {
	if list == "" {
		return nil, errors.New("empty scope list: write at least atproto")
	}
	tokens := strings.Split(list, " ")
	scopes := make([]Scope, 0, len(tokens))
	seen := make(map[Scope]string, len(tokens))
	for i, tok := range tokens {
		if tok == "" {
			return nil, listSpaceError(tokens, i)
		}
		sc, err := Parse(tok)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[sc]; dup {
			return nil, &Error{Scope: tok, Err: fmt.Errorf("repeats %q (both are %s): list it once", first, sc)}
		}
		seen[sc] = tok
		scopes = append(scopes, sc)
	}
	return scopes, nil
}

// listSpaceError explains the empty token at i: a space at the start or end,
// or two in a row.
func listSpaceError(tokens []string, i int) error {
	switch {
	case i == 0:
		return errors.New("scope list starts with a space: remove it")
	case i == len(tokens)-1:
		return errors.New("scope list ends with a space: remove it")
	}
	return fmt.Errorf("scope list has two spaces in a row after %q: separate scopes with one space", tokens[i-1])
}

// checkChars enforces the characters of an OAuth scope token (RFC 6749
// §3.3: printable ASCII except space, '"' and '\'); the permission spec
// likewise restricts scopes to printable non-whitespace ASCII.
func checkChars(s string) error {
	for i, r := range s {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			return fmt.Errorf("whitespace at byte %d: a scope has no spaces; separate scopes in a list with one space", i)
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Errorf("byte %d is not UTF-8, let alone printable ASCII: percent-encode it (%s)", i, escape(s[i:i+1], true))
		case r < 0x21 || r > 0x7e:
			return fmt.Errorf("character %q at byte %d is not printable ASCII: percent-encode it (%s)", r, i, escape(string(r), true))
		case r == '"' || r == '\\':
			return fmt.Errorf("character %q at byte %d is not allowed in an OAuth scope: percent-encode it (%s)", r, i, escape(string(r), true))
		}
	}
	return nil
}

// generic is a permission split by the general syntax of the spec
// ("Scope String Syntax"), before any resource rules: the resource, the
// positional part after the first ":" (up to the "?"), and the parameters,
// all decoded.
type generic struct {
	resource      string
	positional    string
	hasPositional bool
	params        []param
}

type param struct{ name, value string }

func split(s string) (generic, error) {
	head, rawQuery, _ := strings.Cut(s, "?")
	resource, rawPositional, hasPositional := strings.Cut(head, ":")
	if resource == "" {
		return generic{}, fmt.Errorf("no resource name before %q: write one of %s, e.g. repo:app.bsky.feed.post", s[:1], resourceNames)
	}
	g := generic{resource: resource, hasPositional: hasPositional}
	if hasPositional {
		v, err := unescape(rawPositional)
		if err != nil {
			return generic{}, err
		}
		g.positional = v
	}
	params, err := splitQuery(rawQuery)
	if err != nil {
		return generic{}, err
	}
	g.params = params
	return g, nil
}

// splitQuery reads "name=value&name=value". An empty query ("identity:*?")
// is allowed, as in the spec's examples; an empty parameter ("&&", a
// trailing "&") is not, since it is always a slip.
func splitQuery(raw string) ([]param, error) {
	if raw == "" {
		return nil, nil
	}
	var params []param
	for piece := range strings.SplitSeq(raw, "&") {
		p, err := splitParam(piece)
		if err != nil {
			return nil, err
		}
		params = append(params, p)
	}
	return params, nil
}

func splitParam(piece string) (param, error) {
	if piece == "" {
		return param{}, errors.New(`empty parameter ("&&", or "&" at the start or end): separate parameters with one "&"`)
	}
	if strings.Contains(piece, "+") {
		// The reference server reads parameters as form data, where "+"
		// is a space: image/svg+xml would reach it as "image/svg xml"
		// (found in review).
		return param{}, fmt.Errorf(`parameter %q holds a "+", which servers read as a space: write %%2B for a plus sign`, piece)
	}
	rawName, rawValue, hasValue := strings.Cut(piece, "=")
	name, err := unescape(rawName)
	if err != nil {
		return param{}, err
	}
	if name == "" {
		return param{}, fmt.Errorf("parameter %q has no name: write name=value", piece)
	}
	value, err := unescape(rawValue)
	if err != nil {
		return param{}, err
	}
	if !hasValue || value == "" {
		return param{}, fmt.Errorf("parameter %q has no value: write %s=<value>", name, name)
	}
	return param{name: name, value: value}, nil
}

// unescape decodes percent-encoding. Unlike form decoding it keeps "+",
// which MIME types such as image/svg+xml contain.
func unescape(s string) (string, error) {
	v, err := url.PathUnescape(s)
	if err != nil {
		var esc url.EscapeError
		if errors.As(err, &esc) {
			return "", fmt.Errorf("bad percent-encoding %q: write %% and two hex digits, such as %%23 for #", string(esc))
		}
		return "", fmt.Errorf("bad percent-encoding: %w", err)
	}
	return v, nil
}
