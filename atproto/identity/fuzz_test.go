package identity

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// FuzzParseInput checks ParseInput, which reads what a person types into
// the sign-in form.
//
// Properties: an accepted input is a DID that syntax.ParseDID accepts and
// that is the input as typed (space and one "@" dropped), or a handle that
// syntax.ParseHandle accepts, in lower case, the typed handle lowercased,
// never "handle.invalid"; and the result parses again to itself, with or
// without a leading "@".
func FuzzParseInput(f *testing.F) {
	for _, s := range []string{
		"alice.bsky.social", "@alice.bsky.social", " Alice.Bsky.Social ", "@@alice.test", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		"DID:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:web:example.com", "did:web:localhost%3A2583", "@did:plc:abc", "handle.invalid",
		"HANDLE.INVALID", "alice", "alice.", ".alice.test", "a..b", "xn--e1afmkfd.xn--p1ai", "alice.test\n", "\u00a0alice.test",
		"did:", "did:x", "did:plc:", "did:plc:abc:", "did:plc:%zz", "https://bsky.app/profile/alice.test", "alice@bsky.social",
		"ALICE.bsky.social", "a.b", "1.2.3.4", "alice.local", "alice.onion", "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		id, err := ParseInput(input)
		if err != nil {
			if id != "" {
				t.Fatalf("ParseInput(%q) failed but returned %q", input, id)
			}
			return
		}
		typed := strings.TrimPrefix(strings.TrimSpace(input), "@")
		if id.IsDID() {
			did, err := syntax.ParseDID(id.String())
			if err != nil || did.String() != typed {
				t.Fatalf("ParseInput(%q) = DID %q (%v); want the DID %q as typed", input, id, err, typed)
			}
		} else {
			h, err := syntax.ParseHandle(id.String())
			if err != nil || !id.IsHandle() {
				t.Fatalf("ParseInput(%q) = %q, neither DID nor valid handle: %v", input, id, err)
			}
			if s := id.String(); s != strings.ToLower(s) || s != strings.ToLower(typed) || h.IsInvalidHandle() {
				t.Fatalf("ParseInput(%q) = handle %q; want %q, lower case, not handle.invalid", input, s, strings.ToLower(typed))
			}
		}
		for _, again := range []string{id.String(), "@" + id.String()} {
			if id2, err := ParseInput(again); err != nil || id2 != id {
				t.Fatalf("ParseInput(%q) = %q, but ParseInput(%q) = %q, %v", input, id, again, id2, err)
			}
		}
	})
}

// FuzzDIDWebURL checks didWebURL, which turns a did:web (chosen by
// whoever signs in) into the URL its document is fetched from.
//
// Properties: an accepted DID gives an absolute URL of path
// /.well-known/did.json, without user info, query or fragment, whose host
// is exactly the host the DID names (percent-decoded, lower case): https
// without a port for a public host name, and http://localhost with at
// most a numeric port only when AllowInsecure is set. No host, user info,
// port or path can be smuggled in through escapes in the DID.
func FuzzDIDWebURL(f *testing.F) {
	for _, s := range []string{
		"did:web:example.com", "did:web:EXAMPLE.com", "did:web:localhost", "did:web:localhost%3A2583", "did:web:LOCALHOST%3a80",
		"did:web:example.com%3A443", "did:web:example.com:user:alice", "did:web:localhost%3A", "did:web:evil.example%2F.x",
		"did:web:evil.example%40good.example", "did:web:%5B%3A%3A1%5D%3A80", "did:web:127.0.0.1", "did:web:example.test", "did:web:example.local",
		"did:web:example.com.", "did:web:exa%6dple.com", "did:web:localhost%3A80%3A81", "did:web:localhost%253A80", "did:web:a%00.com",
		"did:plc:ewvi7nxzyoun6zhxrhs64oiz",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	resolvers := map[bool]*Resolver{false: New(Config{}), true: New(Config{AllowInsecure: true})}
	f.Fuzz(func(t *testing.T, s string, insecure bool) {
		did, err := syntax.ParseDID(s)
		if err != nil || did.Method() != "web" {
			return
		}
		r := resolvers[insecure]
		got, err := r.didWebURL(did)
		if err != nil {
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("didWebURL(%q) = %q, which does not parse: %v", s, got, err)
		}
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" || u.Path != "/.well-known/did.json" {
			t.Fatalf("didWebURL(%q) = %q: user %v, query %q, fragment %q, path %q; want only /.well-known/did.json", s, got, u.User, u.RawQuery, u.Fragment, u.Path)
		}
		named, err := url.PathUnescape(did.Identifier())
		if err != nil {
			t.Fatalf("didWebURL(%q) accepted an identifier that does not decode: %v", s, err)
		}
		host, port := strings.ToLower(named), ""
		if h, p, err := net.SplitHostPort(host); err == nil {
			host, port = h, p
		}
		if u.Hostname() != host || u.Port() != port {
			t.Fatalf("didWebURL(%q) = %q fetches from host %q port %q; the DID names %q", s, got, u.Hostname(), u.Port(), named)
		}
		if u.Hostname() == "localhost" {
			if !insecure || u.Scheme != "http" {
				t.Fatalf("didWebURL(%q) = %q with AllowInsecure %v", s, got, insecure)
			}
			if p := u.Port(); p != "" {
				if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strings.Trim(p, "0123456789") != "" {
					t.Fatalf("didWebURL(%q) = %q has the port %q", s, got, p)
				}
			}
			return
		}
		if u.Scheme != "https" || u.Port() != "" {
			t.Fatalf("didWebURL(%q) = %q; want https without a port", s, got)
		}
		if _, err := syntax.ParseHandle(u.Hostname()); err != nil {
			t.Fatalf("didWebURL(%q) = %q, whose host is not a host name: %v", s, got, err)
		}
	})
}

