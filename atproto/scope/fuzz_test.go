package scope

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks Parse, which reads scopes written in the configuration
// and, through them, what ioproxy asks authorization servers for.
//
// Properties: Parse never panics; a failure returns the zero Scope and an
// *Error that names the input; a success is one of the known resources,
// its String is a valid OAuth scope token (RFC 6749: printable ASCII, no
// space, quote or backslash) that parses back to an equal Scope and is a
// fixed point, its lists are non-empty, sorted and without repeats, and
// ParseList agrees with Parse on the single token.
func FuzzParse(f *testing.F) {
	for _, tc := range validScopes {
		f.Add(tc.in)
	}
	for _, tc := range invalidScopes {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			checkFailure(t, in, s, err)
			return
		}
		checkSuccess(t, in, s)
	})
}

func checkFailure(t *testing.T, in string, s Scope, err error) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Scope != in || se.Err == nil {
		t.Fatalf("Parse(%q) error %v is not an *Error naming the input", in, err)
	}
	if s != (Scope{}) {
		t.Fatalf("Parse(%q) failed (%v) but returned %#v", in, err, s)
	}
	if !strings.ContainsRune(in, ' ') {
		if _, lerr := ParseList(in); lerr == nil {
			t.Fatalf("Parse(%q) failed (%v) but ParseList accepted it", in, err)
		}
	}
}

func checkSuccess(t *testing.T, in string, s Scope) {
	t.Helper()
	out := s.String()
	if out == "" || checkChars(out) != nil {
		t.Fatalf("Parse(%q).String() = %q, not a scope token", in, out)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(%q) = %q, which does not parse: %v", in, out, err)
	}
	if again != s {
		t.Fatalf("Parse(%q) = %#v, but Parse(%q) = %#v", in, s, out, again)
	}
	if again.String() != out {
		t.Fatalf("String is not a fixed point: %q gives %q, then %q", in, out, again.String())
	}
	if list, err := ParseList(in); err != nil || len(list) != 1 || list[0] != s {
		t.Fatalf("Parse(%q) = %q, but ParseList = %q, %v", in, out, list, err)
	}
	checkFields(t, in, s)
}

// checkFields checks that the accessors describe the resource: the lists a
// resource has are non-empty, sorted and unique, the others are empty; and
// no rpc allows every method on every service.
func checkFields(t *testing.T, in string, s Scope) {
	t.Helper()
	r := s.Resource()
	switch r {
	case Atproto, TransitionGeneric, TransitionEmail, TransitionChatBsky, Repo, RPC, Blob, Account, Identity, Include:
	default:
		t.Fatalf("Parse(%q): unknown resource %q", in, r)
	}
	lists := map[Resource][]string{Repo: s.Collections(), RPC: s.Methods(), Blob: s.Accept()}
	for lr, l := range lists {
		if (lr == r) != (len(l) > 0) {
			t.Fatalf("Parse(%q): resource %q with %s list %q", in, r, lr, l)
		}
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			t.Fatalf("Parse(%q): %s list %q is not sorted and unique", in, lr, l)
		}
	}
	if has := r == Repo || r == Account; has != (len(s.Actions()) > 0) {
		t.Fatalf("Parse(%q): %s with actions %q", in, r, s.Actions())
	}
	if has := r == Account || r == Identity; has != (s.Attr() != "") {
		t.Fatalf("Parse(%q): %s with attr %q", in, r, s.Attr())
	}
	if (r == Include) != (s.NSID() != "") {
		t.Fatalf("Parse(%q): %s with nsid %q", in, r, s.NSID())
	}
	if r == RPC && (s.Aud() == "" || s.Aud() == Wildcard && slices.Contains(s.Methods(), Wildcard)) {
		t.Fatalf("Parse(%q): rpc with aud %q and methods %q", in, s.Aud(), s.Methods())
	}
	if r == Include && s.Aud() == Wildcard {
		t.Fatalf("Parse(%q): include with aud *", in)
	}
}
