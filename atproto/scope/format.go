package scope

import (
	"strings"
)

// String is the scope in its normal form: a single value goes in the
// positional part (repo:a.b.c), several go in repeated parameters
// (repo?collection=a.b.c&collection=d.e.f), sorted; parameters equal to
// their default are left out (repo actions when all three are allowed,
// account action=read); values are percent-encoded only where the syntax
// needs it. Parse(s.String()) == s for every parsed s.
func (s Scope) String() string {
	if s.resource == "" || isStatic(s.resource) {
		return string(s.resource)
	}
	var q query
	positional, hasPositional := s.positional(&q)
	switch s.resource {
	case Repo:
		if s.action != allRepoActions {
			q.addAll("action", strings.Fields(s.action))
		}
	case Account:
		if s.action != ActionRead {
			q.add("action", s.action)
		}
	case RPC, Include:
		if s.aud != "" {
			q.add("aud", s.aud)
		}
	}
	var b strings.Builder
	b.WriteString(string(s.resource))
	if hasPositional {
		b.WriteByte(':')
		b.WriteString(escape(positional, false))
	}
	if q.b.Len() > 0 {
		b.WriteByte('?')
		b.WriteString(q.b.String())
	}
	return b.String()
}

// positional returns the value that goes after the ":", or adds the values
// of the positional parameter to q when there are several.
func (s Scope) positional(q *query) (string, bool) {
	values := strings.Fields(s.values)
	if len(values) == 1 {
		return values[0], true
	}
	q.addAll(positionalName(s.resource), values)
	return "", false
}

// positionalName is the parameter that a resource's positional part stands
// for.
func positionalName(r Resource) string {
	switch r {
	case Repo:
		return "collection"
	case RPC:
		return "lxm"
	case Blob:
		return "accept"
	case Include:
		return "nsid"
	}
	return "attr"
}

// query builds the part after the "?".
type query struct{ b strings.Builder }

func (q *query) add(name, value string) {
	if q.b.Len() > 0 {
		q.b.WriteByte('&')
	}
	q.b.WriteString(name)
	q.b.WriteByte('=')
	q.b.WriteString(escape(value, true))
}

func (q *query) addAll(name string, values []string) {
	for _, v := range values {
		q.add(name, v)
	}
}

// escape percent-encodes what the scope syntax would misread (?, &, =, #,
// %, ...). ":", "/", "*" and "@" stay as they are, as in the spec's
// examples. "+" stays in the positional part but is encoded in parameters:
// the reference implementation reads parameters as form data
// (URLSearchParams), where "+" means a space, and MIME types such as
// image/svg+xml contain one.
func escape(v string, inQuery bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isLiteral(c) || (c == '+' && !inQuery) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

func isLiteral(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~:/*@", c) >= 0
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