// FuzzServiceURL checks serviceURL, which reads the operator's plc_url and
// handle_resolver, and checkPDS, which reads the PDS endpoint of a DID
// document (written by whoever controls the account).
//
// Properties, for both: an accepted URL comes back as an absolute https
// URL (http only when allowed) with a host name, without user info, query
// or fragment (not even an empty "?"), without a trailing slash, so that
// appending "/xrpc/…" stays a path on that host; and it is accepted again
// unchanged.
func FuzzServiceURL(f *testing.F) {
	for _, s := range []string{
		"https://plc.directory", "https://plc.directory/", "https://bsky.social/", "http://localhost:2582", "https://pds.example.com/base/",
		"HTTPS://PDS.EXAMPLE.COM", "https://user:pw@pds.example.com", "https://pds.example.com?x=1",
		"https://pds.example.com#frag", "https://pds.example.com/#", "https://[::1]:443", "https://pds.example.com:99999",
		"https:pds.example.com", "https:///pds.example.com", "//pds.example.com", "ftp://pds.example.com", "https://pds.example.com/%2e%2e",
		"https://pds.example.com//", "https://a%2fb.example.com", "https://pds.example.com\\@evil.example",
		"https://pds.example.com/ ", " https://pds.example.com",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, insecure bool) {
		if got, err := serviceURL(raw, insecure); err == nil {
			checkServiceURL(t, "serviceURL", raw, got, insecure)
			if again, err := serviceURL(got, insecure); err != nil || again != got {
				t.Fatalf("serviceURL(%q) = %q, which is accepted again as %q, %v", raw, got, again, err)
			}
		}
		r := &Resolver{allowInsecure: insecure}
		if got, err := r.checkPDS(raw); err == nil {
			checkServiceURL(t, "checkPDS", raw, got, insecure)
			if again, err := r.checkPDS(got); err != nil || again != got {
				t.Fatalf("checkPDS(%q) = %q, which is accepted again as %q, %v", raw, got, again, err)
			}
		}
	})
}

func checkServiceURL(t *testing.T, fn, raw, got string, insecure bool) {
	t.Helper()
	u, err := url.Parse(got)
	if err != nil {
		t.Fatalf("%s(%q) = %q, which does not parse: %v", fn, raw, got, err)
	}
	if u.Scheme != "https" && !(insecure && u.Scheme == "http") {
		t.Fatalf("%s(%q) = %q has the scheme %q", fn, raw, got, u.Scheme)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		t.Fatalf("%s(%q) = %q: host %q, user %v, query %q (forced %v), fragment %q; want a plain URL with a host", fn, raw, got, u.Hostname(), u.User, u.RawQuery, u.ForceQuery, u.Fragment)
	}
	if strings.HasSuffix(got, "/") {
		t.Fatalf("%s(%q) = %q keeps a trailing slash", fn, raw, got)
	}
	x, err := url.Parse(got + "/xrpc/com.atproto.identity.resolveHandle")
	if err != nil || x.Host != u.Host || !strings.HasSuffix(x.Path, "/xrpc/com.atproto.identity.resolveHandle") || x.RawQuery != "" {
		t.Fatalf("%s(%q) = %q, to which an XRPC path does not append: %v %v", fn, raw, got, x, err)
	}
}
