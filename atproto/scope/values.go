package scope

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// nsidList checks a list of NSIDs where "*" stands for all (repo
// collection, rpc lxm) and returns it in its stored form. The spec allows
// only the whole "*": "Partial wildcards are not supported (eg, can not use
// com.example.*)".
func nsidList(name, noun string, values []string, example string) (string, error) {
	for _, v := range values {
		if v == Wildcard {
			continue
		}
		if strings.Contains(v, Wildcard) {
			return "", fmt.Errorf("%s %q: partial wildcards are not supported: write * for every %s, or name each one", name, v, noun)
		}
		if err := checkNSID(name, v, example); err != nil {
			return "", err
		}
	}
	if len(values) > 1 && contains(values, Wildcard) {
		return "", fmt.Errorf(`%s "*" already covers every %s: drop the others`, name, noun)
	}
	return sortedList(name, values)
}

func checkNSID(what, v, example string) error {
	if _, err := syntax.ParseNSID(v); err != nil {
		return fmt.Errorf("%s %q is not an NSID: write a reversed domain name and a name, such as %s", what, v, example)
	}
	return nil
}

// sortedList is the stored form of an array parameter: sorted, so that
// the order it was written in does not matter, and joined by spaces.
func sortedList(name string, values []string) (string, error) {
	if err := checkUnique(name, values); err != nil {
		return "", err
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return strings.Join(sorted, " "), nil
}

// checkUnique refuses a value listed twice: the spec calls repo actions
// "unique", and a repeated collection, method or MIME type is a slip too.
func checkUnique(name string, values []string) error {
	for i, v := range values {
		if slices.Contains(values[:i], v) {
			return fmt.Errorf("%s %q is listed twice: list it once", name, v)
		}
	}
	return nil
}

// oneOf checks v against the values the spec allows, noting a case
// mismatch since scopes are case-sensitive.
func oneOf(what, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	hint := ""
	if lower := strings.ToLower(v); lower != v && slices.Contains(allowed, lower) {
		hint = fmt.Sprintf(" (scopes are case-sensitive: write %s)", lower)
	}
	return fmt.Errorf("%s %q is not one of %s%s", what, v, strings.Join(allowed, ", "), hint)
}

func contains(values []string, v string) bool { return slices.Contains(values, v) }

// checkAccept checks a blob accept value. The spec allows "MIME types or
// partial MIME type glob patterns (*/* or text/* for example)", the syntax
// of the Lexicon blob accept field. The names follow RFC 6838 §4.2; MIME
// parameters (";charset=...") have no place in a pattern.
func checkAccept(v string) error {
	if v == "*/*" {
		return nil
	}
	typ, sub, ok := strings.Cut(v, "/")
	if ok && isMIMEName(typ) && (sub == Wildcard || isMIMEName(sub)) {
		return nil
	}
	return fmt.Errorf("%q is not a MIME type or pattern such as image/* or image/png (or */* for any)", v)
}

// isMIMEName is an RFC 6838 restricted-name: a letter or digit, then up to
// 126 letters, digits and !#$&-^_.+
func isMIMEName(s string) bool {
	if s == "" || len(s) > 127 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte("!#$&-^_.+", s[i]) < 0 {
			return false
		}
	}
	return true
}

// serviceRefExample is how errors show an aud; %23 is the "#" as written
// in a scope.
const serviceRefExample = "did:web:api.bsky.app%23bsky_appview"

// checkServiceRef checks an aud: "a DID service reference: DID followed by
// required service type fragment" (spec, "rpc"). The DID is one of the
// methods atproto supports (https://atproto.com/specs/did: did:plc and
// did:web, without a path), as the reference implementation requires.
func checkServiceRef(v string) error {
	did, fragment, ok := strings.Cut(v, "#")
	if !ok || fragment == "" {
		return fmt.Errorf("aud %q has no service id: write the DID, # (%%23) and the service id, such as %s", v, serviceRefExample)
	}
	if !isFragment(fragment) {
		return fmt.Errorf("aud %q: service id %q is not a DID fragment: write letters, digits and _, such as %s", v, fragment, serviceRefExample)
	}
	if _, err := syntax.ParseDID(did); err != nil {
		return fmt.Errorf("aud %q: %q is not a DID: write a did:web or did:plc and the service id, such as %s", v, did, serviceRefExample)
	}
	return checkAtprotoDID(v, did)
}

func checkAtprotoDID(aud, did string) error {
	switch {
	case strings.HasPrefix(did, "did:plc:"):
		if !isPLCIdentifier(did[len("did:plc:"):]) {
			return fmt.Errorf("aud %q: %q is not a did:plc (24 characters a-z and 2-7 after did:plc:)", aud, did)
		}
	case strings.HasPrefix(did, "did:web:"):
		if strings.Contains(did[len("did:web:"):], ":") {
			return fmt.Errorf("aud %q: atproto's did:web has no path, and a port is written %%3A in the DID, so %%253A in a scope", aud)
		}
	default:
		return fmt.Errorf("aud %q: atproto services use did:web or did:plc, such as %s", aud, serviceRefExample)
	}
	return nil
}

// isPLCIdentifier: did:plc identifiers are 24 characters of lower-case
// base32 (https://web.plc.directory/spec/v0.1/did-plc).
func isPLCIdentifier(id string) bool {
	if len(id) != 24 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// isFragment reports whether s is a URI fragment (RFC 3986 §3.5: pchar,
// "/" and "?"), which a DID URL's fragment is.
func isFragment(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlnum(c) || strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
