package redact

import (
	"strings"
	"testing"
)

// fuzzSecret stands for a secret in the inputs FuzzString builds; it is
// alphanumeric, as query values and token bodies are.
const fuzzSecret = "Zq9SeCReT7x"

// jwtPayload is the middle segment of jwt, which must never survive.
const jwtPayload = "eyJzdWIiOiJkaWQ6cGxjOmFiYyJ9"

// FuzzString checks properties of String on any input s, and on inputs
// built by putting a secret after a URL's "?" or a JWT between the two
// halves of s:
//   - it never panics, and scrubbing twice is scrubbing once;
//   - the quick reject never skips a string the full scan would change;
//   - a secret directly after "scheme://host/path?", after
//     "Authorization: Bearer " or "Basic user:", or as the value of a
//     secret parameter (key=, Key:, "Name: " after a credential header,
//     Key:[ as %v prints a header) never survives;
//   - a JWT standing on its own (no base64url character before it, none
//     or a "." after it) never keeps its payload.
func FuzzString(f *testing.F) {
	for _, s := range []string{
		"", "did:plc:abc", `Get "https://h/p?a=b": EOF`, "Bearer x", "code=1",
		`{"access_token":"x"}`, "eyJa.b", "http://[::1]:8080/x?y", "\"https://",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check(t, s)
		prefix, suffix := s[:len(s)/2], s[len(s)/2:]
		if strings.Contains(s, fuzzSecret[:4]) {
			return // the secret could be made of the input's own text
		}
		for _, u := range []string{"https://h/p?", "http://[::1]:8080/x?", "wss://h?", "HTTP://h/p/q?a=1&b="} {
			in := prefix + u + fuzzSecret + suffix
			if out := check(t, in); strings.Contains(out, fuzzSecret) {
				t.Errorf("String(%q) = %q keeps the query", in, out)
			}
		}
		for _, auth := range []string{"Authorization: Bearer ", "Authorization: DPoP ", "authorization=basic ", "Basic alice:"} {
			in := auth + fuzzSecret + suffix
			if out := check(t, in); strings.Contains(out, fuzzSecret) {
				t.Errorf("String(%q) = %q keeps the credential", in, out)
			}
		}
		// A parameter name must not continue a word, and JWTs are looked
		// for before parameters, so the prefix must not end in a name
		// character or start a JWT that would take the name with it.
		if !strings.Contains(prefix, "eyJ") && (prefix == "" || !keyChar[prefix[len(prefix)-1]]) {
			for _, key := range []string{"access_token=", "code=", "State=", "x_token=", "accessToken=",
				"RefreshToken:", "dpopKey:", "Proxy-Session: ", "Set-Cookie: ", "Cookie:["} {
				in := prefix + key + fuzzSecret + suffix
				if out := check(t, in); strings.Contains(out, fuzzSecret) {
					t.Errorf("String(%q) = %q keeps the parameter", in, out)
				}
			}
		}
		if strings.Contains(s, "eyJ") || prefix != "" && b64url[prefix[len(prefix)-1]] ||
			suffix != "" && (b64url[suffix[0]] || suffix[0] == '.') {
			return
		}
		in := prefix + jwt + suffix
		if out := check(t, in); strings.Contains(out, jwtPayload) {
			t.Errorf("String(%q) = %q keeps the JWT", in, out)
		}
	})
}

// check asserts the properties that hold for every input and returns
// String(in).
func check(t *testing.T, in string) string {
	t.Helper()
	out := String(in)
	if again := String(out); again != out {
		t.Errorf("not idempotent:\n   in %q\n  out %q\nagain %q", in, out, again)
	}
	if full, _ := scrubAll(in); full != out {
		t.Errorf("quick reject skipped %q: the full scan gives %q", in, full)
	}
	return out
}
